"""The parts of the trainer on their own: validation (one refiner forward pass, the authors' saved-map
protocol), the stage schedules and the resume-state file."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from train_helpers import ThinDataset

from dissam.errors import DisSamError
from dissam.metrics import MetricSuite
from dissam.models.isnet import build_refiner
from dissam.refiner import forward_d1
from dissam.train import resume
from dissam.train.config import TrainConfig
from dissam.train.resume import Resumable, StageState
from dissam.train.schedule import stage_schedule
from dissam.train.validation import authors_u8, evaluate_model, gt_u8, orig_hw_list

METRICS = ("maxFm", "MAE", "mIoU")


def _reference_scores(model, ds, key: str, dtype: torch.dtype, batch_size: int):
    """Validation as the trainer computed it before it called dissam.refiner.forward_d1: its own
    forward under inference_mode and ``torch.autocast(device, dtype)`` when AMP is on."""
    model.eval()
    suite, maps = MetricSuite(METRICS), []
    amp = nullcontext() if dtype == torch.float32 else torch.autocast("cpu", dtype=dtype)
    with torch.inference_mode():
        for batch in torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False):
            with amp:
                d1 = model(batch[key])[0][0]
            for b, i in enumerate(batch["index"].tolist()):
                maps.append(authors_u8(d1[b], ds.gt_u8(i).shape))
                suite.step(maps[-1], ds.gt_u8(i))
    return suite.results(), maps


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("variant,key", [("dis-sam-compact", "image"), ("gt-encoder-compact", "label")])
def test_validation_scores_equal_the_trainers_former_forward(variant, key, dtype):
    torch.manual_seed(3)
    model = build_refiner(variant)
    ds = ThinDataset(3, 64, seed=8)
    want, want_maps = _reference_scores(model, ds, key, dtype, batch_size=2)
    model.train()
    got = evaluate_model(model, [ds], METRICS, input_key=key, device=torch.device("cpu"), dtype=dtype, batch_size=2)
    assert model.training  # put back in the mode it was in
    assert got == {m: float(want[m]) for m in METRICS}
    model.eval()
    d1 = forward_d1(model, torch.stack([ds[i][key] for i in range(len(ds))]), dtype=dtype)
    assert d1.dtype == torch.float32 and d1.shape == (3, 1, 64, 64)
    for i, want_map in enumerate(want_maps):
        assert len(np.unique(want_map)) > 1  # not a constant map
        np.testing.assert_array_equal(authors_u8(d1[i], (64, 64)), want_map)


def test_validation_averages_over_sets():
    torch.manual_seed(4)
    model = build_refiner("dis-sam-compact")
    sets = [ThinDataset(2, 64, seed=s) for s in (1, 2)]
    kw = {"input_key": "image", "device": torch.device("cpu")}
    each = [evaluate_model(model, [ds], ("MAE",), **kw)["MAE"] for ds in sets]
    assert evaluate_model(model, sets, ("MAE",), **kw)["MAE"] == pytest.approx(np.mean(each))


def test_ground_truth_sources(tmp_path):
    from dissam.io import write_png

    gt = (np.arange(12).reshape(3, 4) % 2 * 255).astype(np.uint8)
    write_png(tmp_path / "g.png", gt)
    label = torch.from_numpy(gt[None] / 255.0).float()
    on_disk = SimpleNamespace(samples=[SimpleNamespace(gt=tmp_path / "g.png")])
    np.testing.assert_array_equal(gt_u8(on_disk, 0, torch.zeros(1, 8, 8), (3, 4)), gt)
    np.testing.assert_array_equal(gt_u8([], 0, label, (3, 4)), gt)  # the label is at the original size
    with pytest.raises(DisSamError, match="neither gt_u8"):
        gt_u8([], 0, torch.zeros(1, 8, 8), (3, 4))


def test_collated_original_sizes():
    want = [(3, 4), (5, 6)]
    assert orig_hw_list(torch.tensor(want), 2) == want
    assert orig_hw_list([torch.tensor([3, 5]), torch.tensor([4, 6])], 2) == want  # default collate of tuples
    assert orig_hw_list([[3, 4], (5, 6)], 2) == want


def test_stage_schedules():
    cfg = TrainConfig()
    cfg.schedule.max_steps, cfg.schedule.valid_metrics, cfg.schedule.select_metric = 50, ["maxFm", "MAE"], "MAE"
    ref = stage_schedule(cfg, "refiner")
    assert (ref.base_lr, ref.max_steps, ref.metrics, ref.select) == (cfg.optim.lr, 50, ("maxFm", "MAE"), "MAE")
    assert ref.improves(0.1, None) and ref.improves(0.1, 0.2) and not ref.improves(0.2, 0.1)  # MAE: lower
    gte = stage_schedule(cfg, "gt_encoder")
    assert (gte.base_lr, gte.max_steps, gte.max_epochs, gte.metrics) == (1e-4, 100000, 0, ("maxFm",))
    assert gte.improves(0.9, 0.8) and not gte.improves(0.8, 0.8)
    assert ref.extends("step budget 40", 40, 0) and not ref.extends("step budget 50", 50, 0)
    assert not ref.extends("early stop: 3 validations without gain", 10, 0)
    cfg.schedule.max_steps, cfg.schedule.early_stop = 0, 0
    with pytest.raises(DisSamError, match="stage refiner has no end"):
        stage_schedule(cfg, "refiner").check_has_end(can_validate=True)
    with pytest.raises(DisSamError, match="unknown training stage"):
        stage_schedule(cfg, "decoder")


def _parts(seed: int):
    torch.manual_seed(seed)
    net = build_refiner("gt-encoder-compact")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.rand(2, 1, 32, 32))[0][0].mean().backward()
    opt.step()
    return net, opt, torch.amp.GradScaler("cuda", enabled=False)


def test_state_file_keys_and_round_trip(tmp_path):
    """state.pt keeps the keys of the files written before the trainer was split, so they resume."""
    net, opt, scaler = _parts(0)
    stages = {"gt_encoder": StageState(step=3, done=True, stop_reason="step budget 3"), "refiner": StageState(step=2)}
    state = resume.pack_state({"a": 1}, stages, Resumable(net, opt, None, None, scaler), world_size=1)
    assert list(state) == ["format", "version", "config", "stages", "refiner", "opt_refiner", "gt_encoder",
                           "opt_gt_encoder", "scaler", "rng", "world_size"]
    assert (state["format"], state["version"], state["gt_encoder"], state["opt_gt_encoder"]) == (
        "dissam-train-state", 1, {}, {})
    assert set(state["rng"]) >= {"torch", "numpy_keys", "numpy_pos", "numpy_has_gauss", "numpy_cached", "python",
                                 "python_version"}
    assert set(state["stages"]["refiner"]) == {"step", "epoch", "batch_in_epoch", "best", "best_step",
                                               "bad_validations", "last_valid_step", "done", "stop_reason"}
    resume.write_state(tmp_path / resume.STATE_FILE, state)
    expected_next = torch.rand(3)  # restoring the RNG states replays the draws that followed the save

    net2, opt2, scaler2 = _parts(1)
    into = {"gt_encoder": StageState(), "refiner": StageState()}
    saved = resume.read_state(tmp_path / resume.STATE_FILE)
    resume.restore_state(saved, into, Resumable(net2, opt2, None, None, scaler2), world_size=1)
    assert into == stages
    for k, v in net.state_dict().items():
        assert torch.equal(net2.state_dict()[k], v), k
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected_next)


def test_unreadable_state_files_are_named(tmp_path):
    with pytest.raises(DisSamError, match="does not exist"):
        resume.read_state(tmp_path / resume.STATE_FILE)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DisSamError, match="junk.pt is unreadable"):
        resume.read_state(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(DisSamError, match="not a dissam training state"):
        resume.read_state(tmp_path / "other.pt")
