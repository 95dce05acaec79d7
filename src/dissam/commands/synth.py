"""``dissam synth``: write a synthetic DIS-like data set (im/, gt/, boxes.json, optional mask/)."""

from __future__ import annotations

import argparse

HELP = "generate synthetic DIS-like training data (fine structures, exact soft GT, box prompts)"

DESCRIPTION = """\
Write N synthetic samples in the DIS-5K layout (see docs/synthetic.md):
  OUT/im/synth_000000.jpg   RGB image
  OUT/gt/synth_000000.png   8-bit soft ground truth of the target object only
  OUT/boxes.json            {stem: [x0, y0, x1, y1]} target box, inclusive pixels
  OUT/mask/synth_000000.png coarse stage-1 mask, with --masks degrade|grabcut|stage1-like

With --max-targets K > 1 the ground truth holds 1..K separate objects under one box (the
multi-component masks that `dissam enrich` splits into extra samples).

With --style photo the objects sit in real photographs (scikit-image's public-domain/CC0 samples
plus the files and folders given with --photos) and pass through a camera model (blur, white
balance, noise, JPEG); with --cutouts, some objects are real object photographs with an alpha
channel (RGBA cut-outs). docs/builtin-model.md says how the built-in model used them.

Same command, same bytes: sample i depends only on (--seed, i, --size-min/--size-max, --masks,
--max-targets, --style, --photos, --cutouts, --cutout-split).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("-n", type=int, default=100, metavar="N", help="number of samples (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    parser.add_argument("--size-min", type=int, default=320, help="smallest image side in px (default 320)")
    parser.add_argument("--size-max", type=int, default=512, help="largest image side in px (default 512)")
    parser.add_argument(
        "--masks",
        choices=("degrade", "grabcut", "stage1-like", "none"),
        default="none",
        help="also write OUT/mask/ coarse masks: 'degrade' (SAM-like degraded GT), "
        "'grabcut' (OpenCV GrabCut from the box, slow), 'stage1-like' (GrabCut, U²-Netp or degraded GT, "
        "the latter where a stage 1 fails outright; slow), 'none' (default)",
    )
    parser.add_argument(
        "--style",
        choices=("dis", "photo"),
        default="dis",
        help="'dis' (default): flat objects on procedural textures; 'photo': photo-textured objects in "
        "real photographs through a camera model",
    )
    parser.add_argument(
        "--photos",
        nargs="+",
        default=[],
        metavar="PATH",
        help="with --style photo: more photographs (files or folders) for backgrounds and textures",
    )
    parser.add_argument(
        "--cutouts",
        nargs="+",
        default=[],
        metavar="PATH",
        help="with --style photo: RGBA photographs of single objects (files or folders) to use as "
        "targets and distractors in 60%% of cases (flat drawings and opaque images are skipped)",
    )
    parser.add_argument(
        "--cutout-split",
        choices=("all", "train", "heldout"),
        default="all",
        help="use all cut-outs (default), or only the 'train' or the 'heldout' part (one file in five, "
        "chosen by its name), to measure a model on objects it was not trained on",
    )
    parser.add_argument(
        "--max-targets",
        type=int,
        default=1,
        metavar="K",
        help="objects in each ground truth, drawn from 1..K (default 1: one target)",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from dissam.data.synthetic import generate_dataset
    from dissam.errors import DatasetError

    if args.n < 1:
        raise DatasetError(f"-n must be at least 1, got {args.n}")
    if args.workers < 1:
        raise DatasetError(f"--workers must be at least 1, got {args.workers}")
    boxes = generate_dataset(
        args.out_dir,
        args.n,
        seed=args.seed,
        size_range=(args.size_min, args.size_max),
        masks=args.masks,
        workers=args.workers,
        progress=not args.no_progress,
        max_targets=args.max_targets,
        style=args.style,
        photos=tuple(args.photos),
        cutouts=tuple(args.cutouts),
        cutout_split=args.cutout_split,
    )
    print(
        f"wrote {len(boxes)} samples to {args.out_dir} (im/, gt/, boxes.json"
        + (", mask/)" if args.masks != "none" else ")")
    )
    return 0
