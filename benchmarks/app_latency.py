"""`dissam app`: the first box on an image vs the next boxes (the SAM embedding is kept per image).

Runs the app's own request path (:class:`dissam.app.service.SegmentationService`: decode the upload,
keep per-image predictor state, predict, threshold, cut-out with foreground estimation, PNG
encoding) without HTTP, in one process:

1. image A, box 1: decode + SAM image embedding + decoder + refiner + outputs (the first box);
2. image A, boxes 2..N: decoder + refiner + outputs (the embedding is kept);
3. image B, box 1 (a second embedding), then image A again: its kept embedding is restored.

SAM has ViT-B sizes with random weights (timing only; see docs/benchmarks.md); the refiner is the
built-in dis-sam-compact at its 384² input unless --refiner-variant/--size say otherwise.

Usage: .venv/bin/python benchmarks/app_latency.py [--boxes 4] [--image examples/images/fence_on_bricks.jpg]
Writes benchmarks/results/app_latency.json (``--out``: elsewhere) with the table ``steps``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
from results_io import markdown_table, save

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=4)
    ap.add_argument("--image", default=str(ROOT / "examples" / "images" / "fence_on_bricks.jpg"))
    ap.add_argument("--other", default=str(ROOT / "examples" / "images" / "tree_on_coffee.jpg"))
    ap.add_argument("--out", help="the results file (default benchmarks/results/app_latency.json)")
    args = ap.parse_args()

    import torch
    from transformers import SamConfig, SamModel

    from dissam.app.service import SegmentationService
    from dissam.hub.loading import load_refiner
    from dissam.predictor import BUILTIN_REFINER, DisSamPredictor
    from dissam.stages.sam import SamStage

    torch.manual_seed(0)
    stage = SamStage(SamModel(SamConfig()).eval(), "cpu", source="random ViT-B")
    refiner = load_refiner(BUILTIN_REFINER, device="cpu")
    predictor = DisSamPredictor(stage, refiner, size=384)
    service = SegmentationService(predictor)
    a_bytes, b_bytes = Path(args.image).read_bytes(), Path(args.other).read_bytes()
    a = service.add_image(a_bytes, preview=False)
    h, w = a["height"], a["width"]
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(args.boxes + 1):
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        boxes.append([x0, y0, x0 + int(rng.integers(w // 5, w // 2)), y0 + int(rng.integers(h // 5, h // 2))])

    rows = []

    def run(label, image_id, box):
        out = service.predict(image_id, [box])
        t = out["timings"]
        rows.append({"step": label, "embedding_kept": out["embedding_cached"], **t})
        print(json.dumps(rows[-1]), flush=True)

    run("image A, box 1 (first)", a["image_id"], boxes[0])
    for k in range(1, args.boxes):
        run(f"image A, box {k + 1}", a["image_id"], boxes[k])
    b = service.add_image(b_bytes, preview=False)
    run("image B, box 1 (first)", b["image_id"], boxes[0])
    run("image A again, new box", a["image_id"], boxes[args.boxes])
    first = [r["total_ms"] for r in rows if not r["embedding_kept"]]
    later = [r["total_ms"] for r in rows if r["embedding_kept"]]
    table = [[r["step"], "yes" if r["embedding_kept"] else "no"]
             + [f"{r[k]:.0f} ms" for k in ("embedding_ms", "decoder_ms", "refiner_ms", "cutout_ms", "encode_ms", "total_ms")]
             for r in rows]
    results = {"image_wh": [w, h], "boxes": args.boxes, "encoder_calls": stage.encoder_calls, "rows": rows,
               "first_box_s": statistics.median(first) / 1000, "first_box_n": len(first),
               "next_box_s": statistics.median(later) / 1000, "next_box_n": len(later),
               "ratio": statistics.median(first) / statistics.median(later)}
    save("app_latency", results, {"steps": markdown_table(
        ["step", "embedding kept", "SAM embedding", "decoder", "refiner", "cut-out", "PNG encoding", "total"], table,
        "llrrrrrr")}, out=args.out,
        notes=f"SAM with ViT-B sizes (random weights), the built-in refiner at 384²; image A {Path(args.image).name}, "
              f"image B {Path(args.other).name} ({w}x{h}); SAM encoder calls: {stage.encoder_calls} for {len(rows)} boxes")


if __name__ == "__main__":
    main()
