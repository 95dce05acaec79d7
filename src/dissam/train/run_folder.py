"""The run folder at the start of a run: the batch layout of this start checked against the state
being resumed, and the resolved config written to ``config.yaml``.

``config.yaml`` records ``runtime.world_size`` (the number of processes) and starts with a comment
line giving the batch layout (``# dissam train: global batch 12 = 6 per process x 2 process(es) x 1
accumulation step(s); ...``); ``state.pt`` records the world size and the global batch, and a resume
that would change either is refused unless the change is stated (:mod:`dissam.train.batching`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from dissam.errors import DisSamError
from dissam.train.batching import BatchLayout, batch_layout, check_resume_layout, check_world_size
from dissam.train.config import TrainConfig, dump_config
from dissam.train.distributed import DistInfo, barrier
from dissam.train.resume import STATE_FILE, read_state

__all__ = ["open_run_folder"]


def open_run_folder(cfg: TrainConfig, dist: DistInfo, run_dir: Path, resume: bool) -> tuple[BatchLayout, dict | None]:
    """Check and record the start of a run in ``run_dir``: returns the :class:`BatchLayout` and, when
    resuming, the state read from ``state.pt``. Sets ``cfg.runtime.world_size`` to the processes of
    this start. Rank 0 creates the folder and writes ``config.yaml``; every rank waits for it.

    Raises :class:`DisSamError` when a new run would overwrite a run's state, when
    ``runtime.world_size`` names another number of processes, or when a resume would change the
    world size or the global batch without saying so."""
    rt = cfg.runtime
    layout = batch_layout(cfg.optim, dist.world_size)
    state_path = Path(run_dir) / STATE_FILE
    saved = read_state(state_path) if resume else None
    notes = [] if saved is None else check_resume_layout(saved, layout, rt.world_size, bool(cfg.optim.global_batch_size))
    check_world_size(rt.world_size, dist.world_size)
    rt.world_size = dist.world_size
    if dist.is_main:
        if not resume and state_path.exists():
            raise DisSamError(
                f"{run_dir} already holds a run; continue it with `dissam train --resume {run_dir}` "
                "(or --resume auto) or choose another runtime.run_name"
            )
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "config.yaml").write_text(f"# dissam train: {layout.describe()}\n" + dump_config(cfg))
        for note in notes:
            warnings.warn(note, stacklevel=3)
    barrier(dist)
    return layout, saved
