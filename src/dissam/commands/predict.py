"""``dissam predict``: boxes in, hair-fine masks and cut-outs out."""

from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from dissam.choices import BOX_FORMATS, MASK_SELECTIONS, POINT_SELECTIONS
from dissam.commands.weights import (
    add_runtime_arguments,
    add_weight_arguments,
    precision_from_args,
    predictor_from_args,
)

if TYPE_CHECKING:  # heavy modules load inside run(), so that --help stays instant
    from dissam.batch_predict import OutputOptions

HELP = "segment the objects in boxes (SAM + refiner) and write masks, cut-outs and overlays"
DESCRIPTION = """\
Segment the object inside each box prompt with DIS-SAM and write, for box k of image STEM:
  STEM_k.png          binary mask (0/255)
  STEM_k_soft.png     8-bit soft map            (--soft)
  STEM_k_cutout.png   RGBA cut-out              (--rgba; foreground colour estimated under soft
                                                edges unless --no-fg-estimation)
  STEM_k_overlay.png  mask and box on the image (--overlay)
  STEM_k_coarse.png   the stage-1 (SAM) mask    (--save-coarse)
With --text PHRASE (SAM 3), k is PHRASE_i for the i-th instance found (best score first), e.g.
STEM_bicycle_0.png.

Boxes: --box x0,y0,x1,y1 (repeatable, for every image) and/or --prompts prompts.json with boxes per
image (see the README for the schema; rembg-style rectangle entries are accepted). Coordinates are
pixels of the image as displayed (EXIF orientation applied), XYXY by default.

Clicks: --point X,Y (on the object) or --point X,Y,0 (not on the object), repeatable; they go with
the one --box, or make a prompt of clicks alone without --box. Per image and per object in the
prompts file: {"box": [x0, y0, x1, y1], "points": [[x, y], [x, y, 0]]} or {"points": [...]}
(docs/clicks.md). SAM-like stages take the clicks in their prompt encoder; GrabCut and U²-Netp take
them as sure-foreground / sure-background discs.

Without --refiner the built-in refiner is used; without --sam the bundled U²-Netp stage 1 (--stage1
u2netp-auto: GrabCut's edges where they separate the object's colours better, GrabCut where U²-Netp
finds nothing in a box; lower quality than SAM; --coarse grabcut for GrabCut alone). One failing image is reported and the others continue; the exit status is
non-zero if any image failed.

Runs over folders are resumable: an image whose outputs a previous run finished (with the same
weights, flags and boxes) is skipped (--overwrite redoes it). Under torchrun (or with RANK and
WORLD_SIZE set) each process takes its share of the images and its GPU from LOCAL_RANK:
  torchrun --nproc-per-node 4 -m dissam predict photos/ --prompts boxes.json -o out

Backends: --backend torch (default) or onnx (ONNX Runtime; graphs exported once and cached next to
the weights; pip install 'dissam[onnx]'); --precision fp32 (default), bf16 (torch), int8 (onnx: the
SAM encoder). Lossy precisions are opt-in: see docs/benchmarks.md for their measured cost.
"""

log = logging.getLogger("dissam.predict")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("-o", "--out", default="dissam_out", help="output folder (default: dissam_out)")
    add_weight_arguments(p)
    p.add_argument("--text", action="append", default=[], metavar="PHRASE",
                   help="text prompt (SAM 3 weights in --sam): refine every instance found (repeatable)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="--text: minimum SAM 3 score (default 0.5)")
    p.add_argument("--max-instances", type=int, default=10, help="--text: at most this many per phrase (default 10)")
    p.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1", help="a box prompt (repeatable)")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,L]",
                   help="a click: label 1 (default) on the object, 0 not on it; with the one --box, or alone "
                        "(repeatable)")
    p.add_argument("--prompts", help="JSON file with boxes (and clicks) per image")
    p.add_argument("--box-format", choices=BOX_FORMATS, default="xyxy")
    p.add_argument("--full-image-box", action="store_true", help="use the whole image as the box when none is given")
    p.add_argument("--rgba", action="store_true", help="write RGBA cut-outs")
    p.add_argument("--no-fg-estimation", action="store_true",
                   help="cut-outs keep the image's colours under soft edges (default: estimate the foreground "
                        "colour, which removes background halos)")
    p.add_argument("--overlay", action="store_true", help="write overlay pictures")
    p.add_argument("--soft", action="store_true", help="write 8-bit soft maps")
    p.add_argument("--save-coarse", action="store_true", help="write the coarse (stage-1) masks")
    p.add_argument("--threshold", default="0.5", help="probability threshold for the binary mask, or 'otsu'")
    p.add_argument("--edit-threshold", default="auto", metavar="auto|none|T",
                   help="keep the full-resolution coarse mask except where the refined map differs from it by "
                        "more than T (auto: the refiner's own calibration, which only the built-in model has; "
                        "none: the raw refined map); docs/experiments.md")
    p.add_argument("--mask-selection", choices=MASK_SELECTIONS, default="first",
                   help="which SAM mask feeds the refiner (authors: first of the 3 multimask outputs)")
    p.add_argument("--point-selection", choices=POINT_SELECTIONS, default="auto",
                   help="which SAM mask feeds the refiner for prompts with clicks (auto: the best of 3 for one "
                        "click alone, the single output otherwise)")
    p.add_argument("--size", type=int, default=None, help="refiner input size (default: from the checkpoint, else 1024)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    add_runtime_arguments(p, dtype_alias=True)
    p.add_argument("--overwrite", action="store_true", help="redo images that a previous run finished")


def _expand_inputs(items: list[str]) -> list[Path]:
    from dissam.errors import DisSamError
    from dissam.io import list_images

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DisSamError(f"no images found in folder {p}")
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        elif any(c in item for c in "*?["):
            found = sorted(Path(x) for x in glob.glob(item, recursive=True) if Path(x).is_file())
            if not found:
                raise DisSamError(f"no files match {item!r}")
            paths.extend(found)
        else:
            paths.append(p)  # reported as a per-image failure, so the others still run
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems and stems[p.stem] != p:
            raise DisSamError(f"two inputs share the name {p.stem!r} ({stems[p.stem]} and {p}); outputs would collide")
        stems[p.stem] = p
    return list(dict.fromkeys(paths))


def run(args: argparse.Namespace) -> int:
    from dissam.batch_predict import OutputOptions, predict_images
    from dissam.boxes import as_boxes
    from dissam.errors import DisSamError
    from dissam.points import Prompt
    from dissam.prompts import load_prompt_file, parse_box, prompts_for_image
    from dissam.sharding import device_for_rank, dist_env

    cli_boxes = [parse_box(b) for b in args.box]
    cli_prompts = _cli_prompts(cli_boxes, args.point)
    prompts = load_prompt_file(args.prompts) if args.prompts else None
    with_points = bool(args.point) or any(p.has_points for entries in (prompts or {}).values() for p in entries)
    images = _expand_inputs(args.images)
    threshold: float | str = "otsu" if args.threshold.lower() == "otsu" else float(args.threshold)
    precision = precision_from_args(args)
    common = dict(size=args.size, threshold=threshold, mask_selection=args.mask_selection, backend=args.backend,
                  precision=precision, edit_threshold=parse_edit_threshold(args.edit_threshold))
    options = OutputOptions(soft=args.soft, rgba=args.rgba, overlay=args.overlay, coarse=args.save_coarse,
                            estimate_fg=not args.no_fg_estimation)
    if args.text:
        return _run_text(args, images, cli_boxes + args.point, prompts, common, options)
    if with_points:
        common["point_selection"] = args.point_selection
    env = dist_env()
    device = device_for_rank(args.device, env)  # cuda:LOCAL_RANK under torchrun

    def build():
        return predictor_from_args(args, device=str(device), **common)

    def boxes_for(path: Path, hw: tuple[int, int]):
        found = prompts_for_image(path, prompts, cli_prompts)
        if not found:
            if not args.full_image_box:
                raise DisSamError("no box given for this image (use --box, --point, --prompts or --full-image-box)")
            return as_boxes([[0, 0, hw[1] - 1, hw[0] - 1]], "xyxy")
        if any(p.has_points for p in found):  # boxes in XYXY, clicks as given
            return [Prompt(None if p.box is None else as_boxes(p.box, args.box_format)[0], p.point_coords,
                           p.point_labels) for p in found]
        return as_boxes([p.box for p in found], args.box_format)

    settings = {
        "model": args.model, "sam": args.sam, "refiner": args.refiner, "coarse": args.coarse or "sam", "stage1": args.stage1,
        "size": args.size, "threshold": str(threshold), "mask_selection": args.mask_selection,
        "backend": args.backend or "torch", "precision": precision or "fp32",
        "fg_estimation": not args.no_fg_estimation, "edit_threshold": args.edit_threshold,
    }
    if with_points:  # only then, so that box-only runs keep their done markers
        settings["point_selection"] = args.point_selection
    summary = predict_images(build, images, args.out, boxes_for, options=options, settings=settings,
                             overwrite=args.overwrite, env=env)
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    print(f"dissam predict{env.tag()}: {summary.masks} mask(s) for {summary.done} image(s) written to "
          f"{args.out}{skipped}")
    if summary.failures:
        print(f"dissam predict{env.tag()}: {len(summary.failures)} image(s) failed:")
        for p, msg in summary.failures:
            print(f"  {p}: {msg}")
        return 1
    return 0


def _run_text(args: argparse.Namespace, images: list[Path], cli_boxes, prompts, common: dict,
              options: OutputOptions) -> int:
    """``--text``: SAM 3 finds the instances of each phrase in each image, the refiner refines each
    (one process; outputs ``STEM_PHRASE_i``)."""
    from dissam.batch_predict import write_prediction
    from dissam.errors import DisSamError
    from dissam.text_prompts import text_predictor

    if cli_boxes or prompts or args.full_image_box:
        raise DisSamError("give either --text or boxes / clicks (--box/--point/--prompts/--full-image-box), not both")
    if not args.sam:
        raise DisSamError("--text needs SAM 3 weights: --sam facebook/sam3 (or a local copy)")
    predictor = text_predictor(args.sam, refiner=args.refiner, device=args.device, **common)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures, written = [], 0
    for path in images:
        try:
            predictor.set_image(path)
            found = [(f"{path.stem}_{p.label}", p) for t in args.text for p in predictor.predict_text(
                t, score_threshold=args.score_threshold, max_instances=args.max_instances)]
            for base, pr in found:
                write_prediction(out, base, predictor.image, pr, options)
            written += len(found)
        except (DisSamError, OSError, ValueError) as exc:
            failures.append((path, str(exc)))
            log.error("%s: %s", path, exc)
    print(f"dissam predict: {written} mask(s) for {len(images) - len(failures)} image(s) written to {out}")
    for p, msg in failures:
        print(f"  failed: {p}: {msg}")
    return 1 if failures else 0


def _cli_prompts(cli_boxes: list[list[float]], point_texts: list[str]) -> list:
    """``--box`` and ``--point`` -> one :class:`~dissam.points.Prompt` per box, the clicks going with the
    one box (or making a prompt of their own without ``--box``)."""
    from dissam.errors import PointError
    from dissam.points import make_prompt
    from dissam.prompts import parse_point

    if not point_texts:
        return [make_prompt(box=b) for b in cli_boxes]
    if len(cli_boxes) > 1:
        raise PointError(f"--point goes with one --box, but {len(cli_boxes)} were given; give several objects' "
                         "clicks in a --prompts file ({\"box\": [...], \"points\": [[x, y], [x, y, 0]]} per object)")
    points = [parse_point(t) for t in point_texts]
    return [make_prompt(box=cli_boxes[0] if cli_boxes else None, point_coords=[p[:2] for p in points],
                        point_labels=[p[2] for p in points])]


def parse_edit_threshold(text: str) -> float | str | None:
    """``--edit-threshold``: ``auto``, ``none`` or a number in [0, 1)."""
    from dissam.errors import DisSamError

    low = text.strip().lower()
    if low in ("auto", "none"):
        return None if low == "none" else "auto"
    try:
        value = float(low)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise DisSamError(f"--edit-threshold takes auto, none or a number in [0, 1), not {text!r}")
    return value
