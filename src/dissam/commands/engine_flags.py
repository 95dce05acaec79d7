"""``--engine local|ray`` and the Ray options, shared by ``dissam predict``, ``prepare-masks`` and
``benchmark`` (argparse only: nothing heavy is imported here)."""

from __future__ import annotations

import argparse

from dissam.engines import ENGINES

ENGINE_HELP = ("local (default): this process, or one per GPU under torchrun; ray: Ray Data (pip install "
               "'dissam[ray]'), CPU tasks read and decode, an actor pool runs the models")


def add_engine_arguments(p: argparse.ArgumentParser, refine_batch: bool = False) -> None:
    """``--engine`` and the ``--ray-*`` options (``refine_batch``: also ``--ray-refine-batch``)."""
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=ENGINES, default="local", help=ENGINE_HELP)
    g.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="Ray cluster (auto, ray://head:10001, host:6379; default: RAY_ADDRESS, else a local Ray "
                        "started in this process)")
    g.add_argument("--ray-actors", type=int, default=1, metavar="N",
                   help="actors in the pool, each with its own copy of the models (default 1)")
    g.add_argument("--ray-gpus-per-actor", type=float, default=None, metavar="G",
                   help="GPUs per actor, fractions allowed (0.5: two actors per card; default: 1 when the cluster "
                        "has GPUs and --device is not cpu, else 0)")
    g.add_argument("--ray-cpus-per-actor", type=float, default=1.0, metavar="C",
                   help="CPUs per actor, also its torch threads rounded up (default 1)")
    g.add_argument("--ray-batch-size", type=int, default=4, metavar="B", help="images per actor call (default 4)")
    g.add_argument("--ray-read-cpus", type=float, default=1.0, metavar="C",
                   help="CPUs per reading/decoding task (default 1; 0: decoding shares the actors' cores)")
    if refine_batch:
        g.add_argument("--ray-refine-batch", type=int, default=0, metavar="N",
                       help="0 (default): the refiner runs each image's boxes as the local engine does (bit-identical "
                            "outputs); N: up to N boxes of several images per refiner call (last-bit float differences)")


def ray_options_from_args(args: argparse.Namespace):
    """:class:`dissam.engines.ray_runtime.RayOptions` from the flags (validated)."""
    from dissam.engines.ray_runtime import RayOptions

    return RayOptions(address=args.ray_address, actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor,
                      cpus_per_actor=args.ray_cpus_per_actor, batch_size=args.ray_batch_size,
                      read_cpus=args.ray_read_cpus, refine_batch=getattr(args, "ray_refine_batch", 0))
