"""One code path for one process and for ``torchrun`` (single or multi node).

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads the process layout through :func:`dissam.sharding.dist_env` (the one
reader every sharded command uses), picks the device by :func:`training_device` and initialises the
process group (``env://``). Without those variables the run is a single process and every collective
here is a no-op.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

import torch

from dissam.errors import DisSamError
from dissam.sharding import DistEnv, device_for_rank, dist_env

__all__ = [
    "DistInfo",
    "init_distributed",
    "training_device",
    "cleanup_distributed",
    "barrier",
    "broadcast_object",
    "all_gather_objects",
    "all_finite",
    "check_device_options",
]

DistInfo = DistEnv
"""This process's ``rank``, ``local_rank`` and ``world_size`` (``enabled``, ``is_main``): the shared
:class:`dissam.sharding.DistEnv` under the name the trainer has always used."""


def training_device(device: str, env: DistEnv) -> torch.device:
    """The training device of this process for ``runtime.device`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``).

    The rule of :func:`dissam.sharding.device_for_rank`: ``auto`` is CUDA when available, and an
    unindexed CUDA device becomes ``cuda:LOCAL_RANK`` under torchrun (modulo the GPU count). A single
    process gets the current GPU's index, explicit because ``torch.cuda.set_device`` and DDP's
    ``device_ids`` need one. Asking for CUDA without it raises :class:`DisSamError`."""
    if device != "auto":
        try:
            kind = torch.device(device).type
        except RuntimeError as exc:
            raise DisSamError(f"runtime.device={device!r} is not a device: use auto, cpu, cuda or cuda:N") from exc
        if kind == "cuda" and not torch.cuda.is_available():
            raise DisSamError(f"runtime.device={device!r} but CUDA is not available; use runtime.device=cpu")
    dev = device_for_rank(device, env)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def restarts_share_the_agent_store() -> bool:
    """True under ``torchrun --max-restarts N`` (N > 0) when the workers' process group shares the
    elastic agent's store (torchrun's default), where a restarted group can read stale addresses."""
    try:
        restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        return False
    return restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def init_distributed(
    device: str = "auto", backend: str = "auto", timeout_s: float = 1800.0
) -> tuple[DistInfo, torch.device]:
    """Read the process layout from torchrun's environment variables, choose the device
    (:func:`training_device`; CUDA processes also ``torch.cuda.set_device`` it) and, with more than
    one process, initialise the process group with collectives timing out after ``timeout_s``
    seconds (``runtime.dist_timeout_s``). Backend ``auto`` = nccl on CUDA, gloo on CPU.
    Returns ``(info, device)``."""
    info = dist_env()
    dev = training_device(device, info)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if info.is_main and restarts_share_the_agent_store():
        warnings.warn(
            "torchrun --max-restarts with the rendezvous store shared with the workers: after a restart the "
            "process group can find the addresses of the processes that died and fail or hang (PyTorch issue "
            "135712). Launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in the environment.",
            stacklevel=2,
        )
    if info.enabled and not torch.distributed.is_initialized():
        if backend == "auto":
            backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(
            backend=backend, init_method="env://", timeout=timedelta(seconds=float(timeout_s))
        )
    return info, dev


def check_device_options(amp: str, sync_bn: bool, info: DistInfo, device: torch.device) -> None:
    """Refuse ``runtime.amp=fp16`` and (under DDP) ``runtime.sync_bn`` off CUDA, with what to set."""
    if amp == "fp16" and device.type != "cuda":
        raise DisSamError("runtime.amp=fp16 needs CUDA; use runtime.amp=bf16 or none on the CPU")
    if sync_bn and info.enabled and device.type != "cuda":
        raise DisSamError("runtime.sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); set runtime.sync_bn=false")


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


def all_gather_objects(info: DistInfo, obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` for one process)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


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
