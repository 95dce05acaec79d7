"""torchrun DDP (2 processes, gloo on CPU): averaged gradients equal one process on the combined
batch; the weights after a few steps do not depend on how the global batch is split over processes
and accumulation steps; a resume with another world size is refused; sharded validation equals one
process; a run killed on one rank and restarted by ``torchrun --max-restarts`` ends where an
uninterrupted run does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import (
    OVERRIDES,
    TINY,
    VALID_METRICS,
    cli_args,
    invariance_overrides,
    refiner_grads,
    valid_model,
)
from train_helpers import ThinDataset, tensors_close, write_split

from dissam.errors import DisSamError
from dissam.train import Trainer, load_config
from dissam.train.validation import evaluate_model

HERE = Path(__file__).parent


def torchrun(out: Path, restarts: int = 1) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"  # restarts: see dissam.train.distributed.init_distributed
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", str(restarts),
        "--master_port", "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0",
        str(HERE / "ddp_worker.py"), str(out),
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One torchrun of ddp_worker.py (one rank crashes once and torchrun restarts both) and its folder."""
    from dissam.checkpoints import save_checkpoint
    from dissam.models.isnet import build_refiner

    out = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(5)
    save_checkpoint(out / "gte.safetensors", build_refiner("gt-encoder-compact"))
    write_split(out / "split", ThinDataset(8, 64, seed=14))
    proc = torchrun(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_two_process_ddp_matches_one_process_on_the_combined_batch(ddp_run, tmp_path):
    got = torch.load(ddp_run / "ddp_grads.pt", weights_only=True)
    assert got["world_size"] == 2

    ds = ThinDataset(8, 64, seed=11, augment=True)
    single = Trainer(load_config(TINY, OVERRIDES), run_dir=tmp_path / "single", train_dataset=ds, valid_datasets=[])
    assert not single.dist.enabled
    want = refiner_grads(single, [0, 1, 2, 3])
    assert got["grads"].keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got["grads"][k], want[k], rtol=1e-4, atol=1e-7, msg=k)

    # the short DDP training run: rank 0 alone wrote the run folder, 2 steps of a global batch of 4
    summary = json.loads((ddp_run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["gt_encoder_steps"] == 1
    state = torch.load(ddp_run / "run" / "state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["stages"]["refiner"]["step"] == 2 and state["global_batch"] == 4
    assert (ddp_run / "run" / "final.safetensors").is_file()
    assert "world_size: 2" in (ddp_run / "run" / "config.yaml").read_text()


def test_weights_do_not_depend_on_how_the_global_batch_is_split(ddp_run, tmp_path):
    """Global batch 4, BatchNorm in eval mode: 2 processes x 2, 2 x 1 x 2 accumulation steps,
    1 x 4 and 1 x 2 x 2 reach the same weights after 3 steps (crossing an epoch)."""
    ds = ThinDataset(8, 64, seed=11, augment=True)
    states = {}
    for accum in (1, 2):
        cfg = load_config(TINY, invariance_overrides(ddp_run / "gte.safetensors", accum))
        Trainer(cfg, run_dir=tmp_path / f"one{accum}", train_dataset=ds, valid_datasets=[]).fit()
        states[f"1 process, accum {accum}"] = torch.load(tmp_path / f"one{accum}" / "state.pt", weights_only=True)
        states[f"2 processes, accum {accum}"] = torch.load(ddp_run / f"inv_accum{accum}" / "state.pt", weights_only=True)
    ref = states.pop("1 process, accum 1")
    assert ref["global_batch"] == 4 and ref["stages"]["refiner"]["step"] == 3
    start = Trainer(load_config(TINY, invariance_overrides(ddp_run / "gte.safetensors", 1)),
                    run_dir=tmp_path / "start", train_dataset=ds, valid_datasets=[]).refiner.state_dict()
    assert tensors_close(start, ref["refiner"], 1e-4)  # the weights did move
    for name, st in states.items():
        assert st["global_batch"] == 4, name
        # batch_in_epoch counts micro-batches: 1 of 4 or 2 of 2 samples into epoch 1
        for key in ("step", "epoch"):
            assert st["stages"]["refiner"][key] == ref["stages"]["refiner"][key], (name, key)
        assert tensors_close(ref["refiner"], st["refiner"], 1e-5) == [], name


def test_resume_with_another_world_size_is_refused(ddp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ddp_run / "inv_accum1", run)
    cfg = load_config(TINY, [*invariance_overrides(ddp_run / "gte.safetensors", 1), "schedule.max_steps=4"])
    ds = ThinDataset(8, 64, seed=11, augment=True)
    with pytest.raises(DisSamError, match=r"trained with 2 process\(es\), this start has 1.*runtime.world_size=1"):
        Trainer(cfg, run_dir=run, train_dataset=ds, valid_datasets=[], resume=True)
    # stated deliberately (with the global batch kept), it goes on
    cfg.runtime.world_size = 1
    with pytest.warns(UserWarning, match="world size changed from 2 to 1"):
        t = Trainer(cfg, run_dir=run, train_dataset=ds, valid_datasets=[], resume=True)
    assert t.fit()["steps"] == 4


def test_sharded_validation_equals_one_process(ddp_run):
    """5 items on 2 ranks (3 + 2, no padding item counted twice): every rank has one process's numbers."""
    want = evaluate_model(valid_model(), [ThinDataset(5, 64, seed=13)], VALID_METRICS, input_key="image",
                          device=torch.device("cpu"))
    for rank in (0, 1):
        assert json.loads((ddp_run / f"valid{rank}.json").read_text()) == want


def test_torchrun_restart_after_a_crash_ends_like_an_uninterrupted_run(ddp_run):
    """``torchrun --max-restarts 1``: rank 1 dies after refiner step 3 (state written at step 2),
    both processes restart with ``--resume auto`` and end bit-equal to the uninterrupted run."""
    assert (ddp_run / "crashed").read_text() == "3"
    full = torch.load(ddp_run / "runs" / "full" / "state.pt", weights_only=True)
    restarted = torch.load(ddp_run / "runs" / "restarted" / "state.pt", weights_only=True)
    assert full["stages"]["refiner"]["step"] == 5 and restarted["stages"] == full["stages"]
    for key in ("refiner", "gt_encoder"):
        for k, v in full[key].items():
            assert torch.equal(v, restarted[key][k]), (key, k)
    for k, s in full["opt_refiner"]["state"].items():
        assert torch.equal(s["exp_avg_sq"], restarted["opt_refiner"]["state"][k]["exp_avg_sq"])
    starts = [json.loads(line) for line in (ddp_run / "runs" / "restarted" / "metrics.jsonl").read_text().splitlines()]
    assert [r["resumed_from"] for r in starts if r.get("event") == "start"] == [None, 2]
    assert cli_args(ddp_run, "x")[1:3] == ["--resume", "auto"]
