"""``dissam eval``: the paper's metrics for a prediction folder, or a methods x splits table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dissam.choices import METRICS

HELP = "evaluate saved prediction maps with the paper's metrics (maxFm, wFm, MAE, Sm, Em, HCE, mIoU, mBIoU)"

DESCRIPTION = """\
Evaluate saved 8-bit prediction maps exactly as the paper does (see docs/evaluation.md).

One folder:
  dissam eval --pred PRED_DIR --gt GT_DIR [--json out.json] [--csv out.csv] [--workers N]

A table (rows: metrics per split, columns: methods, plus DIS-TE(1-4) = mean of DIS-TE1..4):
  dissam eval --table --gt-root DIS5K --pred-root PREDS --splits DIS-VD,DIS-TE1,DIS-TE2,DIS-TE3,DIS-TE4 \\
      [--methods a,b] [--out-dir results/] [--plot]
  with PREDS/<method>/<split>/*.png and DIS5K/<split>/gt/*.png.

Files pair by name stem; a prediction of another size than its ground truth is resized to it
(bilinear) with a warning. HCE depends on the OpenCV version, which is printed and saved with it.
"""


def _split_list(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", metavar="DIR", help="folder of predicted maps (8-bit PNG, soft or binary)")
    parser.add_argument("--gt", metavar="DIR", help="folder of ground-truth masks")
    parser.add_argument(
        "--json", metavar="FILE", help="write aggregate, per-image values, curves and versions"
    )
    parser.add_argument(
        "--csv", metavar="FILE", help="write per-image values (+ a 'mean' row); with --table: the table"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes over images (default 1)"
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(METRICS),
        metavar="NAME",
        help=f"subset of {','.join(METRICS)} (comma or space separated; default all)",
    )
    parser.add_argument(
        "--skeleton-cache",
        metavar="DIR",
        help="HCE ground-truth skeleton cache folder "
        "(default $DISSAM_CACHE/gt-skeletons or ~/.cache/dissam/gt-skeletons)",
    )
    parser.add_argument("--no-skeleton-cache", action="store_true", help="recompute skeletons, write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    table = parser.add_argument_group("table mode")
    table.add_argument(
        "--table", action="store_true", help="evaluate methods x splits and print the paper's table"
    )
    table.add_argument("--gt-root", metavar="DIR", help="dataset root holding <split>/gt/")
    table.add_argument("--pred-root", metavar="DIR", help="root holding <method>/<split>/")
    table.add_argument(
        "--splits", nargs="+", metavar="SPLIT", help="e.g. DIS-VD,DIS-TE1,DIS-TE2,DIS-TE3,DIS-TE4"
    )
    table.add_argument(
        "--methods", nargs="+", metavar="NAME", help="method folders (default: all in --pred-root)"
    )
    table.add_argument(
        "--out-dir", metavar="DIR", help="write table.md, table.csv, results.json (and plots) here"
    )
    table.add_argument("--markdown", metavar="FILE", help="write the Markdown table here")
    table.add_argument(
        "--plot",
        action="store_true",
        help="PNG of PR and F-threshold curves per split (needs matplotlib: pip install 'dissam[plot]')",
    )


def _cache(args):
    if args.no_skeleton_cache:
        return None
    return args.skeleton_cache or "auto"


def _write_text(path: str | Path, text: str) -> Path:
    from dissam.utils import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


def _format_aggregate(agg: dict, versions: dict) -> str:
    lines = [f"{k:>10}: {v:.2f}" if k == "HCE" else f"{k:>10}: {v:.4f}" for k, v in agg.items()]
    if "HCE" in agg:
        lines.append(
            f"(HCE computed with OpenCV {versions.get('opencv')}, scikit-image {versions.get('scikit-image')})"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dissam.errors import DisSamError
    from dissam.metrics import check_metrics

    metrics = check_metrics(_split_list(args.metrics))
    if args.workers < 1:
        raise DisSamError(f"--workers must be >= 1, got {args.workers}")
    if args.table:
        return _run_table(args, metrics)
    if not args.pred or not args.gt:
        raise DisSamError(
            "give --pred PRED_DIR and --gt GT_DIR (or --table with --gt-root/--pred-root/--splits)"
        )
    if args.plot or args.out_dir or args.markdown:
        raise DisSamError("--plot, --out-dir and --markdown belong to --table mode")
    return _run_folder(args, metrics)


def _run_folder(args, metrics) -> int:
    from dissam.evaluate import evaluate_folders
    from dissam.evaluation_tables import per_image_csv

    out = evaluate_folders(
        args.pred,
        args.gt,
        workers=args.workers,
        metrics=metrics,
        progress=not args.no_progress,
        skeleton_cache=_cache(args),
    )
    print(f"{out['n_images']} images: {args.pred} vs {args.gt}")
    print(_format_aggregate(out["aggregate"], out["versions"]))
    if args.json:
        _write_text(args.json, json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        _write_text(args.csv, per_image_csv(out["per_image"], out["aggregate"]))
        print(f"wrote {args.csv}")
    return 0


def _run_table(args, metrics) -> int:
    from dissam.errors import DisSamError
    from dissam.evaluate import evaluate_table
    from dissam.evaluation_tables import format_table, plot_curves

    if not args.gt_root or not args.pred_root or not args.splits:
        raise DisSamError("--table needs --gt-root, --pred-root and --splits")
    if args.plot and not args.out_dir:
        raise DisSamError("--plot writes curves_<split>.png into --out-dir; give --out-dir")
    if args.plot:  # fail before the long evaluation, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise DisSamError("--plot needs matplotlib: pip install 'dissam[plot]'") from exc
    out = evaluate_table(
        args.gt_root,
        args.pred_root,
        _split_list(args.splits),
        methods=_split_list(args.methods),
        workers=args.workers,
        metrics=metrics,
        progress=not args.no_progress,
        skeleton_cache=_cache(args),
    )
    markdown, csv_text = format_table(out["results"], out["splits"], out["methods"])
    print(markdown, end="")
    if "HCE" in metrics:
        v = out["versions"]
        print(f"\nHCE computed with OpenCV {v.get('opencv')}, scikit-image {v.get('scikit-image')}")
    written = []
    if args.out_dir:
        d = Path(args.out_dir)
        written += [
            _write_text(d / "table.md", markdown),
            _write_text(d / "table.csv", csv_text),
            _write_text(d / "results.json", json.dumps(out, indent=1) + "\n"),
        ]
        if args.plot:
            for split in out["splits"]:
                per_method = {m: out["curves"][m][split] for m in out["methods"] if split in out["curves"][m]}
                if per_method:
                    written.append(plot_curves(per_method, d / f"curves_{split}.png", title=split))
    if args.markdown:
        written.append(_write_text(args.markdown, markdown))
    if args.csv:
        written.append(_write_text(args.csv, csv_text))
    if args.json:
        written.append(_write_text(args.json, json.dumps(out, indent=1) + "\n"))
    for p in written:
        print(f"wrote {p}")
    return 0
