"""``dissam predict``: boxes in, hair-fine masks and cut-outs out."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from dissam.choices import BOX_FORMATS, MASK_SELECTIONS, POINT_SELECTIONS
from dissam.commands.engine_flags import add_engine_arguments, ray_options_from_args
from dissam.commands.weights import (
    add_runtime_arguments,
    add_weight_arguments,
    precision_from_args,
    predictor_from_args,
    stage1_from_args,
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
image (schema: docs/prompts.md; rembg-style rectangle entries are accepted). Coordinates are
pixels of the image as displayed (EXIF orientation applied), XYXY by default.

Clicks: --point X,Y (on the object) or --point X,Y,0 (not on the object), repeatable; they go with
the one --box, or make a prompt of clicks alone without --box. Per image and per object in the
prompts file: {"box": [x0, y0, x1, y1], "points": [[x, y], [x, y, 0]]} or {"points": [...]}
(docs/clicks.md). SAM-like stages take the clicks in their prompt encoder; GrabCut and U²-Netp take
them as sure-foreground / sure-background discs.

Without --refiner the built-in refiner is used; without --sam the bundled U²-Netp stage 1 (--stage1
u2netp-auto: GrabCut's edges where they separate the object's colours better, GrabCut where U²-Netp
finds nothing in a box; lower quality than SAM; --coarse grabcut for GrabCut alone).

Inputs: PNG, JPEG, TIFF, WebP, BMP and GIF (first frame), recognised from the file's first bytes
before any decoder runs (a folder is searched for those extensions); other files are reported as
"unsupported format". DISSAM_IMAGE_FORMATS=PPM,TGA (Pillow format names) or DISSAM_IMAGE_FORMATS=all
lets Pillow decode more. A malformed prompts file (not JSON, nesting, non-finite or 400-digit numbers,
wrong types) stops the run before any work with a message naming the file and the entry. One failing
image is reported and the others continue.

Exit status: 0 every image done; 1 an error, or some images failed (listed at the end); 2 bad usage;
130 interrupted (Ctrl+C); 143 terminated (SIGTERM). Outputs are written atomically: an interrupted or
killed run never leaves half-written files under their final names, and the next run in the same
folder removes the temporary files (.NAME.dissam-tmp-HOST-PID) a killed run left.

Runs over folders are resumable: an image whose outputs a previous run finished (with the same
weights, flags and boxes) is skipped (--overwrite redoes it). Under torchrun (or with RANK and
WORLD_SIZE set) each process takes its share of the images and its GPU from LOCAL_RANK:
  torchrun --nproc-per-node 4 -m dissam predict photos/ --prompts boxes.json -o out
With --engine ray the job runs on Ray Data (pip install 'dissam[ray]'): CPU tasks read and decode, an
actor pool runs the models (--ray-actors, --ray-gpus-per-actor), lost workers are retried, and images,
prompts and outputs may be URIs (s3://, gs://, ...); same files, same resume rules:
  dissam predict s3://shop/photos --prompts s3://shop/boxes.json -o s3://shop/masks --engine ray \
      --ray-address auto --ray-actors 8 --ray-gpus-per-actor 1

Backends: on a CPU at fp32 the networks read from weights files run on ONNX Runtime by default (the
fastest lossless path there; graphs exported once per weights file, cached next to it or under
~/.cache/dissam, and reused by every later run; needs onnx, pip install 'dissam[onnx]'), else torch;
--backend torch or onnx forces one (DISSAM_BACKEND too); --precision fp32 (default), bf16 (torch), int8 (onnx: the
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
                        "none: the raw refined map); docs/builtin-model.md")
    p.add_argument("--mask-selection", choices=MASK_SELECTIONS, default="first",
                   help="which SAM mask feeds the refiner (authors: first of the 3 multimask outputs)")
    p.add_argument("--point-selection", choices=POINT_SELECTIONS, default="auto",
                   help="which SAM mask feeds the refiner for prompts with clicks (auto: the best of 3 for one "
                        "click alone, the single output otherwise)")
    p.add_argument("--size", type=int, default=None, help="refiner input size (default: from the checkpoint, else 1024)")
    p.add_argument("--zoom", type=float, nargs="?", const=0.25, default=None, metavar="MARGIN",
                   help="refine a crop around each box (the box widened by MARGIN x its size on each side, "
                        "default 0.25) at the refiner's resolution and paste it back: for small objects in big "
                        "images (default: off, the paper's whole-image input)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    add_runtime_arguments(p, dtype_alias=True)
    p.add_argument("--overwrite", action="store_true", help="redo images that a previous run finished")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_engine_arguments(p, refine_batch=True)


def run(args: argparse.Namespace) -> int:
    from dissam.batch_predict import OutputOptions, predict_images
    from dissam.engines.inputs import BoxSource, expand_inputs
    from dissam.prompts import parse_box
    from dissam.sharding import device_for_rank, dist_env

    cli_boxes = [parse_box(b) for b in args.box]
    cli_prompts = _cli_prompts(cli_boxes, args.point)
    prompts = _load_prompts_anywhere(args.prompts) if args.prompts else None
    with_points = bool(args.point) or any(p.has_points for entries in (prompts or {}).values() for p in entries)
    images = expand_inputs(args.images)
    threshold: float | str = "otsu" if args.threshold.lower() == "otsu" else float(args.threshold)
    precision = precision_from_args(args)
    common = dict(size=args.size, threshold=threshold, mask_selection=args.mask_selection, backend=args.backend,
                  **({"zoom": args.zoom} if args.zoom is not None else {}),
                  precision=precision, edit_threshold=parse_edit_threshold(args.edit_threshold))
    options = OutputOptions(soft=args.soft, rgba=args.rgba, overlay=args.overlay, coarse=args.save_coarse,
                            estimate_fg=not args.no_fg_estimation)
    if args.text:
        if args.engine != "local":
            from dissam.errors import DisSamError

            raise DisSamError("--text runs on the local engine only")
        return _run_text(args, [Path(p) for p in images], cli_boxes + args.point, prompts, common, options)
    settings = {
        "model": args.model, "sam": args.sam, "refiner": args.refiner, "coarse": args.coarse or "sam", "stage1": args.stage1,
        "size": args.size, "threshold": str(threshold), "mask_selection": args.mask_selection,
        "backend": args.backend or "default", "precision": precision or "fp32",
        "fg_estimation": not args.no_fg_estimation, "edit_threshold": args.edit_threshold,
        **({"zoom": args.zoom} if args.zoom is not None else {}),  # absent when off: earlier runs' markers hold
    }
    if with_points:  # only then, so that box-only runs keep their done markers
        common["point_selection"] = settings["point_selection"] = args.point_selection
    box_source = BoxSource(_boxes_only(prompts), cli_boxes, args.full_image_box, args.box_format)
    from dissam.errors import DisSamError

    if args.engine == "ray":
        if with_points:
            raise DisSamError("clicks (--point, \"points\" in --prompts) run on the local engine only; drop "
                              "--engine ray or the clicks")
        return _run_ray(args, images, box_source, common, options, settings)
    from dissam.engines.storage import is_uri

    if any(is_uri(x) for x in [*images, args.out]):
        raise DisSamError("URIs (s3://, gs://, ...) for images or -o need --engine ray; the local engine reads and "
                          "writes local folders")
    env = dist_env()
    device = device_for_rank(args.device, env)  # cuda:LOCAL_RANK under torchrun

    def build():
        return predictor_from_args(args, device=str(device), **common)

    def boxes_for(path: Path, hw: tuple[int, int]):
        if with_points:
            return _prompts_for(path, hw, prompts, cli_prompts, args)
        return box_source.boxes(str(path), hw)

    summary = predict_images(build, [Path(p) for p in images], args.out, boxes_for, options=options,
                             settings=settings, overwrite=args.overwrite, env=env, progress=not args.no_progress)
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    print(f"dissam predict{env.tag()}: {summary.masks} mask(s) for {summary.done} image(s) written to "
          f"{args.out}{skipped}")
    if summary.failures:
        print(f"dissam predict{env.tag()}: {len(summary.failures)} image(s) failed:")
        for p, msg in summary.failures:
            print(f"  {p}: {msg}")
        return 1
    return 0


def _load_prompts_anywhere(location: str) -> dict:
    """:func:`dissam.prompts.load_prompt_file` (boxes and clicks) for a path or a URI (read through the
    engine's storage) -> ``{key: [Prompt, ...]}``."""
    from dissam.engines.storage import is_uri, read_uri_bytes
    from dissam.prompts import load_prompt_file

    if not is_uri(location):
        return load_prompt_file(location)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(location).name
        local.write_bytes(read_uri_bytes(location))
        return load_prompt_file(local)


def _boxes_only(prompts: dict | None) -> dict | None:
    """``{key: [Prompt, ...]}`` -> ``{key: [box, ...]}`` for the box-only path (a job with clicks
    goes through :func:`_prompts_for` instead)."""
    if prompts is None:
        return None
    return {k: [p.box.tolist() for p in entries if p.box is not None] for k, entries in prompts.items()}


def _prompts_for(path: Path, hw: tuple[int, int], prompts: dict | None, cli_prompts: list, args) -> list:
    """An image's prompts when the job has clicks: :class:`~dissam.points.Prompt` objects with XYXY
    boxes (or none) and the clicks as given; the whole image's box with ``--full-image-box`` when the
    image has no prompt."""
    from dissam.boxes import as_boxes
    from dissam.engines.inputs import whole_image_box
    from dissam.errors import DisSamError
    from dissam.points import Prompt
    from dissam.prompts import prompts_for_image

    found = prompts_for_image(path, prompts, cli_prompts)
    if not found:
        if not args.full_image_box:
            raise DisSamError("no box given for this image (use --box, --point, --prompts or --full-image-box)")
        return [Prompt(whole_image_box(hw)[0])]
    return [Prompt(None if p.box is None else as_boxes(p.box, args.box_format)[0], p.point_coords, p.point_labels)
            for p in found]


def _run_ray(args: argparse.Namespace, images: list[str], box_source, common: dict, options, settings: dict) -> int:
    """``--engine ray``: the same job on Ray Data (:mod:`dissam.engines.ray_predict`)."""
    from dissam.engines.ray_predict import FAILURES_FILE, PredictJob, run_predict

    job = PredictJob(predictor=dict(sam=args.sam, refiner=args.refiner, model=args.model,
                                    stage1=stage1_from_args(args), **common),
                     device=args.device, out=args.out, options=options, settings=settings,
                     overwrite=args.overwrite)
    summary = run_predict(images, box_source, job, ray_options_from_args(args), progress=not args.no_progress)
    print(summary.line())
    print(f"dissam predict [ray]: per image, summed over workers: {summary.stages()}")
    if summary.failures:
        print(f"dissam predict [ray]: {len(summary.failures)} image(s) failed (listed in {args.out}/{FAILURES_FILE}):")
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
    from dissam.utils import remove_stale_temp_files

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)  # left by a killed run
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
