"""The benchmark's report: every (column, split) of a run evaluated with :mod:`dissam.evaluate` (the
same folder evaluation and table formatting ``dissam eval`` uses), written as ``table.{md,csv,json}``
and per-image files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from dissam.errors import DatasetError
from dissam.evaluate import add_test_mean, evaluate_folders
from dissam.evaluation_tables import format_table, per_image_csv
from dissam.paper_tables.config import BenchmarkConfig, write_json
from dissam.paper_tables.protocol import HQ_SELECTION, SAM_SELECTION, Item, gt_folder
from dissam.utils import atomic_write_bytes, library_versions

__all__ = ["evaluate_run"]


def evaluate_run(
    cfg: BenchmarkConfig,
    splits: Sequence[str],
    cols: Sequence[str],
    metrics: Sequence[str],
    failures: Sequence[dict] = (),
    by_split: dict[str, list[Item]] | None = None,
) -> dict:
    """Evaluate ``RUN_DIR/predictions/<column>/<split>`` against ``DATA/<split>/gt`` (a TOS-Net
    split: its converted ground truths, :func:`~dissam.paper_tables.protocol.gt_folder`) and write
    ``RUN_DIR/table.{md,csv,json}`` and ``RUN_DIR/per_image/<column>/<split>.csv``.

    A (column, split) with a failed image is left out (shown as "-") and named in ``incomplete``.
    "DIS-TE(1-4)" (mean of the four test splits' aggregates) is added for columns that have all four.
    """
    run_dir = Path(cfg.run_dir)
    failed = {(f["method"], f["split"]) for f in failures}
    results: dict[str, dict[str, dict]] = {c: {} for c in cols}
    incomplete, warnings = [], []
    for col in cols:
        for split in splits:
            if (col, split) in failed:
                incomplete.append(f"{col} / {split}")
                continue
            gt_dir = gt_folder(cfg.data, split, run_dir)
            pred_dir = run_dir / "predictions" / col / split
            try:
                ev = evaluate_folders(
                    pred_dir,
                    gt_dir,
                    workers=cfg.workers,
                    metrics=metrics,
                    progress=cfg.progress,
                    skeleton_cache=cfg.skeleton_cache,
                )
            except DatasetError as exc:
                incomplete.append(f"{col} / {split}: {exc}")
                continue
            results[col][split] = ev["aggregate"]
            warnings += [f"[{col} / {split}] {w}" for w in ev["warnings"]]
            atomic_write_bytes(
                run_dir / "per_image" / col / f"{split}.csv",
                per_image_csv(ev["per_image"], ev["aggregate"]).encode(),
            )
            write_json(run_dir / "per_image" / col / f"{split}.json", ev["per_image"])
    out_splits = add_test_mean(results, splits)
    markdown, csv_text = format_table(results, out_splits, cols)
    table = {
        "results": results,
        "splits": out_splits,
        "methods": list(cols),
        "metrics": list(metrics),
        "n_images": {s: len(by_split[s]) for s in splits} if by_split else None,
        "incomplete": incomplete,
        "warnings": warnings,
        "versions": library_versions(),
        "protocol": {
            "sam_box": "whole-GT box (docs/data.md): GT >= 128, 8-connected components >= 0.4% of the area",
            "sam_mask": f"mask/<stem>.png when present, else SAM selection={SAM_SELECTION!r} on the SAM box",
            "hq_sam_mask": f"HQ-SAM selection={HQ_SELECTION!r} on the SAM box",
            "refiner_input": f"faithful (box map from the resized GT), size {cfg.size}",
            "saved_map": "d1 -> bilinear to original size -> per-image min-max -> x255 -> uint8 (truncation)",
            "jitter": {"pcts": list(cfg.jitters), "seed": cfg.jitter_seed},
        },
        "config": asdict(cfg),
    }
    atomic_write_bytes(run_dir / "table.md", markdown.encode())
    atomic_write_bytes(run_dir / "table.csv", csv_text.encode())
    write_json(run_dir / "table.json", table)
    table["markdown"] = markdown
    return table
