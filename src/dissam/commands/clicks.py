"""``dissam clicks``: interactive segmentation measured by simulated corrective clicks (NoC@85/90)."""

from __future__ import annotations

import argparse
import sys

from dissam.choices import POINT_SELECTIONS
from dissam.commands.weights import add_stage1_arguments

HELP = "simulate corrective clicks on data with ground truth and report NoC@85 / NoC@90 and IoU after k clicks"

DESCRIPTION = """\
The standard click simulation of interactive segmentation on any data set with ground truth
(docs/clicks.md): each new click goes to the interior point of the largest error region of the
current mask (the pixel farthest from the region's border), positive in a missed part, negative in a
wrongly included one, up to 20 clicks; NoC@85 / NoC@90 are the mean numbers of clicks to reach IoU
0.85 / 0.90 (20 for a case that never does), IoU@k the mean IoU after k clicks.

  dissam synth data/synth -n 30 --seed 3
  dissam clicks --data data/synth -o runs/clicks-offline                    # u2netp-auto + built-in refiner
  dissam clicks --data data/synth -o runs/clicks-grabcut --stage1 grabcut
  dissam clicks --data DIS5K --splits DIS-VD --sam sam_vit_l_0b3195.pth --refiner dis-sam.pth -o runs/clicks-sam

Data: ROOT/<split>/{im,gt} as for `dissam benchmark`, or one folder with im/ and gt/. Each case
starts from the benchmark's whole-GT box (--start box; the box is free, NoC counts clicks) or from
nothing (--start none). Results: RUN_DIR/clicks.md and clicks.json (per split and over all), and
RUN_DIR/clicks/<split>/<stem>.json per case; a rerun reuses finished cases.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="ROOT", help="data root with <split>/im and gt, or one im/gt folder")
    parser.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits under ROOT (comma or space separated)")
    parser.add_argument("-o", "--run-dir", required=True, metavar="RUN_DIR", help="output folder (resumable)")
    add_stage1_arguments(parser)
    parser.add_argument("--refiner", metavar="CKPT", help="refiner (default: the built-in model)")
    parser.add_argument("--model", metavar="PRESET", help="a preset naming stage 1 and the refiner (dissam models list)")
    parser.add_argument("--size", type=int, default=None, help="refiner input size (default: the refiner's own)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--start", choices=("box", "none"), default="box",
                        help="start from the whole-GT box (default) or from nothing (clicks only)")
    parser.add_argument("--max-clicks", type=int, default=20, metavar="N", help="clicks per case at most (default 20)")
    parser.add_argument("--no-mask-input", action="store_true",
                        help="do not pass the previous low-resolution logits back to SAM-like stages")
    parser.add_argument("--point-selection", choices=POINT_SELECTIONS, default="auto",
                        help="which SAM mask feeds the refiner for prompts with clicks (default auto)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images per split")
    parser.add_argument("--overwrite", action="store_true", help="redo finished cases")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from dissam.commands.weights import stage1_from_args
    from dissam.paper_tables.clicks import ClicksConfig, run_clicks, summary_table

    splits = [v.strip() for item in args.splits or [] for v in item.split(",") if v.strip()] or None
    cfg = ClicksConfig(data=args.data, run_dir=args.run_dir, splits=splits, sam=args.sam,
                       stage1=stage1_from_args(args), refiner=args.refiner, model=args.model, size=args.size,
                       device=args.device, start=args.start, max_clicks=args.max_clicks,
                       mask_input=not args.no_mask_input, point_selection=args.point_selection, limit=args.limit,
                       progress=not args.no_progress, overwrite=args.overwrite)
    out = run_clicks(cfg)
    print(summary_table(out["summary"]), end="")
    print(f"{out['computed']} case(s) simulated, {out['reused']} reused; wrote {args.run_dir}/clicks.md, clicks.json")
    for f in out["failures"]:
        print(f"  failed: {f['split']}/{f['stem']}: {f['error']}", file=sys.stderr)
    return 1 if out["failures"] else 0
