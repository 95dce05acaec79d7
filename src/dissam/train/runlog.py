"""What a run reports while it trains: ``metrics.jsonl``, TensorBoard scalars, Weights & Biases
(optional) and a progress bar.

Only rank 0 reports (``enabled=False`` on the others makes every method a no-op). Each record is one
JSON line of ``metrics.jsonl`` with a ``time`` stamp; its numeric fields (and those of its ``valid``
dict, as ``valid_<metric>``) also go to TensorBoard under ``<stage>/`` when the optional
``tensorboard`` package is installed, and to W&B (:class:`dissam.train.wandb_logger.WandbLogger`)
when ``runtime.wandb`` is on. :class:`Throughput` measures the rates of the log lines.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

__all__ = ["RunLog", "LossMeter", "Throughput", "max_memory_mb"]


class RunLog:
    """The reporting of one run in ``run_dir`` (see the module docstring)."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, progress: bool, wandb=None):
        self.run_dir = Path(run_dir)
        self.enabled, self.tensorboard, self.progress = enabled, tensorboard, progress
        self.wandb = wandb if enabled else None  # a WandbLogger (or anything with open/log/close)
        self._tb = None
        self._bar = None

    def open(self) -> None:
        """Start the W&B run if asked for, and the TensorBoard writer (``run_dir/tb``) if asked for
        and installed."""
        if self.wandb is not None:
            self.wandb.open()
        if self.enabled and self.tensorboard and self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency
                return
            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def write(self, record: dict) -> None:
        """Append ``record`` (JSON-serialisable) to ``metrics.jsonl`` and its numbers to TensorBoard."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            stage, step = record.get("stage", ""), record.get("step", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "time"):
                    self._tb.add_scalar(f"{stage}/{k}", v, step)
            for k, v in (record.get("valid") or {}).items():
                self._tb.add_scalar(f"{stage}/valid_{k}", v, step)
        if self.wandb is not None:
            self.wandb.log(record)

    def start_bar(self, stage: str, total: int, initial: int) -> None:
        """A tqdm bar on stderr for ``stage`` (``total`` 0 = unknown length), starting at ``initial``."""
        if self.enabled and self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total or None, initial=initial, desc=stage, dynamic_ncols=True, file=sys.stderr)

    def bar_step(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Close the bar and the TensorBoard writer."""
        self.close_bar()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self.wandb is not None:
            self.wandb.close()


class LossMeter:
    """Running means of the loss parts between two log lines."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, parts: dict[str, float]) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self) -> dict[str, float]:
        """The means since the last call, then start again."""
        out = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


def max_memory_mb(device: torch.device) -> float:
    """Peak memory so far, MiB: CUDA memory allocated by torch on a CUDA device, else the peak
    resident set size of this process (the DataLoader workers not included)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Throughput:
    """Rates between two log lines: ``samples_per_s`` (samples of all processes per second of
    training steps, loader waits included, validation and state writes not), ``data_wait_s``
    (seconds this process waited for batches), ``step_s`` (seconds per optimizer step) and
    ``max_memory_mb`` (:func:`max_memory_mb`)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.samples, self.wait, self.busy, self.steps = 0, 0.0, 0.0, 0

    def add(self, samples: int, wait_s: float, step_s: float) -> None:
        """One optimizer step of ``samples`` (all processes) that took ``step_s`` seconds, of which
        ``wait_s`` waiting for data."""
        self.samples += samples
        self.wait += wait_s
        self.busy += step_s
        self.steps += 1

    def take(self) -> dict[str, float]:
        """The rates since the last call, then start again."""
        out = {
            "samples_per_s": round(self.samples / self.busy, 3) if self.busy > 0 else 0.0,
            "data_wait_s": round(self.wait, 4),
            "step_s": round(self.busy / max(1, self.steps), 4),
            "max_memory_mb": round(max_memory_mb(self.device), 1),
        }
        self.samples, self.wait, self.busy, self.steps = 0, 0.0, 0.0, 0
        return out
