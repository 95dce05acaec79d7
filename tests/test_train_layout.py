"""How a run follows the world size and what it reports (one process): the batch layout and the
learning-rate factor, resume checks, config keys, parameter groups, SyncBatchNorm conversion,
BatchNorm in eval mode, the throughput fields of the log, the W&B logger, ``--resume auto``."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from train_helpers import ThinDataset, write_split

from dissam.errors import DisSamError
from dissam.models.isnet import build_refiner
from dissam.train import Trainer, load_config
from dissam.train.batching import batch_layout, check_resume_layout, check_world_size
from dissam.train.config import OptimConfig
from dissam.train.models import convert_sync_bn
from dissam.train.param_groups import param_groups

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"
SHORT = ["gt_encoder.enabled=false", "schedule.max_steps=2", "schedule.valid_every=0", "optim.batch_size=2",
         "runtime.log_every=1"]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "fields,world,want",
    [
        ({}, 1, (6, 1, 6, 1.0)),  # the paper: batch 6, one process
        ({"batch_size": 3}, 2, (3, 1, 6, 1.0)),
        ({"global_batch_size": 6}, 2, (3, 1, 6, 1.0)),
        ({"global_batch_size": 48, "lr_scaling": "linear"}, 8, (6, 1, 48, 8.0)),
        ({"global_batch_size": 48, "lr_scaling": "sqrt"}, 8, (6, 1, 48, math.sqrt(8))),
        ({"global_batch_size": 24, "accum_steps": 3}, 8, (1, 3, 24, 1.0)),
        ({"batch_size": 2, "accum_steps": 3, "lr_scaling": "linear"}, 1, (2, 3, 6, 1.0)),
    ],
)
def test_batch_layout(fields, world, want):
    o = OptimConfig(**fields)
    lay = batch_layout(o, world)
    assert (lay.per_process, lay.accum_steps, lay.global_batch) == want[:3]
    assert lay.lr_factor == pytest.approx(want[3]) and lay.world_size == world
    assert f"global batch {want[2]} = {want[0]} per process x {world} process(es)" in lay.describe()


def test_layouts_that_cannot_be_kept_are_refused():
    with pytest.raises(DisSamError, match=r"global_batch_size=6 does not split over 4 process\(es\) x 1.*multiple of 4"):
        batch_layout(OptimConfig(global_batch_size=6), 4)
    with pytest.raises(DisSamError, match=r"runtime.world_size=8 process\(es\) but 4 started.*runtime.world_size=4"):
        check_world_size(8, 4)
    check_world_size(0, 4)
    lay = batch_layout(OptimConfig(batch_size=6), 2)  # global 12
    assert check_resume_layout({"world_size": 2, "global_batch": 12}, lay, 2, False) == []
    assert check_resume_layout({"world_size": 2}, lay, 2, False) == []  # a state written before the record
    with pytest.raises(DisSamError, match="trained with a global batch of 6, this start would use 12.*global_batch_size=6"):
        check_resume_layout({"world_size": 2, "global_batch": 6}, lay, 2, False)
    assert "global batch changed from 6 to 12" in check_resume_layout({"world_size": 2, "global_batch": 6}, lay, 2, True)[0]
    with pytest.raises(DisSamError, match=r"trained with 4 process\(es\), this start has 2"):
        check_resume_layout({"world_size": 4, "global_batch": 12}, lay, 0, False)


@pytest.mark.parametrize(
    "override,match",
    [
        ("optim.accum_steps=0", "optim.accum_steps must be >= 1"),
        ("optim.global_batch_size=-1", "optim.global_batch_size must be >= 0"),
        ("optim.lr_scaling=cube", "optim.lr_scaling"),
        ("model.bn_mode=frozen", "model.bn_mode"),
        ("runtime.dist_timeout_s=0", "runtime.dist_timeout_s must be >= 1"),
        ("optim.lr_mult={stage1.*: -1}", "optim.lr_mult: factors must be >= 0"),
        ("optim.lr_mult=[a]", "optim.lr_mult: expected a mapping"),
        ("optim.warmup_steps=-2", "optim.warmup_steps must be >= 0"),
        ("data.uint8_items=false;data.ram_cache=true", "data.ram_cache keeps uint8 items"),
    ],
)
def test_invalid_layout_values(override, match):
    with pytest.raises(DisSamError, match=match):
        load_config(None, override.split(";"))


def test_parameter_groups_freeze_and_scale(tmp_path):
    """Frozen parameters stay out of the optimizer and do not move; the others train at the
    scheduled rate times their group's factor; typos are errors."""
    net = build_refiner("dis-sam-compact")
    groups = param_groups(net, ["stage1.*"], {"stage2.*": 0.1, "side*": 0.0})
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("stage1.") for n in frozen)
    assert groups.factors == [1.0, 0.1, 0.0]
    assert sum(len(g["params"]) for g in groups.groups) + len(frozen) == len(list(net.parameters()))
    assert "frozen" in groups.describe()
    with pytest.raises(DisSamError, match=r"no refiner parameter matches \['stag1\.\*'\]"):
        param_groups(build_refiner("dis-sam-compact"), ["stag1.*"])
    with pytest.raises(DisSamError, match="leaves no refiner parameter"):
        param_groups(build_refiner("dis-sam-compact"), ["*"])
    plain = param_groups(build_refiner("dis-sam-compact"))
    assert plain.factors == [1.0] and len(plain.groups) == 1

    cfg = load_config(TINY, [*SHORT, "optim.freeze=[stage1.*]", "optim.lr_mult={stage2.*: 0.5}"])
    t = Trainer(cfg, run_dir=tmp_path / "run", train_dataset=ThinDataset(4, 64), valid_datasets=[])
    before = {k: v.clone() for k, v in t.refiner.state_dict().items()}
    t.fit()
    after = t.refiner.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("stage1.") and "running" not in k
               and "num_batches" not in k)
    assert not torch.equal(before["stage2.rebnconvin.conv_s1.weight"], after["stage2.rebnconvin.conv_s1.weight"])
    assert [g["lr"] for g in t.opt_refiner.param_groups] == pytest.approx([cfg.optim.lr, 0.5 * cfg.optim.lr])
    # a resume with other groups is refused with what to keep
    cfg2 = load_config(TINY, [*SHORT, "schedule.max_steps=3"])
    with pytest.raises(DisSamError, match="optim.freeze and optim.lr_mult must stay"):
        Trainer(cfg2, run_dir=tmp_path / "run", train_dataset=ThinDataset(4, 64), valid_datasets=[], resume=True)


def test_sync_batchnorm_conversion_covers_both_networks():
    torch.manual_seed(0)
    refiner, gte = build_refiner("dis-sam-compact"), build_refiner("gt-encoder-compact")
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (refiner, gte)]
    params = [dict(m.named_parameters()) for m in (refiner, gte)]
    convert_sync_bn(refiner, gte, None)
    for model, sd, ps in zip((refiner, gte), before, params):
        kinds = {type(m) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        assert kinds == {torch.nn.SyncBatchNorm}
        assert model.state_dict().keys() == sd.keys()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
        assert all(p is ps[n] for n, p in model.named_parameters())  # the optimizer's tensors


def test_sync_bn_off_cuda_under_ddp_is_refused():
    from dissam.train.distributed import DistInfo, check_device_options

    with pytest.raises(DisSamError, match="runtime.sync_bn needs CUDA"):
        check_device_options("none", True, DistInfo(0, 0, 2), torch.device("cpu"))
    check_device_options("none", True, DistInfo(), torch.device("cpu"))  # one process: nothing to sync


def test_refiner_batchnorm_in_eval_mode_keeps_its_statistics(tmp_path):
    cfg = load_config(TINY, [*SHORT, "model.bn_mode=eval", "schedule.valid_every=1"])
    t = Trainer(cfg, run_dir=tmp_path / "run", train_dataset=ThinDataset(4, 64), valid_datasets=[ThinDataset(2, 64)])
    before = {k: v.clone() for k, v in t.refiner.state_dict().items() if "running" in k}
    t.fit()  # validates after each step, which must leave the BN layers in eval mode
    assert all(torch.equal(v, t.refiner.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(t.refiner.state_dict()["conv_in.weight"], t.refiner.state_dict()["conv_in.weight"] * 0)


def test_log_lines_carry_rates_memory_and_the_layout(tmp_path):
    """Accumulation with sqrt scaling and a constant schedule with warm-up: the logged rate and the
    start record follow the layout; each line has samples/s, data wait and peak memory."""
    cfg = load_config(TINY, [*SHORT, "optim.accum_steps=2", "optim.lr_scaling=sqrt", "optim.lr_reference_batch=1",
                             "optim.warmup_steps=2", "schedule.max_steps=3"])
    Trainer(cfg, run_dir=tmp_path / "run", train_dataset=ThinDataset(8, 64), valid_datasets=[]).fit()
    recs = _records(tmp_path / "run")
    start = recs[0]
    assert start["event"] == "start" and start["global_batch"] == 4 and start["accum_steps"] == 2
    assert start["lr_factor"] == pytest.approx(2.0) and start["resumed_from"] is None
    steps = [r for r in recs if r.get("stage") == "refiner" and "loss" in r]
    base = 2.0 * cfg.optim.lr
    assert [r["lr"] for r in steps] == pytest.approx([base / 2, base, base])
    for r in steps:
        assert r["samples_per_s"] > 0 and r["data_wait_s"] >= 0 and r["step_s"] > 0 and r["max_memory_mb"] > 10
    header = (tmp_path / "run" / "config.yaml").read_text().splitlines()[0]
    assert header.startswith("# dissam train: global batch 4 = 2 per process x 1 process(es) x 2 accumulation")


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in ``wandb`` module that records what the logger calls."""
    calls = []

    class Run:
        def define_metric(self, name, step_metric=None):
            calls.append(("define_metric", name, step_metric))

        def log(self, data):
            calls.append(("log", data))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return calls


def test_wandb_logger_logs_every_record_into_one_resumable_run(tmp_path, fake_wandb):
    cfg = load_config(TINY, [*SHORT, "runtime.wandb=true", "runtime.wandb_project=dis"])
    run = tmp_path / "run"
    Trainer(cfg, run_dir=run, train_dataset=ThinDataset(4, 64), valid_datasets=[]).fit()
    cfg.schedule.max_steps = 3
    Trainer(cfg, run_dir=run, train_dataset=ThinDataset(4, 64), valid_datasets=[], resume=True).fit()
    inits = [c[1] for c in fake_wandb if c[0] == "init"]
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"] and inits[0]["resume"] == "allow"
    assert inits[0]["project"] == "dis" and inits[0]["config"]["optim"]["batch_size"] == 2
    logged = [c[1] for c in fake_wandb if c[0] == "log"]
    steps = [d for d in logged if "refiner/loss" in d]
    assert [d["refiner/step"] for d in steps] == [1, 2, 3]
    assert all("refiner/samples_per_s" in d for d in steps)
    assert ("define_metric", "refiner/*", "refiner/step") in fake_wandb
    assert [c[0] for c in fake_wandb].count("finish") == 2


def test_wandb_without_the_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    cfg = load_config(TINY, [*SHORT, "runtime.wandb=true"])
    t = Trainer(cfg, run_dir=tmp_path / "run", train_dataset=ThinDataset(4, 64), valid_datasets=[])
    with pytest.raises(DisSamError, match=r"pip install 'dissam\[wandb\]'"):
        t.fit()


def test_cli_resume_auto_starts_then_continues(tmp_path, capsys):
    from dissam.cli import main

    split = write_split(tmp_path / "split", ThinDataset(4, 64, seed=6))
    args = ["train", "--resume", "auto", "--config", str(TINY), f"data.train=[{split}]", "data.size=64",
            f"data.cache_dir={tmp_path / 'cache'}", f"runtime.out_dir={tmp_path / 'runs'}", "runtime.run_name=r",
            "gt_encoder.enabled=false", "schedule.valid_every=0", "optim.batch_size=2"]
    assert main([*args, "schedule.max_steps=2"]) == 0
    assert "global batch 2 = 2 per process x 1 process(es)" in capsys.readouterr().err
    assert main([*args, "schedule.max_steps=3"]) == 0
    assert "resumed at refiner step 2" in capsys.readouterr().err
    state = torch.load(tmp_path / "runs" / "r" / "state.pt", weights_only=True)
    assert state["stages"]["refiner"]["step"] == 3 and state["world_size"] == 1 and state["global_batch"] == 2
    assert main(["train", "--resume", "auto", "--config", str(TINY)]) == 1
    assert "--resume auto needs a fixed run folder" in capsys.readouterr().err
