"""``dissam video``: one box (or phrase) on one frame in, a hair-fine mask for every frame out."""

from __future__ import annotations

import argparse
from pathlib import Path

from dissam.commands.weights import add_runtime_arguments, add_stage1_arguments, precision_from_args

HELP = "segment one object through a video from a box or text on one frame (resumable)"
DESCRIPTION = """\
Track the object through the clip with stage 1 (SAM 2.1 / SAM 3 video models, or any image stage
re-prompted per frame), refine every frame with the DIS-SAM refiner, and write to OUT/:
  masks/000000.png ...   binary masks, one per frame (0/255)
  alpha/000000.png ...   8-bit refined soft maps
  coarse/000000.png ...  the stage-1 masks
  STEM_alpha.mp4         the soft maps as a grey video (H.264)
  STEM_cutout.webm       the frames with the soft map as transparency (VP9 with alpha)

The prompt is --box x0,y0,x1,y1 (pixels of frame --frame, XYXY) or --text PHRASE (SAM 3 finds the
best instance on that frame). Frames after --frame are tracked forward, those before it backward.
Run the same command again to resume after an interruption: written frames are kept.
Needs PyAV: pip install 'dissam[video]'. See docs/video.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="the clip (.mp4, .mov, .webm, ...)")
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="box around the object on frame --frame")
    p.add_argument("--text", metavar="PHRASE", help="text prompt instead of a box (SAM 3)")
    p.add_argument("--frame", type=int, default=0, help="the frame the prompt refers to (default 0)")
    p.add_argument("-o", "--out", default=None, help="output folder (default: STEM_dissam next to the clip)")
    add_stage1_arguments(p)  # sam2/sam3 video checkpoints propagate; every other stage re-prompts per frame
    p.add_argument("--text-model", help="--text: SAM 3 detector weights (default: --sam)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="--text: minimum SAM 3 score")
    p.add_argument("--refiner", help="refiner checkpoint; default: built-in")
    p.add_argument("--size", type=int, default=None, help="refiner input size (default: from the checkpoint)")
    p.add_argument("--batch-size", type=int, default=4, help="frames per refiner call (default 4)")
    p.add_argument("--threshold", default="0.5", help="probability threshold for the masks, or 'otsu'")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    add_runtime_arguments(p, dtype_alias=True)
    p.add_argument("--no-videos", action="store_true", help="write the PNG sequences only")


def run(args: argparse.Namespace) -> int:
    from dissam.errors import DisSamError
    from dissam.predictor import DisSamPredictor
    from dissam.prompts import parse_box
    from dissam.stages.registry import log_offline_default, resolve_stage
    from dissam.video.pipeline import segment_video
    from dissam.video.trackers import load_tracker

    if (args.box is None) == (args.text is None):
        raise DisSamError("give exactly one prompt: --box x0,y0,x1,y1 or --text PHRASE")
    box = parse_box(args.box) if args.box else None
    video = Path(args.video)
    out = Path(args.out) if args.out else video.with_name(f"{video.stem}_dissam")
    threshold: float | str = "otsu" if args.threshold.lower() == "otsu" else float(args.threshold)
    kind = resolve_stage(args.stage1, args.sam)  # without --sam: the offline default, as everywhere
    if args.stage1 in (None, "auto") and args.sam is None:
        log_offline_default(kind)
    text_model = None
    if args.text:
        text_model = args.text_model or args.sam
        if not text_model:
            raise DisSamError("--text needs SAM 3 weights: --text-model facebook/sam3 (or --sam)")
    # the refiner's predictor; stage 1 is the tracker
    predictor = DisSamPredictor.from_pretrained(refiner=args.refiner, device=args.device, stage1="none",
                                                text_model=text_model, size=args.size, threshold=threshold,
                                                backend=args.backend, precision=precision_from_args(args))
    tracker = load_tracker(kind, args.sam, predictor.device, backend=args.backend,
                           precision=precision_from_args(args))
    res = segment_video(video, out, predictor, tracker, box=box, text=args.text, frame=args.frame,
                        batch_size=args.batch_size, write_videos=not args.no_videos,
                        score_threshold=args.score_threshold)
    print(f"dissam video: {res.frames} frame(s) in {res.folder} ({res.computed} computed, {res.skipped} already "
          f"there){'; videos: ' + res.alpha_video.name + ', ' + res.cutout_video.name if res.alpha_video else ''}")
    return 0
