"""Refiners as Hub folders and `dissam convert`: official .pth <-> folder, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dissam import load_refiner
from dissam.cli import main
from dissam.errors import CheckpointError
from dissam.hub.folder import HubRefiner, folder_to_pth, pth_to_folder
from dissam.models.isnet import build_refiner
from dissam.testing import isnet_fixture_state_dict


@pytest.fixture(scope="module")
def fixture_pths(isnet_manifest, tmp_path_factory):
    """The parity fixtures' weights saved as official-style .pth files (plain state dicts)."""
    root = tmp_path_factory.mktemp("official")
    out = {}
    for name in ("isnet_dis_in5", "isnet_gt_encoder"):
        out[name] = root / f"{name}.pth"
        torch.save(isnet_fixture_state_dict(isnet_manifest[name]["state_dict"]), out[name])
    return out


@pytest.fixture(scope="module")
def in5_folder(fixture_pths, tmp_path_factory):
    """The DIS-SAM refiner's fixture weights converted to a Hub folder (once per module)."""
    return pth_to_folder(fixture_pths["isnet_dis_in5"], tmp_path_factory.mktemp("hub") / "dis-sam")


def _same_bits(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].numpy().tobytes() == b[k].numpy().tobytes()
        for k in a
    )


def test_dis_sam_pth_to_folder_and_back_is_bit_exact(fixture_pths, in5_folder, tmp_path):
    """The 5-channel refiner (798 tensors, 44 M parameters): same keys, order, dtypes and bytes."""
    assert sorted(p.name for p in in5_folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    back = folder_to_pth(in5_folder, tmp_path / "back.pth")
    original = torch.load(fixture_pths["isnet_dis_in5"], weights_only=True)
    assert len(original) == 798
    assert _same_bits(original, torch.load(back, weights_only=True))


def test_gt_encoder_round_trips_and_folders_are_reproducible(fixture_pths, tmp_path):
    """.pth -> folder -> .pth is bit-exact, and folder -> .pth -> folder gives the same files, byte for byte."""
    src = fixture_pths["isnet_gt_encoder"]
    folder = pth_to_folder(src, tmp_path / "hub")
    back = folder_to_pth(folder, tmp_path / "back.pth")
    assert _same_bits(torch.load(src, weights_only=True), torch.load(back, weights_only=True))
    again = pth_to_folder(back, tmp_path / "hub2")
    assert (again / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert (again / "config.json").read_text() == (folder / "config.json").read_text()


def test_folder_config_and_model_card(in5_folder):
    cfg = json.loads((in5_folder / "config.json").read_text())
    assert cfg == {"arch": "isnet", "in_ch": 5, "out_ch": 1, "width": 1.0, "metadata": {"input_size": 1024},
                   "format": "dissam-refiner", "format_version": 1}
    card = (in5_folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: dissam" in card and "dis-sam" in card
    assert "isnet_dis_in5.pth" in card and "5 input channels" in card


def test_the_folder_predicts_exactly_what_the_pth_does(tmp_path):
    src = _compact_pth(tmp_path)
    folder = pth_to_folder(src, tmp_path / "hub")
    x = torch.rand(1, 5, 64, 48)
    with torch.inference_mode():
        a = load_refiner(src).net(x)[0][0]
        b = load_refiner(folder).net(x)[0][0]
    assert torch.equal(a, b)
    assert load_refiner(folder).metadata == {"input_size": 1024}


def test_wrapped_and_prefixed_state_dicts_convert_to_the_plain_keys(tmp_path):
    torch.manual_seed(0)
    sd = build_refiner("dis-sam-compact").state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    folder = pth_to_folder(tmp_path / "wrapped.pth", tmp_path / "hub")
    assert _same_bits(sd, torch.load(folder_to_pth(folder, tmp_path / "plain.pth"), weights_only=True))


def test_a_state_dict_with_a_missing_key_is_refused_and_nothing_is_written(tmp_path):
    sd = build_refiner("dis-sam-compact").state_dict()
    sd.pop("side3.weight")
    sd["stray"] = torch.zeros(2)
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): side3.weight[\s\S]*unexpected keys \(1\): stray"):
        pth_to_folder(tmp_path / "broken.pth", tmp_path / "hub")
    assert not (tmp_path / "hub").exists()


def test_a_config_that_contradicts_the_weights_is_refused(tmp_path):
    folder = pth_to_folder(_compact_pth(tmp_path), tmp_path / "hub")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "in_ch": 3}))
    with pytest.raises(CheckpointError, match="config.json says .*in_ch=3.*the weights do not match"):
        load_refiner(folder)


def test_a_sam_folder_given_as_refiner_is_explained(tmp_path):
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "sam"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="goes to --sam, not --refiner"):
        load_refiner(folder)


def _compact_pth(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    path = tmp_path / "compact.pth"
    torch.save(build_refiner("dis-sam-compact").state_dict(), path)
    return path


def test_hub_refiner_follows_the_mixin_conventions(tmp_path, tiny_refiner):
    meta = {"input_size": 512, "train_config": {"data": {"prompt_dropout": [1.0, 0.0]}}}
    ref = HubRefiner.from_network(tiny_refiner, meta)
    ref.save_pretrained(tmp_path / "hub")
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = HubRefiner.from_pretrained(tmp_path / "hub")
    assert loaded.config == ref.config and loaded.metadata == meta
    assert not loaded.network.training
    assert _same_bits(tiny_refiner.state_dict(), loaded.network.state_dict())
    # the same folder through the ordinary loader keeps what inference needs from the metadata
    ref = load_refiner(tmp_path / "hub")
    assert ref.dropped_channels == (3,)
    assert ref.input_size == 512


def test_push_to_hub_uploads_the_saved_folder(tmp_path, tiny_refiner, monkeypatch):
    import huggingface_hub.hub_mixin as mixin

    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploaded["repo"] = repo_id
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()
            return "https://huggingface.co/me/tiny/commit/0"

    monkeypatch.setattr(mixin, "HfApi", FakeApi)
    HubRefiner.from_network(tiny_refiner).push_to_hub("me/tiny")
    assert uploaded["repo"] == "me/tiny"
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert uploaded["config"]["width"] == 0.25 and uploaded["config"]["format"] == "dissam-refiner"
    assert 'refiner="me/tiny"' in uploaded["card"] and "library_name: dissam" in uploaded["card"]


def test_convert_command_both_ways(tmp_path, capsys):
    src = _compact_pth(tmp_path)
    assert main(["convert", str(src), str(tmp_path / "hub")]) == 0
    assert main(["convert", str(tmp_path / "hub"), str(tmp_path / "back.pth")]) == 0
    assert _same_bits(torch.load(src, weights_only=True), torch.load(tmp_path / "back.pth", weights_only=True))
    assert main(["convert", str(src), str(tmp_path / "hub")]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "hub"), "--overwrite"]) == 0


def test_convert_a_registry_name(tmp_path):
    """The built-in model by name -> a Hub folder holding the same tensors."""
    from safetensors.torch import load_file

    assert main(["convert", "dis-sam-compact", str(tmp_path / "hub")]) == 0
    from dissam.hub import get_entry
    from dissam.hub.store import local_path

    original = load_file(str(local_path(get_entry("dis-sam-compact"))))
    converted = load_file(str(tmp_path / "hub" / "model.safetensors"))
    assert original.keys() == converted.keys()
    assert all(torch.equal(original[k], converted[k]) for k in original)


@pytest.mark.slow
def test_convert_an_official_sam_checkpoint_to_a_transformers_folder(tiny_sam_path, tmp_path):
    from dissam.stages.sam import load_sam

    assert main(["convert", str(tiny_sam_path), str(tmp_path / "sam")]) == 0
    assert (tmp_path / "sam" / "config.json").is_file()
    stage = load_sam(tmp_path / "sam")
    official = torch.load(tiny_sam_path, weights_only=True)["image_encoder.patch_embed.proj.weight"]
    assert torch.equal(stage.model.vision_encoder.patch_embed.projection.weight, official)
