"""Connecting to Ray and the settings every Ray job of dissam shares.

* :func:`require_ray` imports Ray or says how to install it (``pip install 'dissam[ray]'``).
* :func:`connect`: an already initialised Ray (a notebook's, a test's), else ``--ray-address``, else
  ``RAY_ADDRESS``, else a local Ray started in this process on this machine's cores.
* :class:`RayOptions`: the actor pool (how many actors, CPUs and GPUs each: fractional GPUs let
  several small models share one card), images per actor call, CPUs per decoding task, and how the
  refiner batches boxes. :meth:`RayOptions.actor_args` turns them into ``map_batches`` arguments.
* :class:`FaultInjection`: the test hook that kills one actor once (``DISSAM_RAY_KILL_ONCE``).

Ray Data restarts a dead actor and retries its batch (``max_restarts=-1``, ``max_task_retries=-1``
are its defaults for actor pools), and retries a failed CPU task; dissam relies on that and on its
outputs being idempotent (same names, atomic writes, the done marker last).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from dissam.errors import DisSamError

__all__ = ["RayOptions", "require_ray", "connect", "FaultInjection", "KILL_ONCE_ENV", "actor_device", "set_threads"]

log = logging.getLogger("dissam.ray")

KILL_ONCE_ENV = "DISSAM_RAY_KILL_ONCE"
"""Test hook: a file path; the first actor to finish predicting a batch creates the file and exits
hard before writing anything (``os._exit``), exactly once per file, as a killed node would."""


def require_ray():
    """``import ray`` (with Ray Data), or a :class:`DisSamError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part dissam needs
    except ImportError as exc:
        raise DisSamError("--engine ray needs Ray Data: pip install 'dissam[ray]'") from exc
    return ray


def connect(address: str | None = None, num_cpus: int | None = None):
    """Ray, initialised: the running one if this process already called ``ray.init``; else the cluster
    at ``address`` (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.1:6379"``), else ``RAY_ADDRESS``, else a
    local Ray in this process with ``num_cpus`` (default: all cores). Returns the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DisSamError(f"cannot connect to Ray at {address!r}: {exc}") from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How a dissam job runs on Ray.

    Attributes:
        address: the cluster (``None``: ``RAY_ADDRESS``, else a local Ray started in-process).
        actors: actors in the pool, each holding one copy of the models.
        gpus_per_actor: GPUs each actor reserves (``0.5``: two actors per card); ``None``: one when the
            cluster has GPUs and the device is not the CPU, else none.
        cpus_per_actor: CPUs each actor reserves; also its torch threads (rounded up).
        batch_size: images per actor call (the refiner's boxes of these images may be batched
            together, see ``refine_batch``).
        read_cpus: CPUs each reading/decoding task reserves (``0``: decoding shares the actors' cores,
            which suits a one-machine run where the model is the bottleneck).
        refine_batch: ``0`` (default): the refiner runs each image's boxes in chunks of the predictor's
            ``refiner_batch_size``, exactly as the local engine does (bit-identical outputs); ``N``:
            up to ``N`` boxes of several images per refiner call (fewer, fuller calls on a GPU; the
            float results differ in the last bits because the convolutions run at another batch size).
    """

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    batch_size: int = 4
    read_cpus: float = 1.0
    refine_batch: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.actors < 1:
            problems.append(f"--ray-actors must be >= 1, got {self.actors}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            problems.append(f"--ray-gpus-per-actor must be >= 0, got {self.gpus_per_actor}")
        if self.cpus_per_actor <= 0:
            problems.append(f"--ray-cpus-per-actor must be > 0, got {self.cpus_per_actor}")
        if self.batch_size < 1:
            problems.append(f"--ray-batch-size must be >= 1, got {self.batch_size}")
        if self.read_cpus < 0:
            problems.append(f"--ray-read-cpus must be >= 0, got {self.read_cpus}")
        if self.refine_batch < 0:
            problems.append(f"--ray-refine-batch must be >= 0, got {self.refine_batch}")
        if problems:
            raise DisSamError("; ".join(problems))

    @property
    def threads(self) -> int:
        """Torch threads per actor: its CPUs, rounded up."""
        return max(1, math.ceil(self.cpus_per_actor))

    def gpus(self, ray, device: str | None) -> float:
        """GPUs per actor: the given number, or (``None``) one if the cluster has GPUs and ``device``
        is not the CPU."""
        if self.gpus_per_actor is not None:
            return float(self.gpus_per_actor)
        if device is not None and str(device).startswith(("cpu", "mps")):
            return 0.0
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def actor_args(self, ray, device: str | None) -> dict[str, Any]:
        """``map_batches`` arguments of the model stage: the pool, its resources, the batch size."""
        return {"num_cpus": self.cpus_per_actor, "num_gpus": self.gpus(ray, device),
                "batch_size": self.batch_size, "batch_format": "numpy"}

    def read_args(self) -> dict[str, Any]:
        """``map_batches`` arguments of the reading/decoding stage (CPU tasks)."""
        return {"num_cpus": self.read_cpus, "batch_size": self.batch_size, "batch_format": "numpy"}


def actor_device(requested: str | None, gpus: float) -> str:
    """The torch device inside an actor: ``requested`` (``auto``/``None``: ``cuda`` when Ray gave the
    actor a GPU, else the CPU). Ray sets ``CUDA_VISIBLE_DEVICES`` per actor, so ``cuda`` is its own card."""
    if requested not in (None, "auto"):
        return str(requested)
    return "cuda" if gpus > 0 else "cpu"


class FaultInjection:
    """:data:`KILL_ONCE_ENV` read on the driver and handed to the actors (module docstring)."""

    def __init__(self, flag_file: str | None = None):
        self.flag_file = flag_file if flag_file is not None else os.environ.get(KILL_ONCE_ENV) or None

    def maybe_die(self) -> None:
        """Exit this process hard the first time any actor calls this (per flag file)."""
        if not self.flag_file:
            return
        try:
            fd = os.open(self.flag_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"killed pid {os.getpid()}\n".encode())
        os.close(fd)
        log.warning("%s: this actor exits now (pid %d)", KILL_ONCE_ENV, os.getpid())
        os._exit(3)


def set_threads(n: int) -> None:
    """Torch's intra-op threads in this actor (Ray sets ``OMP_NUM_THREADS`` from the actor's CPUs,
    which a fractional CPU would round down to one)."""
    import torch

    torch.set_num_threads(max(1, int(n)))
