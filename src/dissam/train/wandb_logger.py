"""Weights & Biases logging of a training run (``runtime.wandb: true``; the optional extra
``pip install 'dissam[wandb]'``).

Rank 0 opens one W&B run per run folder: its id is derived from the folder's absolute path, and it
is opened with ``resume="allow"``, so a resumed or restarted run (``--resume``, ``torchrun
--max-restarts``) goes on logging into the same W&B run. Every ``metrics.jsonl`` record is logged
as ``<stage>/<field>`` (validation scores as ``<stage>/valid_<metric>``), plotted against
``<stage>/step``. Set ``WANDB_MODE=offline`` where the machine has no network (``wandb sync``
later).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dissam.errors import DisSamError

__all__ = ["WandbLogger", "wandb_run_id"]


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of a run folder: a hash of its absolute path (stable across restarts)."""
    return "dissam-" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


class WandbLogger:
    """Logs the records of :class:`dissam.train.runlog.RunLog` to W&B (module docstring)."""

    def __init__(self, run_dir: Path, project: str, config: dict):
        self.run_dir, self.project, self.config = Path(run_dir), project, config
        self._run = None
        self._stages: set[str] = set()

    def open(self) -> None:
        if self._run is not None:
            return
        try:
            import wandb  # optional extra, imported only when asked for
        except ImportError as exc:
            raise DisSamError(
                "runtime.wandb=true needs the wandb package: pip install 'dissam[wandb]' (or set runtime.wandb=false)"
            ) from exc
        self._run = wandb.init(
            project=self.project,
            name=self.run_dir.name,
            id=wandb_run_id(self.run_dir),
            resume="allow",
            dir=str(self.run_dir),
            config=self.config,
        )

    def log(self, record: dict) -> None:
        """Log the numbers of one ``metrics.jsonl`` record."""
        if self._run is None:
            return
        stage = record.get("stage") or "run"
        if stage not in self._stages:
            self._run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self._stages.add(stage)
        data = {
            f"{stage}/{k}": v
            for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("time", "stage")
        }
        data.update({f"{stage}/valid_{k}": v for k, v in (record.get("valid") or {}).items()})
        data.setdefault(f"{stage}/step", 0)
        self._run.log(data)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
