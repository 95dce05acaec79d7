"""Tables and files of evaluation results: the Markdown/CSV table of methods x splits (the paper's
layout), per-image CSVs and the PR/F-measure curve plots. Used by ``dissam eval`` and the benchmark
report (:mod:`dissam.evaluate` computes the numbers)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dissam.errors import DisSamError
from dissam.metrics import ALL_METRICS, LOWER_IS_BETTER

__all__ = ["format_table", "per_image_csv", "plot_curves", "DISPLAY_DIGITS"]

DISPLAY_DIGITS = {"HCE": 0}  # Markdown digits per metric; every other metric gets 3, like the paper


def _metric_rows(results: dict, split: str, methods: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for m in ALL_METRICS:
        if any(m in results.get(meth, {}).get(split, {}) for meth in methods):
            seen[m] = None
    for meth in methods:
        for k in results.get(meth, {}).get(split, {}):
            seen.setdefault(k, None)
    return list(seen)


def _display(value, metric: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool):
        v = float(value)
        if math.isnan(v):
            return "nan"
        return f"{v:.{DISPLAY_DIGITS.get(metric, 3)}f}"
    return str(value)


def _label(metric: str) -> str:
    if metric in LOWER_IS_BETTER:
        return f"{metric} ↓"
    if metric in ALL_METRICS:
        return f"{metric} ↑"
    return metric


def format_table(
    results: dict[str, dict[str, dict]], splits: Sequence[str], methods: Sequence[str]
) -> tuple[str, str]:
    """``results[method][split] -> {metric: value}`` as ``(markdown, csv)`` text in the paper's layout.

    Rows are the metrics of each split (the paper's metrics first in :data:`ALL_METRICS` order,
    then any other key, e.g. robustness rows, in first-seen order); columns are the methods.
    Markdown: 3 decimals (HCE: 0), the split named on its first row, "↑"/"↓" on the paper's
    metrics, "-" where a method lacks a value. CSV: columns ``split, metric, <methods>``, values
    at full precision (``repr``), empty where missing.
    """
    methods = list(methods)
    md = ["| Split | Metric | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "metric", *methods])
    for split in splits:
        for i, metric in enumerate(_metric_rows(results, split, methods)):
            vals = [results.get(meth, {}).get(split, {}).get(metric) for meth in methods]
            cells = [_display(v, metric) for v in vals]
            md.append(f"| {split if i == 0 else ''} | {_label(metric)} | " + " | ".join(cells) + " |")
            writer.writerow(
                [split, metric]
                + [
                    "" if v is None else repr(float(v)) if isinstance(v, int | float | np.number) else str(v)
                    for v in vals
                ]
            )
    return "\n".join(md) + "\n", buf.getvalue()


def per_image_csv(per_image: list[dict], aggregate: dict | None = None) -> str:
    """Per-image values as CSV (``name, <metrics>``), with the aggregate as a last ``mean`` row
    (maxFm and meanEm there are the dataset values, not the mean of the per-image ones)."""
    keys = [k for k in per_image[0] if k != "name"] if per_image else list(aggregate or {})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *keys])
    for row in per_image:
        writer.writerow([row["name"], *(repr(float(row[k])) for k in keys)])
    if aggregate:
        writer.writerow(["mean", *(repr(float(aggregate[k])) for k in keys)])
    return buf.getvalue()


def plot_curves(curves_by_method: dict[str, dict], path: str | os.PathLike, title: str = "") -> Path:
    """PNG with the precision-recall curves (left) and the F-measure-threshold curves (right) of
    each method; ``curves_by_method[method]`` is a ``curves`` dict of :func:`evaluate_folders`.
    Needs matplotlib (``pip install 'dissam[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DisSamError(
            "plotting needs matplotlib: pip install 'dissam[plot]' (or pip install matplotlib)"
        ) from exc
    fig, (ax_pr, ax_f) = plt.subplots(1, 2, figsize=(10, 4.2))
    for method, c in curves_by_method.items():
        if "fm" not in c:
            continue
        ax_pr.plot(c["recall"], c["precision"], label=method)
        ax_f.plot(c["thresholds"], c["fm"], label=method)
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall")
    ax_f.set(
        xlabel="threshold (uint8)",
        ylabel="F-measure (β²=0.3)",
        xlim=(0, 255),
        ylim=(0, 1.02),
        title="F-threshold",
    )
    for ax in (ax_pr, ax_f):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
