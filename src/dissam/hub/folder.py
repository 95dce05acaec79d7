"""Refiners as Hugging Face Hub folders, and the lossless ``.pth`` <-> folder conversion.

A refiner folder is what ``huggingface_hub``'s ``ModelHubMixin`` writes and reads::

    config.json         {"arch": "isnet", "in_ch": 5, "out_ch": 1, "width": 1.0,
                         "metadata": {"input_size": 1024, ...}, "format": "dissam-refiner", "format_version": 1}
    model.safetensors   the state dict, the authors' key names, tensors stored as they are
    README.md           a model card (library, tags, paper, how to load it)

:class:`HubRefiner` gives it ``from_pretrained("org/name" or folder)``, ``save_pretrained(folder)``
and ``push_to_hub("org/name")``. ``dissam.load_refiner(folder)`` reads the same folders (through
:func:`load_refiner_folder`), so every ``--refiner`` accepts them.

:func:`pth_to_folder` / :func:`folder_to_pth` convert without touching the numbers: tensors are
copied with their dtype and bytes, the key order is the network's (the authors' ``state_dict``
order), and the key set and shapes are checked against the architecture both ways.
"""

from __future__ import annotations

import io
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelHubMixin, hf_hub_download
from safetensors.torch import save

from dissam.checkpoints import infer_refiner_config, load_state_dict_strict, read_state_dict
from dissam.errors import CheckpointError
from dissam.hub.cache import hub_local_only
from dissam.hub.sources import hub_error
from dissam.hub.verify import check_refiner_state_dict, expected_refiner_shapes
from dissam.models.isnet import RefinerConfig, build_refiner
from dissam.refiner import Refiner
from dissam.utils import atomic_write_bytes

__all__ = ["HubRefiner", "load_refiner_folder", "pth_to_folder", "folder_to_pth", "write_refiner_folder",
           "is_refiner_folder", "FORMAT"]

FORMAT = "dissam-refiner"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

CARD_TEMPLATE = """\
---
{{ card_data }}
---

# {{ title | default("DIS-SAM refiner", true) }}

An IS-Net refiner for [DIS-SAM]({{ paper_url }}) (box-prompted dichotomous image segmentation): it
takes `[R, G, B, SAM mask, box map]` at {{ input_size | default(1024, true) }}² and returns a
hair-fine mask. Architecture: `{{ arch }}`, {{ in_ch }} input channels, width {{ width }}.

{{ description | default("", true) }}

```python
from dissam import DisSamPredictor
predictor = DisSamPredictor.from_pretrained(sam="sam-vit-l", refiner="{{ repo_id | default("THIS_REPO", true) }}")
```

Made with dissam: the folder holds `config.json` (architecture and metadata) and
`model.safetensors` (weights, with the authors' key names; `dissam convert` turns it back into a `.pth`).
"""


def _canonical_order(sd: Mapping[str, Any], config) -> dict[str, Any]:
    """The state dict in the network's own order (safetensors files are sorted by name), after an
    exact key and shape check against ``config``."""
    check_refiner_state_dict(sd, config)
    return {k: sd[k] for k in expected_refiner_shapes(config)}


def _config_dict(config, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = config.to_dict()
    return {**cfg, "metadata": dict(metadata or {}), "format": FORMAT, "format_version": 1}


def write_refiner_folder(
    folder: str | os.PathLike,
    state_dict: Mapping[str, Any],
    config=None,
    metadata: Mapping[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``README.md`` when ``card`` is given) into
    ``folder``, each atomically. Tensors keep their dtype and bytes; keys are checked and put in the
    network's order. ``config`` defaults to the one inferred from the tensors."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} exists and is not a folder")
    if config is None:
        config = infer_refiner_config(state_dict)
    ordered = _canonical_order(state_dict, config)
    # contiguous copies only where needed (safetensors refuses views and shared storage)
    tensors = {k: (v.detach().cpu() if v.is_contiguous() else v.detach().cpu().contiguous()) for k, v in ordered.items()}
    ptrs: dict[int, str] = {}
    for k, v in tensors.items():
        if v.numel() and v.data_ptr() in ptrs:
            tensors[k] = v.clone()
        ptrs[v.data_ptr()] = k
    # one metadata key only: safetensors writes a multi-key header in an unstable order, and the same
    # weights should give the same bytes (the config lives in config.json)
    header = {"format": "pt"}
    atomic_write_bytes(folder / WEIGHTS_NAME, save(tensors, metadata=header))
    text = json.dumps(_config_dict(config, metadata), indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(folder / CONFIG_NAME, text.encode())
    if card is not None:
        atomic_write_bytes(folder / "README.md", card.encode())
    return folder


def is_refiner_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()


def _read_folder_config(folder: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((folder / CONFIG_NAME).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not valid JSON ({exc}); it may be truncated") from exc
    if not isinstance(cfg, dict) or "arch" not in cfg or "in_ch" not in cfg:
        raise CheckpointError(
            f"{folder / CONFIG_NAME} is not a dissam refiner config (no 'arch' / 'in_ch'); a Hugging Face SAM "
            "folder goes to --sam, not --refiner"
        )
    return cfg


def read_refiner_folder(folder: str | os.PathLike) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """``(state_dict, RefinerConfig, metadata)`` of a refiner folder, keys checked and in network order."""
    folder = Path(folder)
    if not is_refiner_folder(folder):
        raise CheckpointError(f"{folder} is not a refiner folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    raw = _read_folder_config(folder)
    config = RefinerConfig.from_dict(raw)
    sd = read_state_dict(folder / WEIGHTS_NAME)
    try:
        ordered = _canonical_order(sd, config)
    except CheckpointError as exc:
        raise CheckpointError(f"{folder}: {CONFIG_NAME} says {config}, but the weights do not match:\n{exc}") from exc
    return ordered, config, dict(raw.get("metadata") or {})


def load_refiner_folder(folder: str | os.PathLike, device="cpu") -> Refiner:
    """The :class:`~dissam.refiner.Refiner` of a refiner folder (strict load) on ``device``, with the
    folder's metadata (input size, training config)."""
    sd, config, metadata = read_refiner_folder(folder)
    net = build_refiner(config)
    load_state_dict_strict(net, sd, str(folder))
    return Refiner.from_checkpoint_info(net.to(device), config, {"metadata": metadata}, str(folder))


class HubRefiner(
    ModelHubMixin,
    library_name="dissam",
    tags=["dis-sam", "dichotomous-image-segmentation", "image-segmentation", "is-net"],
    pipeline_tag="image-segmentation",
    paper_url="https://arxiv.org/abs/2401.00248",
    model_card_template=CARD_TEMPLATE,
):
    """A refiner network with its config and metadata, saved and loaded as a Hub folder.

    Follows ``huggingface_hub.ModelHubMixin``: the ``__init__`` arguments are the config (written to
    ``config.json``), ``_save_pretrained`` writes the weights, ``_from_pretrained`` reads them (a local
    folder, or ``hf_hub_download`` of a hub id, through the Hugging Face cache).

    Args:
        arch, in_ch, out_ch, width: the :class:`~dissam.models.isnet.RefinerConfig`.
        metadata: JSON-able facts about the weights (``input_size``, training config, source...).
        network: the ``nn.Module``; ``None`` builds a randomly initialised one.

    Example::

        ref = HubRefiner.from_network(load_refiner("runs/x/final.safetensors"))
        ref.save_pretrained("my-refiner")          # config.json + model.safetensors + README.md
        ref.push_to_hub("me/my-refiner")           # needs `hf auth login`
        net = HubRefiner.from_pretrained("me/my-refiner").network
    """

    def __init__(self, arch: str = "isnet", in_ch: int = 5, out_ch: int = 1, width: float = 1.0,
                 metadata: dict | None = None, network: Any = None):
        self.config = RefinerConfig(arch, int(in_ch), int(out_ch), float(width))
        self.metadata = dict(metadata or {})
        self.network = network if network is not None else build_refiner(self.config)

    @classmethod
    def from_network(cls, network, metadata: Mapping[str, Any] | None = None) -> HubRefiner:
        """Wrap a loaded :class:`~dissam.refiner.Refiner` (its config and metadata) or a bare network
        (config read off its weights); ``metadata`` adds to or overrides the refiner's."""
        if isinstance(network, Refiner):
            cfg, meta, network = network.config, dict(network.metadata), network.net
        else:
            cfg, meta = infer_refiner_config(network.state_dict()), {}
        meta.update(metadata or {})
        return cls(cfg.arch, cfg.in_ch, cfg.out_ch, cfg.width, metadata=meta, network=network)

    def generate_model_card(self, *args, **kwargs):
        return self.model_card(self.config, self.metadata, **kwargs)

    @classmethod
    def model_card(cls, config, metadata: Mapping[str, Any] | None = None, **kwargs):
        """The ``huggingface_hub.ModelCard`` for a refiner (no network object needed)."""
        info = cls._hub_mixin_info
        fields = {"arch": config.arch, "in_ch": config.in_ch, "width": config.width,
                  "input_size": (metadata or {}).get("input_size"), "paper_url": info.paper_url, **kwargs}
        return ModelCard.from_template(card_data=info.model_card_data, template_str=info.model_card_template,
                                       **fields)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs) -> str:
        """``ModelHubMixin.push_to_hub``, with the repository id written into the model card's example."""
        card = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        # config.json is written here (not by the mixin), so it always matches the weights
        write_refiner_folder(save_directory, self.network.state_dict(), self.config, self.metadata)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         arch: str = "isnet", in_ch: int = 5, out_ch: int = 1, width: float = 1.0,
                         metadata: dict | None = None, map_location: str = "cpu", **_: Any) -> HubRefiner:
        folder = Path(model_id)
        if not folder.is_dir():
            kw = dict(revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                      local_files_only=local_files_only or hub_local_only())
            hf_hub_download(model_id, CONFIG_NAME, **kw)
            folder = Path(hf_hub_download(model_id, WEIGHTS_NAME, **kw)).parent
        ref = load_refiner_folder(folder, device=map_location)
        c = ref.config
        return cls(c.arch, c.in_ch, c.out_ch, c.width, metadata=ref.metadata, network=ref.net.eval())

    @classmethod
    def load(cls, source: str | os.PathLike, device="cpu") -> HubRefiner:
        """``from_pretrained`` with dissam's errors: a folder or a hub id; offline → :class:`OfflineError`."""
        if Path(source).is_dir():
            return cls.from_pretrained(str(source), map_location=str(device))
        try:
            return cls.from_pretrained(str(source), map_location=str(device), local_files_only=hub_local_only())
        except CheckpointError:
            raise
        except Exception as exc:  # hub errors: offline, not cached, unknown or gated repo
            raise hub_error("the refiner", str(source), exc,
                            f"Download it where there is internet (hf download {source} --local-dir DIR) "
                            "and pass DIR.") from exc


def _card_for(config, metadata: Mapping[str, Any], title: str, description: str) -> str:
    return str(HubRefiner.model_card(config, metadata, title=title, description=description))


def pth_to_folder(src: str | os.PathLike, folder: str | os.PathLike, metadata: Mapping[str, Any] | None = None,
                  title: str | None = None) -> Path:
    """An official ``.pth`` (or a dissam ``.safetensors``) -> a Hub folder, tensors unchanged.

    ``module.`` prefixes and ``{"state_dict": ...}`` wrappers are removed (as every loader does); the
    key set and shapes must be exactly the architecture's (:class:`CheckpointError` otherwise).
    ``metadata`` defaults to ``{"input_size": 1024}`` for official files and to the checkpoint's own
    metadata for dissam checkpoints.
    """
    src = Path(src)
    sd = read_state_dict(src)
    config = infer_refiner_config(sd)
    meta: dict[str, Any] = {"input_size": 1024}
    side = src.with_suffix(".json")
    if src.suffix == ".safetensors" and side.is_file():
        try:
            meta = dict(json.loads(side.read_text()).get("metadata") or meta)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{side} is not valid JSON ({exc})") from exc
    meta.update(metadata or {})
    desc = f"Converted with `dissam convert` from `{src.name}`; the tensors are bit-identical to that file's."
    card = _card_for(config, meta, title or src.stem, desc)
    return write_refiner_folder(folder, sd, config, meta, card)


def folder_to_pth(folder: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A Hub folder -> a plain ``.pth`` state dict (the official layout: ``torch.save(state_dict)``),
    in the network's key order, tensors unchanged; written to a temporary file, then renamed."""
    sd, _, _ = read_refiner_folder(folder)
    buf = io.BytesIO()
    torch.save(OrderedDict(sd), buf)
    dst = Path(dst)
    atomic_write_bytes(dst, buf.getvalue())
    return dst
