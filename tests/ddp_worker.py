"""Run under ``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT`` (gloo, CPU).

1. Gradient check: every rank computes the trainer's refiner loss on its half of a fixed batch of 4
   and back-propagates through DistributedDataParallel; rank 0 saves the (all-reduced, averaged)
   gradients to ``OUT/ddp_grads.pt``. BatchNorm runs in eval mode (running statistics): in train mode
   each process would normalise with the statistics of its own half batch, which is what the released
   single-process code cannot produce either; SyncBatchNorm (runtime.sync_bn) is the option for that.
2. A two-step training run through ``Trainer.fit()`` with rank-0 logging and saving in ``OUT/run``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_helpers import ThinDataset  # noqa: E402

from dissam.train import Trainer, load_config  # noqa: E402
from dissam.train.distributed import cleanup_distributed  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"
OVERRIDES = ["gt_encoder.max_steps=1", "gt_encoder.valid_every=0", "schedule.max_steps=2", "optim.batch_size=2"]


def fixed_batch(ds, indices):
    items = [ds[i] for i in indices]
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items])}


def refiner_grads(trainer: Trainer, indices) -> dict[str, torch.Tensor]:
    """Gradients of the trainer's refiner loss (side + feature + ORTHO) on ``indices``, BN in eval mode."""
    trainer.refiner.eval()
    trainer.gte.eval().requires_grad_(False)
    fwd = trainer._wrap(trainer.refiner)
    out = trainer._step_refiner(fwd, fixed_batch(trainer.train_dataset, indices))
    out["loss"].backward()
    return {n: p.grad.detach().clone() for n, p in trainer.refiner.named_parameters()}


def main(out: Path) -> None:
    ds = ThinDataset(8, 64, seed=11, augment=True)
    cfg = load_config(TINY, OVERRIDES)
    t = Trainer(cfg, run_dir=out / "grad_run", train_dataset=ds, valid_datasets=[])
    r = t.dist.rank
    grads = refiner_grads(t, [2 * r, 2 * r + 1])
    if t.dist.is_main:
        torch.save({"world_size": t.dist.world_size, "grads": grads}, out / "ddp_grads.pt")
    t2 = Trainer(cfg, run_dir=out / "run", train_dataset=ds, valid_datasets=[ThinDataset(2, 64, seed=12)])
    summary = t2.fit()
    if t2.dist.is_main:
        (out / "summary.json").write_text(json.dumps(summary))
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
