"""Weight-free stage 1s on a large photograph: GrabCut at full size vs on a copy of at most 1024 px
(what ``GrabCutStage`` does) vs U²-Netp vs U²-Netp + GrabCut (``u2netp-grabcut``) vs the offline default (``u2netp-auto``), side by side in one run, with the IoU of each mask against
full-size GrabCut's.

The image is a photo-like generated sample (``dissam synth --style photo``, scikit-image's photo bank)
upscaled to about ``--megapixels`` MP; one box, the target's.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/stage1_large_image.py [--megapixels 3]

Writes benchmarks/results/stage1_large_image.json (``--out``: elsewhere) with the table ``stages``
and, under ``results``, the seconds, ratios and IoUs per stage 1.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from results_io import markdown_table, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", help="the results file (default benchmarks/results/stage1_large_image.json)")
    args = ap.parse_args()

    from dissam.coarse import grabcut_mask, mask_iou
    from dissam.data.synthetic import generate_photo_style_sample
    from dissam.stages.u2netp import load_u2netp

    image, _, box = generate_photo_style_sample(3, 21, (), (480, 640))
    s = (args.megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5
    big = cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
    big_box = np.minimum(box * s, [big.shape[1] - 1, big.shape[0] - 1] * 2)
    from dissam.stages.u2netp import GRABCUT_MIN_GAIN

    u2, u2_grabcut = load_u2netp(threads=1), load_u2netp(threads=1, grabcut=True)
    u2_auto = load_u2netp(threads=1, grabcut=True, grabcut_min_gain=GRABCUT_MIN_GAIN)

    def run_stage(stage, img, b):
        stage.set_image(img)
        return stage.coarse_masks(b[None])[0].astype(np.uint8) * 255

    runs = {
        "grabcut, full size": lambda: grabcut_mask(big, big_box),
        "grabcut, copy of <= 1024 px": lambda: grabcut_mask(big, big_box, max_side=1024),
        "u2netp": lambda: run_stage(u2, big, big_box),
        "u2netp-grabcut": lambda: run_stage(u2_grabcut, big, big_box),
        "u2netp-auto": lambda: run_stage(u2_auto, big, big_box),
    }
    masks, times = {}, {}
    for name, fn in runs.items():
        best = float("inf")
        for _ in range(args.reps):
            t = time.perf_counter()
            masks[name] = fn()
            best = min(best, time.perf_counter() - t)
        times[name] = best
    ref = masks["grabcut, full size"]
    labels = {"grabcut, full size": "GrabCut, full size", "grabcut, copy of <= 1024 px": "GrabCut, copy of ≤ 1024 px",
              "u2netp": "U²-Netp", "u2netp-grabcut": "U²-Netp + GrabCut (`--stage1 u2netp-grabcut`)",
              "u2netp-auto": "U²-Netp auto (`u2netp-auto`, the offline default)"}
    results = {"image_wh": [big.shape[1], big.shape[0]], "reps": args.reps, "stages": {
        name: {"s": times[name], "vs_full_grabcut": times[name] / times["grabcut, full size"],
               "iou_vs_full_grabcut": float(mask_iou(masks[name], ref))} for name in runs}}
    results["auto_over_u2netp"] = times["u2netp-auto"] / times["u2netp"]
    rows = [[labels[name], f"{r['s']:.2f}", f"{r['vs_full_grabcut']:.3f}×", f"{r['iou_vs_full_grabcut']:.3f}"]
            for name, r in results["stages"].items()]
    table = markdown_table(["stage 1", "seconds", "vs full-size GrabCut", "IoU with full-size GrabCut's mask"], rows)
    save("stage1_large_image", results, {"stages": table}, out=args.out,
         notes=f"image {big.shape[1]}x{big.shape[0]} ({big.shape[0] * big.shape[1] / 1e6:.1f} MP), one box, "
               f"best of {args.reps}")

if __name__ == "__main__":
    main()
