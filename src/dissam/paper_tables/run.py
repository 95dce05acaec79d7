"""``run_benchmark``: plan this rank's images, predict what is missing (a reader thread ahead of the
networks, writer threads behind them), gather every rank's report on rank 0 and evaluate there."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dissam.errors import DisSamError
from dissam.metrics import ALL_METRICS, check_metrics
from dissam.paper_tables.config import (
    BenchmarkConfig,
    check_settings,
    resolve_methods,
    weight_free_stage,
    write_json,
)
from dissam.paper_tables.protocol import Item, columns, discover_splits, split_items
from dissam.paper_tables.report import evaluate_run
from dissam.paper_tables.runner import Runner
from dissam.sharding import DistEnv, gather_reports, report_fatal, run_id, shard

__all__ = ["run_benchmark", "plan_run", "finish_run", "RunPlan"]

logger = logging.getLogger("dissam.paper_tables")


def _plan_id(items: Sequence[Item], cols: Sequence[str], cfg: BenchmarkConfig) -> str:
    h = hashlib.sha1()
    for it in items:
        h.update(f"{it.split}/{it.stem}\n".encode())
    h.update(json.dumps([list(cols), cfg.jitter_seed, cfg.size, cfg.world_size]).encode())
    return h.hexdigest()[:12]


@dataclass
class RunPlan:
    """What a benchmark run evaluates: its metrics, splits and items (``by_split``), the methods that
    can run (``skipped``: messages for the others) and the table columns."""

    metrics: list[str]
    splits: list[str]
    by_split: dict[str, list[Item]]
    items: list[Item]
    methods: list[str]
    skipped: list[str]
    columns: list[str]


def plan_run(cfg: BenchmarkConfig) -> RunPlan:
    """Check the settings against the data and the run folder and list the work (every engine's
    first step). Raises :class:`DisSamError` for settings that cannot run."""
    metrics = check_metrics(cfg.metrics or list(ALL_METRICS))
    splits = discover_splits(cfg.data, cfg.splits)
    by_split = {s: split_items(cfg.data, s, cfg.run_dir) for s in splits}
    items = [it for s in splits for it in by_split[s]]
    have_masks = all(it.mask is not None for it in items)
    methods, skipped = resolve_methods(cfg, have_masks)
    if cfg.rank == 0:  # once per job, through the logger (the command line shows it)
        for msg in skipped:
            logger.warning(msg)
    if cfg.size < 32 or cfg.size % 32:
        raise DisSamError(f"--size must be a positive multiple of 32, got {cfg.size}")
    needs_sam = (cfg.jitters and any(m in ("dis-sam", "sam") for m in methods)) or (
        not have_masks and any(m in ("dis-sam", "sam") for m in methods)
    )
    if needs_sam and cfg.sam is None and not weight_free_stage(cfg.stage1):
        n = sum(it.mask is None for it in items)
        raise DisSamError(
            f"SAM masks must be computed ({n} image(s) without mask/"
            + (", and box jitter" if cfg.jitters else "")
            + "): give --sam SOURCE (e.g. sam_vit_l_0b3195.pth)"
        )
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    check_settings(cfg, methods, write=False)
    return RunPlan(metrics, splits, by_split, items, methods, skipped, columns(methods, cfg.jitters))


def finish_run(cfg: BenchmarkConfig, plan: RunPlan, failures: list[dict]) -> dict | None:
    """Every rank's failures in ``RUN_DIR/failures.json`` and (with ``cfg.evaluate``) the evaluation
    of the whole run (:func:`evaluate_run`); returns the table or None."""
    write_json(Path(cfg.run_dir) / "failures.json", failures)
    if not cfg.evaluate:
        return None
    return evaluate_run(cfg, plan.splits, plan.columns, plan.metrics, failures, plan.by_split)


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Predict every missing map of this rank's images, then (rank 0) evaluate and write the tables.

    Returns ``{"methods", "columns", "splits", "stats", "failures", "skipped", "table"}`` where
    ``stats`` counts this rank's ``computed``/``reused`` predictions, ``sam_calls`` and ``failed``,
    ``failures`` lists ``{"split", "stem", "method", "error"}`` (all ranks' on rank 0) and ``table`` is
    the evaluation (:func:`evaluate_run`) on rank 0, None elsewhere or without ``cfg.evaluate``.
    """
    from tqdm.auto import tqdm

    run_plan = plan_run(cfg)
    items, methods, cols, run_dir = run_plan.items, run_plan.methods, run_plan.columns, Path(cfg.run_dir)
    env = DistEnv(cfg.rank, cfg.local_rank, cfg.world_size)
    mine = shard(items, cfg.rank, cfg.world_size, key=lambda it: (it.split, it.stem))
    runner = Runner(cfg, methods)
    failures: list[dict] = []
    desc = "benchmark" + env.tag()
    # the reader thread decodes the next image while this one is in the networks; two writer
    # threads encode and write the PNGs
    plans: dict[int, list] = {}

    def plan(i: int) -> list:
        if i not in plans:
            plans[i] = runner.todo(mine[i])
        return plans[i]

    plan_id = _plan_id(items, cols, cfg)
    shard_dir = run_dir / "shards" / run_id(plan_id)
    try:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="dissam-read") as reader,
            ThreadPoolExecutor(2, thread_name_prefix="dissam-write") as writer,
        ):
            runner.writer = writer
            ahead = reader.submit(runner.read, mine[0]) if mine and plan(0) else None
            try:
                for i, item in enumerate(
                    tqdm(mine, desc=desc, unit="img", disable=not cfg.progress, file=sys.stderr)
                ):
                    current, ahead = ahead, None
                    if i + 1 < len(mine) and plan(i + 1):
                        ahead = reader.submit(runner.read, mine[i + 1])
                    failures += runner.process(item, plan(i), current)
                    failures += runner.drain(max_pending=8)
                    plans.pop(i, None)
            finally:
                failures += runner.drain(0)
                runner.writer = None
    except Exception as exc:
        # tell rank 0, which would otherwise wait for this rank until the barrier timeout
        report_fatal(env, shard_dir, str(exc) if isinstance(exc, DisSamError) else f"{type(exc).__name__}: {exc}")
        raise
    report = {
        "rank": cfg.rank,
        "items": [f"{it.split}/{it.stem}" for it in mine],
        "stats": runner.stats,
        "failures": failures,
    }
    reports = gather_reports(report, env, shard_dir, timeout_s=cfg.barrier_timeout_s)
    out = {
        "methods": methods,
        "columns": cols,
        "splits": run_plan.splits,
        "stats": runner.stats,
        "failures": failures,
        "skipped": run_plan.skipped,
        "table": None,
        "reports": reports,
    }
    if reports is None:
        return out
    out["failures"] = [f for r in reports for f in r["failures"]]
    out["table"] = finish_run(cfg, run_plan, out["failures"])
    return out
