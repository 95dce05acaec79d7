"""The model registry, the cache location, the resolvers behind --sam / --refiner, verification, and
the `dissam models` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hub_helpers import FileServer, empty_cache_home, payload, sha256, write_registry  # noqa: I001

from dissam.cli import main
from dissam.errors import DisSamError, DownloadError, OfflineError, VerificationError
from dissam.hub import (
    PRESETS,
    REGISTRY,
    cache_root,
    entries,
    find_entry,
    get_entry,
    is_offline,
    models_dir,
    preset_sources,
    resolve_refiner_source,
    resolve_sam_source,
    resolve_weights_file,
)
from dissam.hub.store import hf_snapshot, local_path
from dissam.hub.verify import expected_refiner_shapes, identify, verify_file
from dissam.models.isnet import REFINER_VARIANTS, build_refiner


@pytest.fixture
def home(tmp_path, monkeypatch):
    return empty_cache_home(tmp_path, monkeypatch)


# ------------------------------------------------------------------ the registry itself
def test_every_entry_is_complete_and_consistent():
    for name, e in REGISTRY.items():
        assert e.name == name and name == name.lower()
        assert e.role in ("sam", "refiner", "salient") and e.kind in ("file", "hf", "builtin")
        if e.kind == "file":
            assert e.filename and (e.url or e.manual), name
            assert e.sha256 or e.check, f"{name}: nothing to verify a download against"
        if e.kind == "hf":
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", e.hub_id), name
        if e.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256), name
        if e.md5:
            assert re.fullmatch(r"[0-9a-f]{32}", e.md5), name
        if e.check and e.check.startswith("refiner:"):
            assert e.check.split(":", 1)[1] in REFINER_VARIANTS
    from dissam.stages import get_spec

    for preset in PRESETS.values():
        assert preset.sam is None or REGISTRY[preset.sam].role in ("sam", "salient")
        assert preset.sam is None or not REGISTRY[preset.sam].noncommercial  # never a default
        assert REGISTRY[preset.refiner].role == "refiner"
        assert get_spec(preset.stage1).needs_weights == (preset.sam is not None)


def test_official_sam_entries_match_the_loader_and_the_published_files():
    from dissam.stages.sam import OFFICIAL_FILES, OFFICIAL_URL

    for size in ("b", "l", "h"):
        e = REGISTRY[f"sam-vit-{size}"]
        fname, hub_id = OFFICIAL_FILES[f"vit_{size}"]
        assert e.filename == fname and e.url == OFFICIAL_URL + fname and e.check == f"sam:vit_{size}"
        assert REGISTRY[f"sam-vit-{size}-hf"].hub_id == hub_id
    assert [REGISTRY[f"sam-vit-{s}"].size for s in "blh"] == [375_042_383, 1_249_524_607, 2_564_550_879]
    assert REGISTRY["sam-hq-vit-l"].hub_id == "syscv-community/sam-hq-vit-large"


def test_the_paper_preset_is_sam_vit_l_with_the_dis_sam_refiner():
    assert preset_sources("dis-sam") == ("sam-vit-l", "dis-sam")
    assert preset_sources("DIS-SAM") == ("sam-vit-l", "dis-sam")
    with pytest.raises(DisSamError, match="unknown --model 'sam'"):
        preset_sources("sam")


def test_refiner_key_sets_are_the_authors(isnet_manifest):
    """The DIS-SAM check is the released network's exact key set and shapes (798 tensors)."""
    for variant, fixture in (("dis-sam", "isnet_dis_in5"), ("isnet", "isnet_dis_in3")):
        shapes = expected_refiner_shapes(variant)
        rows = isnet_manifest[fixture]["state_dict"]
        assert list(shapes) == [r[0] for r in rows]
        assert [list(s) for s in shapes.values()] == [r[1] for r in rows]
    assert len(expected_refiner_shapes("dis-sam")) == 798


def test_lookup_by_name_alias_and_hub_id(home):
    assert find_entry("SAM-VIT-L").name == "sam-vit-l"
    assert find_entry("facebook/sam-vit-large").name == "sam-vit-l-hf"
    assert find_entry("nothing-like-it") is None
    with pytest.raises(DisSamError, match="Did you mean sam-vit-l"):
        get_entry("sam-vit-lx")


# ------------------------------------------------------------------ cache and switches
def test_cache_root_follows_dissam_home_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DISSAM_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "a" and models_dir() == tmp_path / "a" / "models"
    monkeypatch.delenv("DISSAM_HOME")
    assert cache_root() == tmp_path / "x" / "dissam"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_root() == tmp_path / "h" / ".cache" / "dissam"


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_offline_switches(monkeypatch, value, offline):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("DISSAM_OFFLINE", value)
    assert is_offline() is offline
    monkeypatch.delenv("DISSAM_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert is_offline() is offline


# ------------------------------------------------------------------ overrides
def test_mirror_user_file_and_url_variable_in_that_order(home, monkeypatch):
    monkeypatch.setenv("DISSAM_MIRROR", "http://mirror.local/models/")
    assert get_entry("sam-vit-l").url == "http://mirror.local/models/sam_vit_l_0b3195.pth"
    assert get_entry("dis-sam").url == "http://mirror.local/models/dis-sam.pth"  # manual entries too
    assert get_entry("sam-vit-l-hf").url is None  # hub repositories: HF_ENDPOINT's business
    write_registry(home, {"sam-vit-l": {"url": "http://site/sam-l.pth"}})
    assert get_entry("sam-vit-l").url == "http://site/sam-l.pth"
    assert get_entry("sam-vit-l").sha256 == REGISTRY["sam-vit-l"].sha256  # other fields kept
    monkeypatch.setenv("DISSAM_URL_SAM_VIT_L", "http://env/sam.pth")
    assert get_entry("sam-vit-l").url == "http://env/sam.pth"


def test_user_registry_yaml_adds_entries(home, monkeypatch, tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text("models:\n  my-ref:\n    url: http://x/y.safetensors\n    filename: y.safetensors\n"
                    "    check: refiner:dis-sam-compact\n")
    monkeypatch.setenv("DISSAM_REGISTRY", str(path))
    e = get_entry("my-ref")
    assert (e.role, e.kind, e.filename, e.check) == ("refiner", "file", "y.safetensors", "refiner:dis-sam-compact")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cannot parse the user model registry"),
        ('{"models": {"x": {"urll": "http://x"}}}', "unknown field.*urll"),
        ('{"models": {"x": {"url": "http://x"}}}', "needs a 'filename'"),
        ('{"models": {"x": {"filename": "a", "role": "stage"}}}', "role must be one of"),
        ('{"models": [1, 2]}', "a mapping of names to fields"),
    ],
)
def test_bad_user_registry_files_are_reported(home, text, message):
    home.mkdir(parents=True)
    (home / "registry.json").write_text(text)
    with pytest.raises(DisSamError, match=message):
        entries()


def test_registry_variable_pointing_nowhere(home, monkeypatch, tmp_path):
    monkeypatch.setenv("DISSAM_REGISTRY", str(tmp_path / "missing.json"))
    with pytest.raises(DisSamError, match="does not exist"):
        entries()


# ------------------------------------------------------------------ resolvers
def test_an_existing_path_always_wins_over_a_name(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("dis-sam").write_bytes(b"x")
    assert resolve_refiner_source("dis-sam") == "dis-sam"
    assert resolve_sam_source(str(tmp_path / "dis-sam")) == str(tmp_path / "dis-sam")


def test_unknown_values_pass_through_to_the_loaders(home):
    assert resolve_sam_source("someone/unregistered-sam") == "someone/unregistered-sam"
    assert resolve_refiner_source("runs/missing.safetensors") == "runs/missing.safetensors"
    assert resolve_sam_source(None) is None and resolve_refiner_source(None) is None


def test_roles_are_checked(home):
    with pytest.raises(DisSamError, match="is a refiner model .*, not a sam: use it with --refiner"):
        resolve_sam_source("dis-sam")
    with pytest.raises(DisSamError, match="use it with --sam"):
        resolve_refiner_source("sam-vit-l")


def test_builtin_name_resolves_to_the_packaged_weights(home):
    path = Path(resolve_refiner_source("dis-sam-compact"))
    assert path.is_file() and path.name == "dis-sam-compact.safetensors"
    assert resolve_weights_file("dis-sam-compact") == str(path)


def test_a_manual_model_explains_where_to_get_it(home):
    with pytest.raises(DownloadError) as info:
        resolve_refiner_source("dis-sam")
    msg = str(info.value)
    assert "https://drive.google.com/drive/folders/1fE_DCGKU3WA-HmZnqRzaazHe44Lx9RP2" in msg
    assert str(models_dir() / "dis-sam.pth") in msg and "dissam models verify dis-sam" in msg
    assert "gpu_itr_" in msg


def test_a_hand_placed_manual_model_is_used(home, tmp_path):
    dest = models_dir() / "isnet.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"placed")
    assert resolve_refiner_source("isnet") == str(dest)


def _fake_hf_cache(root: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<rev>/...}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def test_a_cached_hub_refiner_loads_offline_without_network(home, tmp_path, monkeypatch, tiny_refiner):
    """A refiner on the Hub, already in the Hugging Face cache, loads by id in offline mode."""
    import huggingface_hub.constants as hf_constants

    from dissam import load_refiner
    from dissam.hub.folder import HubRefiner

    folder = tmp_path / "saved"
    HubRefiner.from_network(tiny_refiner, {"input_size": 256}).save_pretrained(folder)
    hf_cache = tmp_path / "hf"
    snap = _fake_hf_cache(hf_cache, "someone/tiny-refiner",
                          {n: (folder / n).read_bytes() for n in ("config.json", "model.safetensors")})
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("DISSAM_OFFLINE", "1")
    assert resolve_refiner_source("someone/tiny-refiner") == str(snap)
    ref = load_refiner("someone/tiny-refiner")
    assert ref.input_size == 256 and ref.metadata["input_size"] == 256
    got = ref.net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in tiny_refiner.state_dict().items())
    with pytest.raises(OfflineError, match="someone/other is not in the Hugging Face cache and offline mode"):
        hf_snapshot("someone/other")
    with pytest.raises(OfflineError, match="there is no file or folder 'runs/typo' here, and as a Hugging Face id"):
        load_refiner("runs/typo")


def test_a_registered_hub_sam_not_cached_offline_says_what_to_do(home, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        resolve_sam_source("sam-vit-l-hf")
    assert "facebook/sam-vit-large" in str(info.value)
    assert "hf download facebook/sam-vit-large --local-dir" in str(info.value)


# ------------------------------------------------------------------ verification
def test_verify_builtin_and_identify_a_file(home, tmp_path):
    builtin = get_entry("dis-sam-compact")
    report = verify_file(builtin, local_path(builtin))
    assert report.checks == ["798 tensors with the keys and shapes of 'dis-sam-compact'"]
    matches = identify(local_path(builtin), [e for e in entries().values() if e.kind != "hf"])
    assert [e.name for e, _ in matches] == ["dis-sam-compact"]


def test_verify_names_every_difference(home, tmp_path):
    sd = build_refiner("dis-sam-compact").state_dict()
    sd.pop("side1.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv_in.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(VerificationError) as info:
        verify_file(get_entry("dis-sam-compact"), path)
    msg = str(info.value)
    assert "missing keys (1): side1.bias" in msg and "unexpected keys (1): extra.weight" in msg
    assert "conv_in.weight: (16, 3, 3, 3) (expected (16, 5, 3, 3))" in msg


def test_verify_checks_an_official_sam_structure(home, tiny_sam_path):
    from dataclasses import replace

    entry = replace(get_entry("sam-vit-b"), sha256=None, size=None)
    with pytest.raises(VerificationError, match="hidden size 64 and 2 blocks, not vit_b"):
        verify_file(entry, tiny_sam_path)


# ------------------------------------------------------------------ the command
def test_models_list_json(home, capsys):
    assert main(["models", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["models"]}
    assert out["cache"] == str(models_dir())
    assert rows["dis-sam-compact"]["status"] == "cached"
    assert rows["dis-sam"]["status"] == "manual" and rows["dis-sam"]["path"] == str(models_dir() / "dis-sam.pth")
    assert rows["sam-vit-l"]["status"] == "not cached"
    assert out["presets"]["dis-sam"] == {"stage1": "sam", "sam": "sam-vit-l", "refiner": "dis-sam"}
    assert out["presets"]["demo"] == {"stage1": "u2netp-auto", "sam": None, "refiner": "dis-sam-compact"}


def test_models_path(home, capsys):
    assert main(["models", "path", "dis-sam-compact"]) == 0
    assert capsys.readouterr().out.strip().endswith("dis-sam-compact.safetensors")
    assert main(["models", "path", "sam-vit-h"]) == 1
    assert "dissam models download sam-vit-h" in capsys.readouterr().err


def test_models_download_and_verify_through_the_cli(home, capsys):
    data = payload(50_000, seed=3)
    with FileServer() as srv:
        srv.files["/t.bin"] = data
        write_registry(home, {"tiny": {"url": srv.url("/t.bin"), "filename": "t.bin", "sha256": sha256(data)}})
        assert main(["models", "download", "tiny", "--no-progress"]) == 0
        assert capsys.readouterr().out.strip() == f"tiny: {models_dir() / 't.bin'}"
        assert main(["models", "verify", "tiny"]) == 0
        assert "ok   tiny" in capsys.readouterr().out
        (models_dir() / "t.bin").write_bytes(data[:-1] + b"\0")  # same size, one byte changed
        assert main(["models", "verify"]) == 1
        assert "FAIL tiny: SHA-256" in capsys.readouterr().out
        assert main(["models", "download", "tiny", "--force", "--no-progress"]) == 0
        assert (models_dir() / "t.bin").read_bytes() == data


def test_models_download_of_the_paper_pair_offline_explains_both(home, capsys, monkeypatch):
    monkeypatch.setenv("DISSAM_OFFLINE", "1")
    assert main(["models", "download", "--model", "dis-sam", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "sam-vit-l: sam_vit_l_0b3195.pth is not in the cache and offline mode is on" in err
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth" in err
    assert "dis-sam (DIS-SAM refiner" in err and "drive.google.com" in err and str(models_dir() / "dis-sam.pth") in err


def test_models_verify_a_file_by_content(home, capsys, tmp_path):
    builtin = local_path(get_entry("dis-sam-compact"))
    assert main(["models", "verify", str(builtin)]) == 0
    assert "is dis-sam-compact" in capsys.readouterr().out
    other = tmp_path / "gte.pth"
    torch.save(build_refiner("gt-encoder-compact").state_dict(), other)
    assert main(["models", "verify", str(other)]) == 1
    assert "matches no registry entry" in capsys.readouterr().out
    assert main(["models", "verify", str(other), "--as", "dis-sam-compact"]) == 1
    assert "FAIL dis-sam-compact" in capsys.readouterr().out
    assert main(["models", "verify", "isnet"]) == 1
    assert "not in the cache" in capsys.readouterr().out
