"""Per-click latency in Python: stage 1 on the kept image embedding + the refiner, for each stage 1.

What a click costs once the image is encoded (``DisSamPredictor`` keeps stage 1's embedding): stage
1's decoder (SAM-like stages) or seeded segmentation (GrabCut, U²-Netp) through
``predictor.prompt_masks``, then ``refiner_boxes`` + ``refine`` + ``binarize``: the two steps the app
times as ``decoder_ms`` and ``refiner_ms``.

Case: scikit-image's ``coffee`` photograph upscaled 2x (1200 x 800) with the hand-made mask of the
cup, saucer and spoon (``examples/real_masks/``), the whole-GT box, then ``--clicks`` simulated
corrective clicks (``dissam.clicks``: forced to go on to that number), each with the previous
low-resolution logits as ``mask_input`` for SAM-like stages. Reported per stage: the first call
(box alone, image encoder included), the median stage-1 and refiner time over the clicks (after the
first click, a warm-up), and the process's peak RSS. Each stage runs in its own process, torch on
``--threads`` threads, one after the other.

SAM-like stages have no weights here: they are built with ``transformers``' default full-size
configs and random weights (time does not depend on the weights): ``sam`` = ``SamModel(SamConfig())``
(ViT-B; the prompt encoder and mask decoder are the same size for ViT-B, L and H, so a click costs
the same), ``sam2`` = ``Sam2Model(Sam2Config())`` (Hiera tiny; SAM 2.1's decoder is the same for
every size). The refiner is the built-in ``dis-sam-compact`` at its 384²; ``--size 1024`` times it at
the paper's size.

Usage: PYTHONPATH=src python benchmarks/click_latency.py [--stages u2netp-auto grabcut sam sam2] [--clicks 6]
       [--threads 1] [--size 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("u2netp-auto", "grabcut", "sam", "sam2")


def case() -> tuple[np.ndarray, np.ndarray]:
    """The coffee photograph upscaled 2x and its hand-made mask (bool), same size."""
    import cv2

    sys.path.insert(0, str(ROOT / "examples"))
    from make_real_masks import load_photo

    image = load_photo("coffee")
    gt = cv2.imread(str(ROOT / "examples" / "real_masks" / "coffee_cup_saucer_spoon.png"), cv2.IMREAD_GRAYSCALE)
    size = (image.shape[1] * 2, image.shape[0] * 2)
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), cv2.resize(gt, size, cv2.INTER_NEAREST) >= 128


def predictor_for(kind: str, size: int | None):
    import torch

    from dissam.predictor import DisSamPredictor

    if kind in ("sam", "sam2"):
        torch.manual_seed(0)
        if kind == "sam":
            from transformers import SamConfig, SamModel

            from dissam.stages.sam import SamStage

            stage = SamStage(SamModel(SamConfig()).eval())
        else:
            from transformers import Sam2Config, Sam2Model

            from dissam.stages.sam2 import PromptableStage

            stage = PromptableStage(Sam2Model(Sam2Config()).eval())
        built = DisSamPredictor.from_pretrained(stage1="none", refiner=None, device="cpu", size=size)
        return DisSamPredictor(stage, built.refiner, size=built.size, device="cpu")
    return DisSamPredictor.from_pretrained(stage1=kind, refiner=None, device="cpu", size=size)


def worker(kind: str, clicks: int, threads: int, size: int | None) -> dict:
    import resource

    import torch

    from dissam.clicks import simulate
    from dissam.paper_tables.protocol import whole_gt_box
    from dissam.points import make_prompt

    torch.set_num_threads(threads)
    image, gt = case()
    box, _ = whole_gt_box(gt.astype(np.uint8) * 255)
    p = predictor_for(kind, size)
    p.set_image(image)
    times: list[tuple[float, float]] = []

    def segment(coords, labels, previous):
        prompt = make_prompt(box, coords if len(coords) else None, labels if len(labels) else None, previous)
        t0 = time.perf_counter()
        stage_out = p.prompt_masks([prompt])
        t1 = time.perf_counter()
        boxes = p.refiner_boxes([prompt], stage_out.masks)
        mask = p.binarize(p.refine(stage_out.masks, boxes))[0]
        times.append((t1 - t0, time.perf_counter() - t1))
        return mask, stage_out.masks[0], stage_out.low_res_logits[0]

    trace = simulate(segment, gt, max_clicks=clicks, min_clicks=clicks, stop_iou=2.0)
    steady = np.array(times[2:]) if len(times) > 2 else np.array(times[1:])
    return {"stage1": kind, "image": list(image.shape[:2]), "refiner_size": int(p.size),
            "first_s": sum(times[0]), "clicks": len(trace.clicks),
            "stage1_ms": float(np.median(steady[:, 0]) * 1e3), "refiner_ms": float(np.median(steady[:, 1]) * 1e3),
            "click_ms": float(np.median(steady.sum(axis=1)) * 1e3),
            "iou_start": float(trace.ious[0]), "iou_last": float(trace.ious[len(trace.clicks)]),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--clicks", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=None, help="refiner input size (default: the built-in model's)")
    ap.add_argument("--json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.clicks, args.threads, args.size)))
        return
    rows = []
    for kind in args.stages:
        cmd = [sys.executable, __file__, "--worker", kind, "--clicks", str(args.clicks), "--threads", str(args.threads)]
        if args.size:
            cmd += ["--size", str(args.size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| stage 1 | first call (box, encoder included) s | stage 1 per click ms | refiner per click ms "
          "| click ms | IoU box -> last click | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['stage1']} | {r['first_s']:.2f} | {r['stage1_ms']:.0f} | {r['refiner_ms']:.0f} | {r['click_ms']:.0f} "
              f"| {r['iou_start']:.3f} -> {r['iou_last']:.3f} | {r['peak_rss_mib']:.0f} |")
    print(f"(image {rows[0]['image'][1]}x{rows[0]['image'][0]}, refiner at {rows[0]['refiner_size']}², "
          f"{args.clicks} clicks, median after the first, {args.threads} torch thread(s))")
    if args.json:
        from dissam.utils import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(rows, indent=1).encode())


if __name__ == "__main__":
    main()
