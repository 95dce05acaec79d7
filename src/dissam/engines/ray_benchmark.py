"""``dissam benchmark --engine ray``: the benchmark's predictions on Ray Data, then the evaluation on
the driver.

The driver plans the run as the local engine does (:func:`dissam.paper_tables.run.plan_run`: splits,
methods, the guard against mixing settings) and lists the images with a missing prediction; CPU tasks
read and check each image, its ground truth and its SAM mask (:meth:`Runner.read
<dissam.paper_tables.runner.Runner.read>`); an actor pool holds one :class:`~dissam.paper_tables.runner.Runner`
per actor (its models loaded once, on first use) and computes and writes the missing maps exactly as
the local engine does (the faithful path runs the refiner one image at a time, as the paper's
protocol does). Same files under ``RUN_DIR``, same reuse of existing predictions, same failure list
(``RUN_DIR/failures.json``) and tables. A model that cannot be loaded stops the job; a bad image is
that image's failure.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from dissam.engines.ray_runtime import FaultInjection, RayOptions, actor_device, connect, set_threads
from dissam.errors import DisSamError
from dissam.paper_tables.config import BenchmarkConfig
from dissam.paper_tables.protocol import Item, method_name
from dissam.paper_tables.run import finish_run, plan_run
from dissam.paper_tables.runner import Runner

__all__ = ["run_benchmark_ray"]

_EMPTY = np.zeros((0, 0), np.uint8)


def _item(batch: dict[str, np.ndarray], i: int) -> Item:
    mask = str(batch["mask"][i])
    return Item(str(batch["split"][i]), str(batch["stem"][i]), Path(batch["image"][i]), Path(batch["gt"][i]),
                Path(mask) if mask else None)


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def read_items(batch: dict[str, np.ndarray], cfg: BenchmarkConfig) -> dict[str, np.ndarray]:
    """CPU task: each item's image, ground truth and SAM mask (``H x W x 3`` / ``H x W`` uint8; an empty
    ``mask_px`` when the split has none), sizes checked, or the reason it cannot be read."""
    runner = Runner(cfg, [])
    cols: dict[str, list] = {k: [] for k in ("image_px", "gt_px", "mask_px", "error", "read_s")}
    for i in range(len(batch["stem"])):
        t0 = time.perf_counter()
        image, gt, mask, error = np.zeros((0, 0, 3), np.uint8), _EMPTY, _EMPTY, ""
        try:
            image, gt, m = runner.read(_item(batch, i))
            mask = _EMPTY if m is None else m
        except Exception as exc:  # noqa: BLE001 - reported as that image's failure
            error = str(exc) if isinstance(exc, DisSamError) else f"{type(exc).__name__}: {exc}"
        for k, v in (("image_px", image), ("gt_px", gt), ("mask_px", mask), ("error", error),
                     ("read_s", time.perf_counter() - t0)):
            cols[k].append(v)
    out = {k: batch[k] for k in ("split", "stem", "image", "gt", "mask")}
    out.update({k: _objects(v) for k, v in cols.items() if k.endswith("_px")})
    out["error"] = np.array(cols["error"], dtype=object)
    out["read_s"] = np.array(cols["read_s"])
    return out


class _Ready:
    """A finished future (what :meth:`Runner.process` takes for an image read ahead)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class BenchmarkActor:
    """One :class:`Runner` per actor (its models loaded once); computes the missing maps of a batch."""

    def __init__(self, cfg: BenchmarkConfig, methods: list[str], gpus: float, threads: int = 1,
                 fault_file: str | None = None):
        set_threads(threads)
        cfg = dataclasses.replace(cfg, device=actor_device(cfg.device, gpus), rank=0, world_size=1, local_rank=0)
        self.runner = Runner(cfg, methods)
        self.fault = FaultInjection(fault_file or "")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.fault.maybe_die()
        failures, stats = [], []
        for i in range(len(batch["stem"])):
            item = _item(batch, i)
            before = dict(self.runner.stats)
            if batch["error"][i]:
                todo = self.runner.todo(item)
                fails = [{"split": item.split, "stem": item.stem, "method": method_name(m, p),
                          "error": str(batch["error"][i])} for m, p in todo]
                self.runner.stats["failed"] += len(fails)
            else:
                mask = batch["mask_px"][i]
                data = (batch["image_px"][i], batch["gt_px"][i], mask if mask.size else None)
                fails = self.runner.process(item, None, _Ready(data))  # FatalError stops the job
            failures.append(json.dumps(fails))
            stats.append(json.dumps({k: self.runner.stats[k] - before.get(k, 0) for k in self.runner.stats}))
        return {"stem": batch["stem"], "failures": np.array(failures, dtype=object),
                "stats": np.array(stats, dtype=object)}


def run_benchmark_ray(cfg: BenchmarkConfig, opts: RayOptions) -> dict:
    """:func:`dissam.paper_tables.run_benchmark` on Ray; returns the same dictionary (``stats`` summed
    over the actors, ``seconds`` the prediction's wall time)."""
    plan = plan_run(cfg)
    runner = Runner(cfg, plan.methods)
    todo = [it for it in plan.items if runner.todo(it)]
    stats = {"computed": 0, "reused": 0, "sam_calls": 0, "failed": 0}
    failures: list[dict] = []
    n_cols = len(plan.columns)
    stats["reused"] = sum(n_cols for it in plan.items if it not in todo)  # whole images already done
    t0 = time.perf_counter()
    if todo:
        ray = connect(opts.address)
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = cfg.progress
        gpus = opts.gpus(ray, cfg.device)
        rows = [{"split": it.split, "stem": it.stem, "image": str(it.image), "gt": str(it.gt),
                 "mask": str(it.mask) if it.mask is not None else ""} for it in todo]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 16 * opts.actors)))
        ds = ds.map_batches(read_items, fn_kwargs={"cfg": cfg}, **opts.read_args())
        ds = ds.map_batches(BenchmarkActor, compute=ray.data.ActorPoolStrategy(size=opts.actors),
                            fn_constructor_kwargs={"cfg": cfg, "methods": plan.methods, "gpus": gpus,
                                                   "threads": opts.threads, "fault_file": FaultInjection().flag_file},
                            **opts.actor_args(ray, cfg.device))
        try:
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for f, st in zip(out["failures"], out["stats"], strict=True):
                    failures += json.loads(f)
                    for k, v in json.loads(st).items():
                        stats[k] += v
        except Exception as exc:  # a model that cannot load fails every actor: say what, not Ray's stack
            cause = exc
            while cause.__cause__ is not None and not isinstance(cause, DisSamError):
                cause = cause.__cause__
            if isinstance(cause, DisSamError):
                raise DisSamError(str(cause)) from exc
            raise
    seconds = time.perf_counter() - t0
    failures.sort(key=lambda f: (f["split"], f["stem"], f["method"]))
    table = finish_run(cfg, plan, failures)
    return {"methods": plan.methods, "columns": plan.columns, "splits": plan.splits, "stats": stats,
            "failures": failures, "skipped": plan.skipped, "table": table, "reports": None,
            "images": len(todo), "seconds": seconds}
