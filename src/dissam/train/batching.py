"""How a run's batch follows the world size: the per-process batch, gradient accumulation, the
global batch, the learning-rate factor, and the checks that keep a resumed run on the same layout.

One optimizer step sees ``global = per_process x world_size x accum_steps`` samples: each of the
``world_size`` processes runs ``accum_steps`` micro-batches of ``per_process`` samples, their
gradients are summed locally (each micro-loss divided by ``accum_steps``) and averaged over the
processes by DistributedDataParallel. With BatchNorm in eval mode (or SyncBatchNorm) that is the
gradient of one process on the whole global batch, whatever the split.

``optim.global_batch_size`` fixes the global batch (the per-process batch is derived, and must
divide exactly); otherwise ``optim.batch_size`` is the per-process batch and the global one is
computed. ``optim.lr_scaling`` scales every learning rate by ``global / lr_reference_batch``
(``linear``) or its square root (``sqrt``); the reference is the paper's batch of 6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dissam.errors import DisSamError
from dissam.train.config import OptimConfig

__all__ = ["BatchLayout", "batch_layout", "check_resume_layout", "check_world_size"]


@dataclass(frozen=True)
class BatchLayout:
    """The samples of one optimizer step: ``per_process`` x ``world_size`` x ``accum_steps`` =
    ``global_batch``, and ``lr_factor``, the multiplier of every configured learning rate."""

    per_process: int
    world_size: int
    accum_steps: int
    global_batch: int
    lr_factor: float
    lr_scaling: str = "none"

    def record(self) -> dict:
        """The layout as the fields of a ``metrics.jsonl`` line."""
        return {"world_size": self.world_size, "per_process_batch": self.per_process, "accum_steps": self.accum_steps,
                "global_batch": self.global_batch, "lr_factor": self.lr_factor}

    def describe(self) -> str:
        """One line for the log, e.g. ``global batch 12 = 6 per process x 2 processes x 1
        accumulation step(s); learning rates x 1.414 (sqrt scaling against 6)``."""
        lr = "learning rates as configured" if self.lr_scaling == "none" else (
            f"learning rates x {self.lr_factor:.4g} ({self.lr_scaling} scaling)"
        )
        return (
            f"global batch {self.global_batch} = {self.per_process} per process x {self.world_size} "
            f"process(es) x {self.accum_steps} accumulation step(s); {lr}"
        )


def batch_layout(optim: OptimConfig, world_size: int) -> BatchLayout:
    """The :class:`BatchLayout` of ``optim`` on ``world_size`` processes. Raises
    :class:`DisSamError` when ``optim.global_batch_size`` does not split evenly."""
    accum = int(optim.accum_steps)
    if optim.global_batch_size:
        per_step = world_size * accum
        if optim.global_batch_size % per_step:
            raise DisSamError(
                f"optim.global_batch_size={optim.global_batch_size} does not split over {world_size} process(es) x "
                f"{accum} accumulation step(s); choose a multiple of {per_step} or change optim.accum_steps"
            )
        per_process = optim.global_batch_size // per_step
    else:
        per_process = int(optim.batch_size)
    global_batch = per_process * world_size * accum
    ratio = global_batch / optim.lr_reference_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[optim.lr_scaling]
    return BatchLayout(per_process, world_size, accum, global_batch, factor, optim.lr_scaling)


def check_world_size(configured: int, actual: int) -> None:
    """``runtime.world_size`` (0 = any) against the number of processes torchrun started."""
    if configured and configured != actual:
        raise DisSamError(
            f"this run is set up for runtime.world_size={configured} process(es) but {actual} started. Start it "
            f"with {configured} (torchrun --nproc_per_node ...), or pass runtime.world_size={actual} to continue "
            f"deliberately with {actual} (state the global batch with optim.global_batch_size to keep it)"
        )


def check_resume_layout(saved: dict, layout: BatchLayout, configured_world_size: int, global_stated: bool) -> list[str]:
    """Compare a resume state's ``world_size`` / ``global_batch`` with the new layout.

    A different world size is refused unless ``runtime.world_size`` names the new count
    (``configured_world_size``); a different global batch unless ``optim.global_batch_size`` states it
    (``global_stated``). States written before the global batch was recorded skip that check.
    Returns the warnings of the changes that were asked for."""
    notes = []
    old_ws = int(saved.get("world_size", 1))
    if old_ws != layout.world_size:
        if configured_world_size != layout.world_size:
            raise DisSamError(
                f"cannot resume: the run was trained with {old_ws} process(es), this start has {layout.world_size}. "
                f"Resume with {old_ws} process(es), or pass runtime.world_size={layout.world_size} to continue "
                "deliberately (the data order of the interrupted epoch then differs from an uninterrupted run)"
            )
        notes.append(f"world size changed from {old_ws} to {layout.world_size} on resume (asked for)")
    old_global = saved.get("global_batch")
    if old_global is not None and int(old_global) != layout.global_batch:
        if not global_stated:
            raise DisSamError(
                f"cannot resume: the run was trained with a global batch of {old_global}, this start would use "
                f"{layout.global_batch} ({layout.describe()}). Keep the layout (optim.global_batch_size={old_global}), "
                f"or pass optim.global_batch_size={layout.global_batch} to change it deliberately"
            )
        notes.append(f"global batch changed from {old_global} to {layout.global_batch} on resume (asked for)")
    return notes
