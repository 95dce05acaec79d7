"""Stage-1 masks alone against the ground truth of generated samples (``dissam.data.synthetic``).

IoU of each stage 1's mask (no refiner) with ``gt > 127`` on samples ``0..N-1`` of ``--seed``, box =
the ground truth's box, and the seconds per box (set_image + coarse_masks) measured in the same run.
With ``--refine`` also the built-in refiner's output on each stage-1 mask: IoU (threshold 0.5) and
MAE of its soft map, next to the stage-1 mask's MAE.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/stage1_generated.py [--n 24] [--size 320] [--refine]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", nargs="+", default=["grabcut", "u2netp"])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--refine", action="store_true", help="also the built-in refiner on each stage-1 mask")
    args = ap.parse_args()

    from dissam.data.synthetic import generate_sample
    from dissam.stages import load_stage1

    stages = {k: load_stage1(k) for k in args.stage1}
    ious = {k: [] for k in stages}
    secs = dict.fromkeys(stages, 0.0)
    refined = {k: [] for k in stages}  # (coarse MAE, refined IoU, refined MAE)
    pred = None
    if args.refine:
        from dissam.predictor import DisSamPredictor

        pred = DisSamPredictor.from_pretrained(sam=None, refiner=None, device="cpu", stage1="none")
    for i in range(args.n):
        image, gt, box = generate_sample(i, seed=args.seed, size=args.size)
        g = gt > 127
        for k, stage in stages.items():
            t = time.perf_counter()
            stage.set_image(image)
            m = stage.coarse_masks(box[None])[0]
            secs[k] += time.perf_counter() - t
            ious[k].append(float((m & g).sum() / max((m | g).sum(), 1)))
            if pred is not None:
                out = pred.set_image(image).predict(box.astype(np.float64), coarse_mask=m)
                r, gf = out.soft > 0.5, gt.astype(np.float32) / 255
                refined[k].append((float(np.abs(m - gf).mean()), float((r & g).sum() / max((r | g).sum(), 1)),
                                   float(np.abs(out.soft - gf).mean())))
    print("| stage 1 | mean IoU | median IoU | IoU < 0.5 | s / box |")
    print("|---|---|---|---|---|")
    for k in stages:
        v = np.array(ious[k])
        print(f"| {k} | {v.mean():.3f} | {np.median(v):.3f} | {(v < 0.5).sum()}/{len(v)} | {secs[k] / len(v):.3f} |")
    if pred is not None:
        print("\n| stage 1 | IoU stage 1 -> refined | MAE stage 1 -> refined | refined IoU better |")
        print("|---|---|---|---|")
        for k in stages:
            v, c = np.array(refined[k]), np.array(ious[k])
            print(f"| {k} | {c.mean():.3f} -> {v[:, 1].mean():.3f} | {v[:, 0].mean():.3f} -> {v[:, 2].mean():.3f} "
                  f"| {(v[:, 1] > c).sum()}/{len(c)} |")
    if len(stages) == 2:
        a, b = (np.array(ious[k]) for k in stages)
        print(f"\n{list(stages)[1]} beats {list(stages)[0]} on {(b > a).sum()} of {len(a)} samples")


if __name__ == "__main__":
    main()
