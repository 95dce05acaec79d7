"""Official-checkpoint compatibility, our safetensors format, inflation, and clear errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from dissam.checkpoints import (
    infer_refiner_config,
    inflate_refiner_input,
    load_checkpoint,
    read_state_dict,
    save_checkpoint,
)
from dissam.errors import CheckpointError
from dissam.hub.loading import load_refiner
from dissam.models.isnet import ISNetDIS, build_refiner
from dissam.testing import isnet_fixture_state_dict


@pytest.fixture(scope="module")
def official_in5(tmp_path_factory, isnet_manifest):
    """A file shaped like the released DIS-SAM checkpoint: torch.save(net.state_dict(), path)."""
    sd = isnet_fixture_state_dict(isnet_manifest["isnet_dis_in5"]["state_dict"])
    path = tmp_path_factory.mktemp("ckpt") / "gpu_itr_24000_traLoss_4.7147.pth"
    torch.save(sd, path)
    return path, sd


def _same_weights(model, sd):
    msd = model.state_dict()
    return list(msd) == list(sd) and all(torch.equal(msd[k], sd[k]) for k in sd)


def test_load_official_pth_infers_channels_and_is_strict(official_in5):
    path, sd = official_in5
    ref = load_refiner(path)
    model = ref.net
    assert isinstance(model, ISNetDIS) and model.in_ch == 5 and not model.training
    assert ref.in_ch == 5 and ref.input_size == 1024 and ref.dropped_channels == () and ref.source == str(path)
    assert _same_weights(model, sd)


def test_load_strips_module_prefix_and_wrappers(official_in5, tmp_path):
    _, sd = official_in5
    p = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, p)
    assert _same_weights(load_refiner(p).net, sd)
    assert _same_weights(load_refiner(sd).net, sd)


def test_gt_encoder_and_in3_inferred(isnet_manifest):
    sd3 = isnet_fixture_state_dict(isnet_manifest["isnet_dis_in3"]["state_dict"])
    sde = isnet_fixture_state_dict(isnet_manifest["isnet_gt_encoder"]["state_dict"])
    assert infer_refiner_config(sd3).in_ch == 3
    assert infer_refiner_config(sde).arch == "gt_encoder"
    assert load_refiner(sde).net.__class__.__name__ == "ISNetGTEncoder"


def test_wrong_checkpoint_names_missing_unexpected_and_mismatched_keys(official_in5):
    _, sd = official_in5
    bad = dict(sd)
    del bad["side6.weight"]
    bad["extra.weight"] = torch.zeros(1)
    bad["stage1.rebnconvin.conv_s1.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as exc:
        load_refiner(bad)
    msg = str(exc.value)
    assert "missing keys (1): side6.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "stage1.rebnconvin.conv_s1.bias: checkpoint (7,) vs model (64,)" in msg


def test_unrecognised_state_dict(tmp_path):
    p = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, p)
    with pytest.raises(CheckpointError, match="cannot recognise the network"):
        load_refiner(p)


def test_truncated_file_gives_clear_error(official_in5, tmp_path):
    path, _ = official_in5
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_refiner(cut)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_refiner(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_refiner(tmp_path / "missing.pth")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "payload": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_state_dict(p)


def test_safetensors_round_trip_exact(tmp_path):
    torch.manual_seed(1)
    model = build_refiner("dis-sam-compact")
    for m in model.modules():  # non-trivial BN buffers
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.num_batches_tracked.fill_(7)
    path = save_checkpoint(tmp_path / "run" / "best", model, metadata={"step": 12, "maxFm": 0.5})
    assert path.name == "best.safetensors" and path.with_suffix(".json").is_file()
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["config"]["width"] == 0.25 and info["metadata"]["step"] == 12
    loaded, meta = load_checkpoint(path)
    assert _same_weights(loaded, model.state_dict()) and meta["metadata"]["maxFm"] == 0.5
    assert _same_weights(load_refiner(path).net, model.state_dict())
    # a lone .safetensors (JSON lost) still loads: the config is in the header
    path.with_suffix(".json").unlink()
    assert _same_weights(load_refiner(path).net, model.state_dict())
    assert not list(tmp_path.rglob(".*tmp*")), "temporary files left behind"


def test_truncated_safetensors(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_refiner("gt-encoder-compact"))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_refiner(path)


def test_inflation_3_to_5_matches_3_channel_net(isnet_manifest):
    torch.manual_seed(0)
    sd3 = isnet_fixture_state_dict(isnet_manifest["isnet_dis_in3"]["state_dict"])
    net3 = load_refiner(sd3).net
    net5 = load_refiner(inflate_refiner_input(sd3, in_ch=5)).net
    assert net5.in_ch == 5
    x3 = torch.rand(1, 3, 64, 48) - 0.5
    x5 = torch.cat([x3, torch.zeros(1, 2, 64, 48)], 1)
    with torch.inference_mode():
        a, _ = net3(x3)
        b, _ = net5(x5)
    for s3, s5 in zip(a, b):
        torch.testing.assert_close(s5, s3, atol=1e-6, rtol=1e-6)
    w = net5.conv_in.weight
    assert torch.equal(w[:, :3], sd3["conv_in.weight"]) and torch.count_nonzero(w[:, 3:]) == 0
    with pytest.raises(CheckpointError):
        inflate_refiner_input({"foo": torch.zeros(1)})


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path):
    """An HTML page saved instead of the download is not "a pickle with code" but not a checkpoint."""
    page = tmp_path / "dis_sam.pth"
    page.write_text("<!DOCTYPE html><html>Google Drive - virus scan warning</html>")
    with pytest.raises(CheckpointError, match=r"is not a PyTorch checkpoint .* starts with b'<!DO'"):
        load_refiner(page)

