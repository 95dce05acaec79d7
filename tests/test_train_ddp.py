"""torchrun DDP (2 processes, gloo on CPU): averaged gradients equal one process on the combined batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from ddp_worker import OVERRIDES, TINY, refiner_grads
from train_helpers import ThinDataset

from dissam.train import Trainer, load_config

HERE = Path(__file__).parent


def test_two_process_ddp_matches_one_process_on_the_combined_batch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "0",
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            "localhost:0",
            str(HERE / "ddp_worker.py"),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = torch.load(tmp_path / "ddp_grads.pt", weights_only=True)
    assert got["world_size"] == 2

    ds = ThinDataset(8, 64, seed=11, augment=True)
    single = Trainer(load_config(TINY, OVERRIDES), run_dir=tmp_path / "single", train_dataset=ds, valid_datasets=[])
    assert not single.dist.enabled
    want = refiner_grads(single, [0, 1, 2, 3])
    assert got["grads"].keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got["grads"][k], want[k], rtol=1e-4, atol=1e-7, msg=k)

    # the short DDP training run: rank 0 alone wrote the run folder, 2 steps of a global batch of 4
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["gt_encoder_steps"] == 1
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["stages"]["refiner"]["step"] == 2
    assert (tmp_path / "run" / "final.safetensors").is_file()
