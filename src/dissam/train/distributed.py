"""One code path for one process and for ``torchrun`` (single or multi node).

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (``env://``) and returns a :class:`DistInfo`. Without them the
run is a single process and every collective here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "barrier", "broadcast_object", "all_finite"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto", backend: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group from torchrun's environment variables (if present) and choose
    the device: ``cuda:LOCAL_RANK`` when CUDA is used, else the CPU. Backend ``auto`` = nccl on CUDA,
    gloo on CPU. Returns ``(info, device)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            from dissam.errors import DisSamError

            raise DisSamError(f"runtime.device={device!r} but CUDA is not available; use runtime.device=cpu")
        if dev.index is None:
            dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    info = DistInfo(rank, local, world)
    if world > 1 and not torch.distributed.is_initialized():
        if backend == "auto":
            backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, init_method="env://")
    return info, dev


def cleanup_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch.distributed.barrier()


def broadcast_object(info: DistInfo, obj):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_finite(info: DistInfo, value: torch.Tensor) -> bool:
    """True when ``value`` is finite on every rank (so all ranks stop together on a NaN)."""
    ok = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    if info.enabled:
        if torch.distributed.get_backend() == "nccl":
            ok = ok.cuda()
        else:
            ok = ok.cpu()
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item() > 0)
