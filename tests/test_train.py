"""Training: end-to-end on generated thin-structure data, exact resume, NaN stop, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import ThinDataset

from dissam.errors import DisSamError
from dissam.train import Trainer, TrainingError, load_config

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_end_to_end_refiner_beats_the_coarse_mask(tmp_path):
    """Compact GT encoder + compact refiner at 64²: the loss falls, validation maxF ends above what
    the coarse input mask scores, checkpoints are written and load with load_refiner."""
    from dissam.hub.loading import load_refiner
    from dissam.metrics import MetricSuite

    train_ds = ThinDataset(24, 64, seed=1, augment=True)
    valid_ds = ThinDataset(6, 64, seed=2)
    coarse = MetricSuite(("maxFm", "MAE"))
    for i in range(len(valid_ds)):
        coarse.step(valid_ds.coarse_u8(i), valid_ds.gt_u8(i))
    coarse_maxf = coarse.results()["maxFm"]

    cfg = load_config(
        TINY,
        ["gt_encoder.max_steps=6", "gt_encoder.valid_every=0", "schedule.max_steps=60", "schedule.valid_every=30"],
    )
    run = tmp_path / "run"
    summary = Trainer(cfg, run_dir=run, train_dataset=train_ds, valid_datasets=[valid_ds]).fit()

    assert summary["steps"] == 60 and summary["gt_encoder_steps"] == 6
    assert summary["best"] > coarse_maxf + 0.02, (summary["best"], coarse_maxf)
    recs = _records(run)
    losses = [r["loss"] for r in recs if r.get("stage") == "refiner" and "loss" in r]
    assert len(losses) == 12 and np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])
    valids = [r for r in recs if r.get("stage") == "refiner" and "valid" in r]
    assert [r["step"] for r in valids] == [30, 60] and set(valids[0]["valid"]) == {"maxFm", "MAE"}
    assert (run / "config.yaml").is_file()

    final = load_refiner(run / "final.safetensors").net
    for k, v in trainer_state(run)["refiner"].items():
        torch.testing.assert_close(final.state_dict()[k], v)
    best = load_refiner(run / "best.safetensors").net
    info = json.loads((run / "best.json").read_text())
    assert info["metadata"]["valid"]["maxFm"] == pytest.approx(summary["best"])
    assert info["metadata"]["train_config"]["model"]["variant"] == "dis-sam-compact"
    assert best.in_ch == 5 and best.width == 0.25
    gte = load_refiner(run / "gt_encoder.safetensors").net
    assert gte.in_ch == 1


def trainer_state(run: Path) -> dict:
    return torch.load(run / "state.pt", map_location="cpu", weights_only=True)


class _Crash(RuntimeError):
    pass


def _resume_cfg(extra=()):
    return load_config(
        TINY,
        [
            "gt_encoder.max_steps=3",
            "gt_encoder.valid_every=2",
            "optim.batch_size=4",
            "schedule.max_steps=5",
            "schedule.valid_every=2",
            "runtime.state_every=1",
            "runtime.log_every=1",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def resume_data():
    return ThinDataset(6, 64, seed=3, augment=True), ThinDataset(2, 64, seed=4)


@pytest.fixture(scope="module")
def uninterrupted(resume_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("full") / "run"
    summary = Trainer(_resume_cfg(), run_dir=run, train_dataset=resume_data[0], valid_datasets=[resume_data[1]]).fit()
    return run, summary


@pytest.mark.parametrize("crash_stage,crash_step", [("gt_encoder", 2), ("refiner", 3)])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, resume_data, uninterrupted, crash_stage, crash_step):
    """Kill mid-epoch (6 samples, batch 4: batches of 4 and 2), resume, and the parameters, optimizer
    moments, GT encoder (train-mode BN running stats included) and best score equal a run that was
    never interrupted."""
    full_run, full_summary = uninterrupted
    train_ds, valid_ds = resume_data

    def crash(trainer, stage, step):
        if (stage, step) == (crash_stage, crash_step):
            raise _Crash

    run = tmp_path / "run"
    with pytest.raises(_Crash):
        Trainer(_resume_cfg(), run_dir=run, train_dataset=train_ds, valid_datasets=[valid_ds], hooks=[crash]).fit()
    mid = trainer_state(run)
    assert mid["stages"][crash_stage]["step"] == crash_step
    with pytest.raises(DisSamError, match="already holds a run"):
        Trainer(_resume_cfg(), run_dir=run, train_dataset=train_ds, valid_datasets=[valid_ds])
    summary = Trainer(_resume_cfg(), run_dir=run, train_dataset=train_ds, valid_datasets=[valid_ds], resume=True).fit()

    assert summary == {**full_summary, "run_dir": str(run)}
    a, b = trainer_state(full_run), trainer_state(run)
    for key in ("refiner", "gt_encoder"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    for k, s in a["opt_refiner"]["state"].items():
        assert torch.equal(s["exp_avg"], b["opt_refiner"]["state"][k]["exp_avg"])
    assert a["stages"] == b["stages"]


def test_non_finite_loss_stops_with_the_last_good_state(tmp_path):
    class Poisoned(ThinDataset):
        def __getitem__(self, index):
            item = super().__getitem__(index)
            if self.epoch >= 1:
                item["image"] = torch.full_like(item["image"], float("nan"))
            return item

    cfg = load_config(
        TINY, ["gt_encoder.enabled=false", "optim.batch_size=4", "runtime.state_every=1", "schedule.valid_every=0"]
    )
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"refiner: the loss became nan at step 3.*state\.pt"):
        Trainer(cfg, run_dir=run, train_dataset=Poisoned(8, 64), valid_datasets=[]).fit()
    st = trainer_state(run)
    assert st["stages"]["refiner"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in st["refiner"].values() if v.is_floating_point())
    assert not (run / "final.safetensors").exists()
    assert _records(run)[-1]["error"] == "non-finite loss"


def test_gt_encoder_checkpoint_and_eval_bn_mode(tmp_path, resume_data):
    """Stage (a) is skipped when a trained encoder is given; with bn_mode=eval its running stats
    stay untouched during refiner training (with bn_mode=train they move, as released)."""
    from dissam.checkpoints import save_checkpoint
    from dissam.models.isnet import build_refiner

    torch.manual_seed(5)
    gte = build_refiner("gt-encoder-compact")
    ck = save_checkpoint(tmp_path / "gte.safetensors", gte)
    train_ds, _ = resume_data
    moved = {}
    for mode in ("eval", "train"):
        cfg = load_config(
            TINY,
            [f"gt_encoder.checkpoint={ck}", f"gt_encoder.bn_mode={mode}", "schedule.max_steps=2", "optim.batch_size=2"],
        )
        t = Trainer(cfg, run_dir=tmp_path / mode, train_dataset=train_ds, valid_datasets=[])
        s = t.fit()
        assert s["gt_encoder_steps"] == 0 and s["gt_encoder_stop_reason"] == "loaded"
        moved[mode] = not torch.equal(
            t.gte.state_dict()["conv_in.bn.running_mean"], gte.state_dict()["conv_in.bn.running_mean"]
        )
    assert moved == {"eval": False, "train": True}


def _write_split(root: Path, ds: ThinDataset) -> Path:
    from dissam.io import write_png

    for i, (rgb, gt, coarse) in enumerate(ds.samples):
        write_png(root / "im" / f"s{i}.png", rgb)
        write_png(root / "gt" / f"s{i}.png", gt)
        write_png(root / "mask" / f"s{i}.png", coarse)
    return root


def test_cli_train_and_resume_on_disk_data(tmp_path):
    from dissam.cli import main

    split = _write_split(tmp_path / "split", ThinDataset(4, 64, seed=6))
    args = [
        "train",
        "--config",
        str(TINY),
        f"data.train=[{split}]",
        f"data.valid=[{split}]",
        f"runtime.out_dir={tmp_path / 'runs'}",
        "runtime.run_name=r1",
        "gt_encoder.max_steps=1",
        "schedule.max_steps=2",
        "optim.batch_size=2",
        "data.size=64",
    ]
    assert main(args) == 0
    run = tmp_path / "runs" / "r1"
    assert trainer_state(run)["stages"]["refiner"]["step"] == 2
    assert main(["train", "--resume", str(run), "schedule.max_steps=3"]) == 0
    assert trainer_state(run)["stages"]["refiner"]["step"] == 3
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 1
    assert main(["train", "--config", str(TINY), "optim.nope=1"]) == 1


def test_cosine_schedule_values():
    """constant is the released behaviour; cosine warms up linearly, then decays to min_lr exactly at
    the stage's last step and stays there. The warm-up applies under every schedule."""
    from types import SimpleNamespace

    from dissam.train.trainer import scheduled_lr

    const = SimpleNamespace(lr_schedule="constant", min_lr=0.0, warmup_steps=0)
    assert [scheduled_lr(const, 1e-3, s, 100) for s in (0, 50, 99)] == [1e-3] * 3
    cos = SimpleNamespace(lr_schedule="cosine", min_lr=1e-5, warmup_steps=10)
    assert scheduled_lr(cos, 1e-3, 0, 110) == pytest.approx(1e-4)
    assert scheduled_lr(cos, 1e-3, 9, 110) == pytest.approx(1e-3)
    assert scheduled_lr(cos, 1e-3, 10, 110) == pytest.approx(1e-3)
    assert scheduled_lr(cos, 1e-3, 60, 110) == pytest.approx((1e-3 + 1e-5) / 2)
    assert scheduled_lr(cos, 1e-3, 110, 110) == pytest.approx(1e-5)
    assert scheduled_lr(cos, 1e-3, 500, 110) == pytest.approx(1e-5)
    lrs = [scheduled_lr(cos, 1e-3, s, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # no budget: the warm-up, then constant
    assert [scheduled_lr(cos, 1e-3, s, 0) for s in (4, 9, 50)] == pytest.approx([5e-4, 1e-3, 1e-3])
    warm_const = SimpleNamespace(lr_schedule="constant", min_lr=0.0, warmup_steps=4)
    assert [scheduled_lr(warm_const, 1e-3, s, 100) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )


def test_cosine_run_logs_the_schedule_and_resumes_exactly(tmp_path, resume_data):
    """The logged learning rate follows the schedule, and a run killed mid-decay resumes to the same
    parameters as one that was not (the rate is a function of the step count only)."""
    train_ds, valid_ds = resume_data
    extra = ["optim.lr_schedule=cosine", "optim.min_lr=1e-5", "optim.warmup_steps=1"]

    def crash(trainer, stage, step):
        if (stage, step) == ("refiner", 3):
            raise _Crash

    full = tmp_path / "full"
    Trainer(_resume_cfg(extra), run_dir=full, train_dataset=train_ds, valid_datasets=[valid_ds]).fit()
    cfg = _resume_cfg(extra)
    logged = [(r["step"], r["lr"]) for r in _records(full) if r.get("stage") == "refiner" and "lr" in r]
    assert [s for s, _ in logged] == [1, 2, 3, 4, 5]
    # the rate of the step that took the run from s - 1 to s completed steps
    want = [1e-5 + 0.5 * (cfg.optim.lr - 1e-5) * (1 + np.cos(np.pi * (s - 2) / 4)) for s in range(2, 6)]
    assert [lr for _, lr in logged] == pytest.approx([cfg.optim.lr, *want])
    cut = tmp_path / "cut"
    with pytest.raises(_Crash):
        Trainer(_resume_cfg(extra), run_dir=cut, train_dataset=train_ds, valid_datasets=[valid_ds], hooks=[crash]).fit()
    Trainer(_resume_cfg(extra), run_dir=cut, train_dataset=train_ds, valid_datasets=[valid_ds], resume=True).fit()
    a, b = trainer_state(full), trainer_state(cut)
    for k in a["refiner"]:
        assert torch.equal(a["refiner"][k], b["refiner"][k]), k


def test_init_from_a_refiner_checkpoint(tmp_path, resume_data):
    """model.init=refiner:<path> starts from those weights (strictly: a 3-channel file is refused
    with the key named)."""
    from dissam.checkpoints import save_checkpoint
    from dissam.errors import CheckpointError
    from dissam.models.isnet import build_refiner

    torch.manual_seed(11)
    start = build_refiner("dis-sam-compact")
    ck = save_checkpoint(tmp_path / "start.safetensors", start)
    train_ds, _ = resume_data
    cfg = load_config(TINY, [f"model.init=refiner:{ck}", "gt_encoder.enabled=false", "schedule.max_steps=1"])
    t = Trainer(cfg, run_dir=tmp_path / "a", train_dataset=train_ds, valid_datasets=[])
    for k, v in start.state_dict().items():
        assert torch.equal(t.refiner.state_dict()[k], v), k
    three = build_refiner("isnet")
    bad = save_checkpoint(tmp_path / "three.safetensors", three)
    cfg = load_config(TINY, [f"model.init=refiner:{bad}", "gt_encoder.enabled=false", "schedule.max_steps=1"])
    with pytest.raises(CheckpointError, match="conv_in"):
        Trainer(cfg, run_dir=tmp_path / "b", train_dataset=train_ds, valid_datasets=[])


@pytest.mark.parametrize("dropout,valid_zeroed", [([1.0, 0.0], [3]), ([0.3, 1.0], [4]), ([0.5, 0.5], [])])
def test_validation_drops_a_prompt_only_when_training_always_does(tmp_path, dropout, valid_zeroed):
    """Table 2's rows: a prompt dropped with probability 1 is absent from validation too; a partial
    dropout (an augmentation) leaves validation inputs whole."""
    from dissam.train.trainer import build_datasets

    split = _write_split(tmp_path / "split", ThinDataset(3, 64, seed=6))
    cfg = load_config(
        TINY, [f"data.train=[{split}]", f"data.valid=[{split}]", f"data.prompt_dropout={dropout}", "data.size=64"]
    )
    train_ds, (valid_ds,) = build_datasets(cfg)
    assert train_ds.prompt_dropout == tuple(dropout)
    for i in range(len(valid_ds)):
        x = valid_ds[i]["image"]
        for ch in (3, 4):
            assert (x[ch].abs().max() == 0) == (ch in valid_zeroed), (i, ch)
