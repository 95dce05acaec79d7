"""Exact resume: the per-stage counters, the RNG states and the ``state.pt`` file of a run.

``state.pt`` is a dict of tensors and primitives only, so it loads with
``torch.load(weights_only=True)``; its keys are part of the run-folder format (files written by
earlier versions must keep loading):

``format`` (``"dissam-train-state"``), ``version`` (1), ``config`` (the resolved config as a dict),
``stages`` (``{"gt_encoder": StageState dict, "refiner": StageState dict}``), ``refiner``,
``opt_refiner``, ``gt_encoder`` and ``opt_gt_encoder`` (state dicts; ``{}`` without a GT encoder),
``scaler`` (the GradScaler), ``rng`` (:func:`rng_state`) and ``world_size``; the trainer adds
``global_batch`` (files written before it was recorded lack it).
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dissam.errors import DisSamError
from dissam.utils import atomic_write_bytes

__all__ = [
    "STATE_FILE",
    "STATE_FORMAT",
    "StageState",
    "Resumable",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "pack_state",
    "write_state",
    "read_state",
    "restore_state",
]

STATE_FILE = "state.pt"
STATE_FORMAT = "dissam-train-state"
STATE_VERSION = 1


@dataclass
class StageState:
    """Where one stage stands: completed optimizer steps, the epoch and the batches of it already
    seen (a resume skips them), the best validation score and its step, validations without gain,
    and whether (and why) the stage ended."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    best_step: int = -1
    bad_validations: int = 0
    last_valid_step: int = -1
    done: bool = False
    stop_reason: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def rng_state() -> dict:
    """The torch, numpy, python (and, once initialised, CUDA) generator states as tensors and
    primitives (numpy's key array as an int64 tensor, python's state as a list of ints)."""
    st = np.random.get_state()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(st[1].astype(np.int64)),
        "numpy_pos": int(st[2]),
        "numpy_has_gauss": int(st[3]),
        "numpy_cached": float(st[4]),
        "python": [int(st) for st in random.getstate()[1]],
        "python_version": int(random.getstate()[0]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def set_rng_state(st: Mapping) -> None:
    """Restore the generators from :func:`rng_state`'s dict."""
    torch.set_rng_state(st["torch"])
    np.random.set_state(
        ("MT19937", st["numpy_keys"].numpy().astype(np.uint32), st["numpy_pos"], st["numpy_has_gauss"], st["numpy_cached"])
    )
    random.setstate((st["python_version"], tuple(st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Resumable:
    """The objects whose state ``state.pt`` carries besides the counters (``gte`` / ``opt_gte`` are
    ``None`` without a GT encoder)."""

    refiner: nn.Module
    opt_refiner: torch.optim.Optimizer
    gte: nn.Module | None
    opt_gte: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler


def pack_state(config: dict, stages: Mapping[str, StageState], objects: Resumable, world_size: int) -> dict:
    """Everything needed to continue exactly, as the ``state.pt`` dict (module docstring)."""
    o = objects
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "config": config,
        "stages": {k: v.to_dict() for k, v in stages.items()},
        "refiner": o.refiner.state_dict(),
        "opt_refiner": o.opt_refiner.state_dict(),
        "gt_encoder": o.gte.state_dict() if o.gte is not None else {},
        "opt_gt_encoder": o.opt_gte.state_dict() if o.opt_gte is not None else {},
        "scaler": o.scaler.state_dict(),
        "rng": rng_state(),
        "world_size": world_size,
    }


def write_state(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a kill mid-write leaves the previous file)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_state(path: Path) -> dict:
    """Load a ``state.pt`` (CPU tensors, ``weights_only=True``); :class:`DisSamError` when it is
    missing, unreadable or not a dissam training state."""
    if not path.is_file():
        raise DisSamError(f"cannot resume: {path} does not exist")
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise DisSamError(f"cannot resume: {path} is unreadable ({exc})") from exc
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise DisSamError(f"{path} is not a dissam training state")
    return st


def restore_state(st: Mapping, stages: dict[str, StageState], objects: Resumable, world_size: int) -> None:
    """Load :func:`read_state`'s dict into ``stages`` (entries replaced) and ``objects`` (in place).
    RNG states are restored only for a single-process run written by a single process: under DDP
    the data order and flips do not depend on them. A state that does not fit the networks or the
    optimizer's parameter groups raises :class:`DisSamError`."""
    o = objects
    for k, v in st["stages"].items():
        stages[k] = StageState(**v)
    try:
        o.refiner.load_state_dict(st["refiner"])
        o.opt_refiner.load_state_dict(st["opt_refiner"])
        if o.gte is not None and st["gt_encoder"]:
            o.gte.load_state_dict(st["gt_encoder"])
            if st["opt_gt_encoder"]:
                o.opt_gte.load_state_dict(st["opt_gt_encoder"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise DisSamError(
            f"the training state does not fit this run's networks and optimizer groups ({exc}); "
            "model.variant, gt_encoder.variant, optim.freeze and optim.lr_mult must stay as they were"
        ) from exc
    if st["scaler"]:
        o.scaler.load_state_dict(st["scaler"])
    if st.get("world_size", 1) == world_size and world_size == 1:
        set_rng_state(st["rng"])
