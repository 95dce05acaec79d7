"""One place for "which process am I, and what is mine": rank, world size, device and item shards.

Every sharded command (``dissam benchmark``, ``dissam prepare-masks``, ``dissam predict`` over folders,
``dissam train``) reads the process layout from the variables ``torchrun`` sets (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``; set them by hand to shard without torchrun) through
:func:`dist_env`, picks its device with :func:`device_for_rank` (``cuda:LOCAL_RANK`` under torchrun,
so N processes on one node use N GPUs), and takes its slice of the work with :func:`shard`.

:func:`gather_reports` brings every rank's small JSON report to rank 0 once all ranks have
finished: a ``gloo`` gather when ``MASTER_ADDR``/``MASTER_PORT`` are set (torchrun), otherwise a file
barrier in a folder that all ranks share (``DISSAM_BARRIER=file`` forces the file barrier).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dissam.errors import DisSamError
from dissam.utils import atomic_write_bytes, resolve_device

__all__ = ["DistEnv", "dist_env", "device_for_rank", "shard", "run_id", "use_gloo", "gather_reports"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a sharded job (``(0, 0, 1)`` for a plain single process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """True when the job has more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that gathers, evaluates and writes summaries."""
        return self.rank == 0

    def tag(self) -> str:
        """``" [rank r/W]"`` for progress bars and messages, ``""`` for a single process."""
        return f" [rank {self.rank}/{self.world_size}]" if self.enabled else ""


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise DisSamError(f"bad {name}={raw!r} in the environment: expected an integer") from exc


def dist_env() -> DistEnv:
    """The process layout from ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` (torchrun), validated.

    ``LOCAL_RANK`` defaults to ``RANK`` (one node). Raises :class:`DisSamError` for values that cannot
    describe a job (``RANK >= WORLD_SIZE``, a negative number, text)."""
    world = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local = _int_env("LOCAL_RANK", rank if world > 1 else 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DisSamError(f"bad RANK={rank} / LOCAL_RANK={local} / WORLD_SIZE={world} in the environment")
    return DistEnv(rank, local, world)


def device_for_rank(device: str | None = "auto", env: DistEnv | None = None):
    """``torch.device`` for this process.

    ``"auto"``/``None`` and a bare ``"cuda"`` become ``cuda:LOCAL_RANK`` when the job is sharded and
    CUDA is available (each process its own GPU; ``LOCAL_RANK`` modulo the GPU count, so 4 processes
    on 2 GPUs share them in pairs), ``cuda`` for a single process, else the CPU. An explicit index
    (``cuda:1``) is kept. Asking for CUDA without it raises (:func:`dissam.utils.resolve_device`)."""
    import torch

    env = env or dist_env()
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None and env.enabled:
        dev = torch.device("cuda", env.local_rank % max(1, torch.cuda.device_count()))
    return dev


def shard(items: Sequence[T], rank: int, world_size: int, key: Callable[[T], Any] | None = None) -> list[T]:
    """Rank ``rank``'s part of ``items``: every ``world_size``-th item of the list sorted by ``key``
    (the given order when ``key`` is None). The parts of all ranks are disjoint and cover the list,
    whatever order the items were found in."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise DisSamError(f"bad rank {rank} / world size {world_size}")
    ordered = sorted(items, key=key) if key is not None else list(items)
    return ordered[rank::world_size]


def run_id(plan: str) -> str:
    """A name shared by all ranks of one job: ``DISSAM_RUN_ID``, else torchrun's run id, else
    ``plan-<plan>`` (a hash of the work, the same on every rank)."""
    return os.environ.get("DISSAM_RUN_ID") or (
        os.environ["TORCHELASTIC_RUN_ID"]
        if os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none"
        else f"plan-{plan}"
    )


def use_gloo(world_size: int) -> bool:
    """Gather through ``torch.distributed`` (gloo) rather than files: torchrun set the rendezvous."""
    return (
        world_size > 1
        and bool(os.environ.get("MASTER_ADDR"))
        and bool(os.environ.get("MASTER_PORT"))
        and os.environ.get("DISSAM_BARRIER", "auto") != "file"
    )


def report_fatal(env: DistEnv, shard_dir: Path, message: str) -> None:
    """Tell rank 0 (waiting at a file barrier) that this rank stopped, so it fails at once instead of
    waiting out the barrier timeout."""
    if env.enabled and not use_gloo(env.world_size):
        atomic_write_bytes(
            shard_dir / f"rank{env.rank}.json", json.dumps({"rank": env.rank, "fatal": message}).encode()
        )


def gather_reports(
    report: dict, env: DistEnv, shard_dir: Path, timeout_s: float = 7 * 24 * 3600.0, poll_s: float = 2.0
) -> list[dict] | None:
    """All ranks' ``report`` dicts (JSON-serialisable) on rank 0, in rank order, after every rank
    has finished; ``None`` on the other ranks. A rank that wrote ``{"fatal": msg}``
    (:func:`report_fatal`) makes rank 0 raise with that message."""
    if not env.enabled:
        return [report]
    if use_gloo(env.world_size):
        from datetime import timedelta

        import torch.distributed as dist

        own = not dist.is_initialized()
        if own:
            dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        gathered: list | None = [None] * env.world_size if env.is_main else None
        try:
            dist.gather_object(report, gathered, dst=0)
        finally:
            if own:
                dist.destroy_process_group()
        return gathered if env.is_main else None
    atomic_write_bytes(shard_dir / f"rank{env.rank}.json", json.dumps(report).encode())
    if not env.is_main:
        return None
    deadline = time.monotonic() + timeout_s
    paths = [shard_dir / f"rank{r}.json" for r in range(env.world_size)]
    log.info("rank 0 waits for %d rank(s) (%s)", env.world_size - 1, shard_dir)
    seen: dict[Path, dict] = {}
    while True:
        for p in paths:
            if p not in seen and p.is_file():
                seen[p] = json.loads(p.read_text())
                if "fatal" in seen[p]:
                    raise DisSamError(f"rank {seen[p]['rank']} stopped: {seen[p]['fatal']}")
        if len(seen) == len(paths):
            return [seen[p] for p in paths]
        if time.monotonic() > deadline:
            missing = [p.name for p in paths if p not in seen]
            raise DisSamError(f"timed out waiting for {', '.join(missing)} in {shard_dir}")
        time.sleep(poll_s)
