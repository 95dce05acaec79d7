"""Zoomed refinement (``--zoom``) against the paper's whole-image path on generated high-resolution scenes.

Each scene is a ``--long-side`` x 2/3 photograph (textured background) with one object whose side is
a fraction ``--ratios`` of the image's shorter side: a soft-edged disk with strands one pixel wide
(:func:`dissam.matting.synthetic_composite`), so that at the refiner's resolution the strands are
sub-pixel. Ground truth: the object's alpha ``>= 0.5``. The coarse mask stands in for stage 1's
low-resolution mask: the ground truth reduced to 1/8 of the box's size and scaled back (blocky, the
strands lost). Box: the object's bounding box. Refiner: the built-in model (its default runtime and
edit threshold). Both paths get the same coarse mask and box; each path's soft map is scored at full
resolution with the paper's maxFm, HCE and mBIoU (:class:`dissam.metrics.MetricSuite`), per ratio,
over ``--seeds`` scenes; seconds are the refine step's (stage 1 is not run), after one warm-up call.

Usage:  PYTHONPATH=src python benchmarks/zoom_scenes.py --long-side 4000 --ratios 0.05,0.1,0.2,0.4 --seeds 2
        PYTHONPATH=src python benchmarks/zoom_scenes.py --long-side 600 --ratios 0.2 --seeds 1 --out /tmp/z.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scene(long_side: int, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(image HxWx3 uint8, gt HxW uint8 0/255, coarse HxW bool, box XYXY inclusive)``."""
    from dissam.matting import synthetic_composite

    rng = np.random.default_rng(seed)
    w, h = long_side, int(round(long_side * 2 / 3))
    side = max(32, int(round(ratio * h)))
    noise = cv2.resize(rng.random((h // 40 + 2, w // 40 + 2), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.random((h, w), dtype=np.float32) * 0.15
    bg = np.stack([0.3 + 0.4 * noise + fine, 0.45 + 0.2 * noise, 0.5 - 0.3 * noise + fine], axis=2)
    obj = synthetic_composite(side, side, seed=seed)
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    a = obj["alpha"][..., None]
    patch = bg[y0:y0 + side, x0:x0 + side]
    bg[y0:y0 + side, x0:x0 + side] = a * obj["fg"] + (1 - a) * patch
    image = np.clip(np.rint(bg * 255), 0, 255).astype(np.uint8)
    gt = np.zeros((h, w), np.uint8)
    gt[y0:y0 + side, x0:x0 + side] = (obj["alpha"] >= 0.5) * 255
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)
    bx0, by0, bx1, by1 = box.astype(int)
    crop = gt[by0:by1 + 1, bx0:bx1 + 1]
    small = cv2.resize(crop, (max(1, crop.shape[1] // 8), max(1, crop.shape[0] // 8)), interpolation=cv2.INTER_AREA)
    coarse = np.zeros((h, w), bool)
    coarse[by0:by1 + 1, bx0:bx1 + 1] = cv2.resize(small, crop.shape[::-1], interpolation=cv2.INTER_LINEAR) >= 128
    return image, gt, coarse, box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long-side", type=int, default=4000)
    ap.add_argument("--ratios", default="0.05,0.1,0.2,0.4", help="object side / image shorter side")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--margin", type=float, default=0.25, help="the zoom margin")
    ap.add_argument("--out", default=None, help="results file (default benchmarks/results/zoom_scenes.json)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from results_io import markdown_table, save

    from dissam.metrics import MetricSuite
    from dissam.predictor import DisSamPredictor

    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    whole = DisSamPredictor.from_pretrained(stage1="none", device="cpu")
    zoomed = DisSamPredictor.from_pretrained(stage1="none", device="cpu", zoom=args.margin)
    warm_image, _, warm_coarse, warm_box = scene(400, 0.3, 99)
    for p in (whole, zoomed):  # the refiner's session and first call are not what this times
        p.set_image(warm_image).predict(warm_box, coarse_mask=warm_coarse)
    metrics = ("maxFm", "HCE", "mBIoU")
    results: dict = {"settings": vars(args), "refiner_input_size": whole.size, "by_ratio": {}}
    rows = []
    for ratio in ratios:
        suites = {"whole image": MetricSuite(metrics), f"zoom {args.margin:g}": MetricSuite(metrics)}
        seconds = {k: 0.0 for k in suites}
        for seed in range(args.seeds):
            image, gt, coarse, box = scene(args.long_side, ratio, seed)
            for (label, suite), p in zip(suites.items(), (whole, zoomed)):
                p.set_image(image)
                t = time.perf_counter()
                soft = p.predict(box, coarse_mask=coarse).soft
                seconds[label] += time.perf_counter() - t
                suite.step(np.clip(np.rint(soft * 255), 0, 255).astype(np.uint8), gt, f"{ratio}-{seed}")
        results["by_ratio"][str(ratio)] = {}
        for label, suite in suites.items():
            r = suite.results()
            r["seconds_per_image"] = seconds[label] / args.seeds
            results["by_ratio"][str(ratio)][label] = r
            rows.append([f"{ratio:g}", label, f"{r['maxFm']:.3f}", f"{r['HCE']:.0f}", f"{r['mBIoU']:.3f}",
                         f"{r['seconds_per_image']:.2f}"])
    h = int(round(args.long_side * 2 / 3))
    table = markdown_table(["object side / image side", "path", "maxFm ↑", "HCE ↓", "mBIoU ↑", "refine s"], rows)
    save("zoom_scenes", results, {"zoom_scenes": table},
         notes=f"{args.long_side}x{h} scenes, {args.seeds} per ratio; built-in refiner at {whole.size}²; coarse mask = "
               "ground truth at 1/8 of the box's size, scaled back", out=args.out)


if __name__ == "__main__":
    main()
