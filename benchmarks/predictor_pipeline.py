"""One image, 4 boxes: dissam's predictor versus the authors' pipeline, in one run.

* authors: for every box, SAM ``set_image`` again (their notebook), ``predict(multimask_output=True)``,
  mask 0; then the refiner with autograd on (no ``torch.no_grad``), one box at a time, fp32.
* dissam: ``DisSamPredictor``: one ``set_image``, one batched decoder call, one batched refiner call
  under ``torch.inference_mode()``.

Each mode runs in a fresh subprocess so the peak RSS is its own. SAM has ViT-B sizes with random
weights (timing only); the refiner is the full DIS-SAM ISNetDIS(in_ch=5) at 1024² unless --variant.

Usage: .venv/bin/python benchmarks/predictor_pipeline.py [--boxes 4] [--variant dis-sam] [--size 1024]
Writes benchmarks/results/predictor_pipeline.json (``--out``: elsewhere) with the table ``pipelines``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
from results_io import markdown_table, save


def _sam_vit_b():
    import torch
    from transformers import SamConfig, SamModel

    from dissam.stages.sam import SamStage

    torch.manual_seed(0)
    cfg = SamConfig()  # transformers' defaults are the ViT-B sizes (768 wide, 12 blocks, 12 heads)
    return SamStage(SamModel(cfg).eval(), "cpu", source="random ViT-B")


def _boxes(n: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        out.append([x0, y0, x0 + rng.integers(w // 5, w // 2), y0 + rng.integers(h // 5, h // 2)])
    return np.asarray(out, float)


def _child(mode: str, n_boxes: int, variant: str, size: int) -> dict:
    import torch

    from dissam.models.isnet import build_refiner
    from dissam.predictor import DisSamPredictor
    from dissam.transforms import clean_input, postprocess

    torch.set_num_threads(2)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    boxes = _boxes(n_boxes, *image.shape[:2])
    stage = _sam_vit_b()
    torch.manual_seed(0)
    refiner = build_refiner(variant).eval()
    t0 = time.perf_counter()
    if mode == "authors":
        soft = []
        for b in boxes:
            stage.set_image(image)  # their notebook re-encodes the image for every box
            masks, _, _ = stage.predict(box=b, multimask_output=True)
            x = clean_input(image, masks[0], b, size)[None]
            d1 = refiner(x)[0][0]  # autograd on, as in their valid()/demo
            soft.append(postprocess(d1.detach(), image.shape[:2]).numpy())
        soft = np.stack(soft)
    else:
        pred = DisSamPredictor(stage, refiner, size=size, refiner_batch_size=n_boxes).set_image(image)
        soft = np.stack([r.soft for r in pred.predict(boxes=boxes)])
    seconds = time.perf_counter() - t0
    return {"mode": mode, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "encoder_calls": stage.encoder_calls, "checksum": float(soft.astype(np.float64).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=4)
    ap.add_argument("--variant", default="dis-sam")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--out", help="the results file (default benchmarks/results/predictor_pipeline.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_child(a.child, a.boxes, a.variant, a.size)))
        return
    rows = []
    for mode in ("authors", "dissam"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--boxes", str(a.boxes), "--variant", a.variant,
                              "--size", str(a.size)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    table = []
    for r in rows:
        r["speedup"] = base["seconds"] / r["seconds"]
        r["memory_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
        bold = "**" if r is not base else ""
        table.append([r["mode"], f"{r['seconds']:.1f}", r["encoder_calls"], f"{r['peak_rss_mb']:.0f}",
                      f"{bold}{r['speedup']:.2f}×{bold}", f"{bold}{r['memory_ratio']:.2f}×{bold}"])
    pixels = a.boxes * 768 * 1024
    results = {"boxes": a.boxes, "variant": a.variant, "size": a.size, "pipelines": {r["mode"]: r for r in rows},
               "pixels": pixels, "checksum_diff_per_pixel": abs(rows[0]["checksum"] - rows[1]["checksum"]) / pixels}
    save("predictor_pipeline", results, {"pipelines": markdown_table(
        ["pipeline", "wall time (s)", "SAM encoder passes", "peak RSS (MB)", "speed-up", "memory"], table)},
        out=a.out, notes=f"one 768x1024 image, {a.boxes} boxes, SAM ViT-B sizes (random weights) + refiner "
                         f"{a.variant} at {a.size}², 2 threads, each pipeline in its own process")


if __name__ == "__main__":
    main()
