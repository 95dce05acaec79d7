"""The benchmark's settings: :class:`BenchmarkConfig`, which methods can run, and the guard that keeps
a resumed run from mixing maps made with other weights (:func:`check_settings`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dissam.errors import DisSamError
from dissam.paper_tables.protocol import METHODS
from dissam.stages.registry import get_spec
from dissam.utils import atomic_write_bytes

__all__ = ["BenchmarkConfig", "resolve_methods", "check_settings", "weight_free_stage", "write_json"]


@dataclass
class BenchmarkConfig:
    """Everything ``dissam benchmark`` needs (the CLI maps its flags one to one)."""

    data: str
    run_dir: str
    splits: list[str] | None = None
    sam: str | None = None
    stage1: str | None = None  # the stage-1 registry name for --sam; None / "auto": read off the source
    refiner: str | None = None
    hq_sam: str | None = None
    isnet: str | None = None
    methods: list[str] | None = None  # None = every method whose weights are given
    jitters: list[float] = field(default_factory=list)
    jitter_seed: int = 0
    size: int = 1024
    backend: str | None = None  # None: the faithful torch fp32 path; "torch" / "onnx" / "auto" (refiner, stage 1)
    precision: str | None = None  # None: fp32; "bf16" / "fp16" (torch autocast), "int8" (onnx SAM encoder)
    device: str | None = "auto"
    workers: int = 1
    metrics: list[str] | None = None
    progress: bool = True
    skeleton_cache: str | None = "auto"
    evaluate: bool = True
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # picks the GPU under torchrun (dissam.sharding.device_for_rank)
    barrier_timeout_s: float = 7 * 24 * 3600.0


def resolve_methods(cfg: BenchmarkConfig, have_masks: bool) -> tuple[list[str], list[str]]:
    """``(methods to run, skip messages)``. Explicitly requested methods without weights raise."""
    available = {
        "dis-sam": (cfg.refiner is not None, "--refiner CKPT (the DIS-SAM checkpoint)"),
        "sam": (cfg.sam is not None or have_masks or weight_free_stage(cfg.stage1),
                "--sam SOURCE (or mask/ folders in every split, or a --stage1 that needs no weights)"),
        "hq-sam": (cfg.hq_sam is not None, "--hq-sam SOURCE (an HQ-SAM Hugging Face folder or hub id)"),
        "isnet": (cfg.isnet is not None, "--isnet isnet.pth (the IS-Net DIS checkpoint)"),
    }
    if cfg.methods:
        unknown = [m for m in cfg.methods if m not in METHODS]
        if unknown:
            raise DisSamError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
        missing = [f"{m} needs {available[m][1]}" for m in cfg.methods if not available[m][0]]
        if missing:
            raise DisSamError("requested method(s) cannot run: " + "; ".join(missing))
        return [m for m in METHODS if m in cfg.methods], []
    run = [m for m in METHODS if available[m][0]]
    skipped = [f"skipping {m}: it needs {available[m][1]}" for m in METHODS if not available[m][0]]
    if not run:
        raise DisSamError("no method can run: give --refiner (and --sam), --hq-sam or --isnet")
    return run, skipped


def weight_free_stage(stage1: str | None) -> bool:
    """Whether ``--stage1`` names a stage that needs no weights (U²-Netp, GrabCut)."""
    return stage1 not in (None, "auto") and not get_spec(stage1).needs_weights


_SETTINGS = ("data", "sam", "stage1", "refiner", "hq_sam", "isnet", "size", "jitter_seed", "backend", "precision")


def _source_id(value) -> Any:
    if isinstance(value, str) and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def check_settings(cfg: BenchmarkConfig, methods: Sequence[str] = METHODS, write: bool = True) -> dict:
    """Guard the resumable run against mixing models: ``RUN_DIR/settings.json`` records the data
    root, the weights, the size and the jitter seed of the first run; a later run that changes one of
    them (a setting the run does not use is not a change) raises DisSamError instead of silently reusing maps made
    with other settings. ``write=False`` only checks (the runner records the settings just before its
    first new prediction, so a run that fails to load its weights records nothing). Returns the
    merged settings."""
    path = Path(cfg.run_dir) / "settings.json"
    now = {k: _source_id(getattr(cfg, k)) for k in _SETTINGS}
    # the runtime is a setting even when left at its default (the faithful torch fp32 path)
    now["backend"], now["precision"] = cfg.backend or "faithful", cfg.precision or "fp32"
    now["stage1"] = cfg.stage1 or "auto"
    if not any(m in ("dis-sam", "isnet") for m in methods):
        now["size"] = now["backend"] = now["precision"] = None  # only the refiner and IS-Net depend on them
    if not cfg.jitters:
        now["jitter_seed"] = None
    old = json.loads(path.read_text()) if path.is_file() else {}
    changed = [
        f"{k}: {old[k]!r} -> {now[k]!r}"
        for k in _SETTINGS
        if old.get(k) is not None and now[k] is not None and old[k] != now[k]
    ]
    if changed:
        raise DisSamError(
            f"{cfg.run_dir} holds predictions made with other settings ({'; '.join(changed)}); "
            "use a new --run-dir (or delete the predictions/ folders you want recomputed and settings.json)"
        )
    merged = {k: now[k] if now[k] is not None else old.get(k) for k in _SETTINGS}
    if write and merged != old:
        write_json(path, merged)
    return merged


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())
