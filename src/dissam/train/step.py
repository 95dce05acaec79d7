"""One optimizer step over ``accum_steps`` micro-batches (:mod:`dissam.train.batching`).

Each micro-batch is fetched (the wait is timed), assembled on the device
(:func:`dissam.train.datapath.device_batch`), its loss divided by the number of micro-batches of
the step and back-propagated; DistributedDataParallel all-reduces the gradients on the last one
only (``no_sync`` on the others). With one micro-batch the step is exactly the released one (no
division, no ``no_sync``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dissam.errors import TrainingError
from dissam.train.datapath import device_batch

__all__ = ["StepResult", "accumulated_step", "non_finite_error"]


def non_finite_error(stage: str, step: int, loss: torch.Tensor, parts: dict, state_path: Path) -> TrainingError:
    """The error that stops a run whose loss at ``step`` (1-based) is not finite."""
    return TrainingError(
        f"{stage}: the loss became {float(loss.detach())} at step {step} "
        f"(parts: { {k: float(v.detach()) for k, v in parts.items()} }). The last good state is "
        f"{state_path} (step of its last write); lower the learning rate, disable AMP "
        "(runtime.amp=none) or check the data, then resume."
    )


@dataclass
class StepResult:
    """The loss parts of a step (means over its micro-batches), this process's samples, and the
    seconds it waited for data and spent in all."""

    parts: dict[str, float]
    samples: int
    wait_s: float
    total_s: float


def accumulated_step(
    fwd: nn.Module,
    batches: Iterator,
    micro_batches: int,
    *,
    loss_fn: Callable[[nn.Module, dict], dict[str, torch.Tensor]],
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    check_finite: Callable[[torch.Tensor, dict], None],
) -> StepResult:
    """Zero the gradients, run ``micro_batches`` batches of ``batches`` forward and backward, step
    ``opt`` once. ``check_finite(loss, parts)`` runs on every micro-batch's loss before its backward
    (it raises to stop every rank on a non-finite loss); ``fwd`` is the (DDP-wrapped) model."""
    start = time.perf_counter()
    wait = 0.0
    samples = 0
    sums: dict[str, float] = {}
    no_sync = getattr(fwd, "no_sync", None)  # DistributedDataParallel (possibly under torch.compile)
    opt.zero_grad(set_to_none=True)
    for k in range(micro_batches):
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        batch = device_batch(batch, device)
        samples += int(batch["label"].shape[0])
        last = k == micro_batches - 1
        with no_sync() if (no_sync is not None and not last) else nullcontext():
            out = loss_fn(fwd, batch)
            loss = out["loss"]
            check_finite(loss, out)
            if micro_batches > 1:
                loss = loss / micro_batches
            scaler.scale(loss).backward()
        for name, v in out.items():
            sums[name] = sums.get(name, 0.0) + float(v.detach())
    scaler.step(opt)
    scaler.update()
    parts = sums if micro_batches == 1 else {k: v / micro_batches for k, v in sums.items()}
    return StepResult(parts, samples, wait, time.perf_counter() - start)
