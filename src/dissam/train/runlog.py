"""What a run reports while it trains: ``metrics.jsonl``, TensorBoard scalars and a progress bar.

Only rank 0 reports (``enabled=False`` on the others makes every method a no-op). Each record is one
JSON line of ``metrics.jsonl`` with a ``time`` stamp; its numeric fields (and those of its ``valid``
dict, as ``valid_<metric>``) also go to TensorBoard under ``<stage>/`` when the optional
``tensorboard`` package is installed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

__all__ = ["RunLog", "LossMeter"]


class RunLog:
    """The reporting of one run in ``run_dir`` (see the module docstring)."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, progress: bool):
        self.run_dir = Path(run_dir)
        self.enabled, self.tensorboard, self.progress = enabled, tensorboard, progress
        self._tb = None
        self._bar = None

    def open(self) -> None:
        """Start the TensorBoard writer (``run_dir/tb``) if asked for and installed."""
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
