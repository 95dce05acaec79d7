"""Per-click latency of `dissam app`: the box, then each click, through the app's request path.

Each request goes through ``SegmentationService.predict`` (what ``POST /api/predict`` runs once the
request is checked, without HTTP): stage 1 on the kept image state, the refiner, thresholding, the
cut-out with foreground estimation and five PNGs. The case is an example of the app with a ground
truth (``examples/images/fence_on_bricks.jpg``, 640 x 480, ``examples/gt/``) and its box from
``examples/prompts.json``. Request 1 is the box alone (the image's embedding is computed then);
each next request adds one click where the standard click simulation puts it (``dissam.clicks``:
the deepest error, positive in a miss, negative in a false alarm), sending all the clicks so far, as
the page does. Reported per stage 1: the first request, the median per click (stage 1's part, the
refiner's and the request's total), the IoU with the ground truth before and after the clicks, the
embeddings computed (1: the clicks never re-encode), and the process's peak RSS. Each stage runs in
its own process, one after the other, torch on ``--threads`` threads.

``sam`` has no weights here: ``transformers``' ``SamModel(SamConfig())`` (ViT-B sizes, random
weights: timing only; a click costs SAM's prompt encoder and mask decoder, the same size for ViT-B, L
and H). The refiner is the built-in ``dis-sam-compact`` at its own size unless ``--size``.

Usage: PYTHONPATH=src python benchmarks/app_click_latency.py [--stages u2netp-auto grabcut sam] [--clicks 5]
       [--threads 1] [--size N] [--out benchmarks/results/app_click_latency.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
STAGES = ("u2netp-auto", "grabcut", "sam")
EXAMPLE = "fence_on_bricks"


def predictor_for(kind: str, size: int | None):
    from dissam.predictor import DisSamPredictor

    if kind == "sam":
        import torch
        from transformers import SamConfig, SamModel

        from dissam.stages.sam import SamStage

        torch.manual_seed(0)
        built = DisSamPredictor.from_pretrained(stage1="none", device="cpu", size=size)
        return DisSamPredictor(SamStage(SamModel(SamConfig()).eval()), built.refiner, size=built.size, device="cpu")
    return DisSamPredictor.from_pretrained(stage1=kind, device="cpu", size=size)


def worker(kind: str, clicks: int, threads: int, size: int | None) -> dict:
    import base64

    import cv2
    import torch

    from dissam.app.service import SegmentationService
    from dissam.clicks import next_click
    from dissam.points import Prompt

    torch.set_num_threads(threads)
    image_path = ROOT / "examples" / "images" / f"{EXAMPLE}.jpg"
    gt = cv2.imread(str(ROOT / "examples" / "gt" / f"{EXAMPLE}.png"), cv2.IMREAD_GRAYSCALE) >= 128
    box = json.loads((ROOT / "examples" / "prompts.json").read_text())[f"{EXAMPLE}.jpg"][0]
    p = predictor_for(kind, size)
    service = SegmentationService(p)
    image_id = service.add_image(image_path.read_bytes(), preview=False)["image_id"]
    coords: list[list[float]] = []
    labels: list[int] = []
    rows = []
    for k in range(clicks + 1):
        prompts = None if k == 0 else [Prompt(np.asarray(box, float), np.asarray(coords, float),
                                              np.asarray(labels, np.int64))]
        out = service.predict(image_id, np.asarray([box], float), prompts=prompts)
        r = out["results"][0]
        mask = cv2.imdecode(np.frombuffer(base64.b64decode(r["mask"]), np.uint8), cv2.IMREAD_GRAYSCALE) > 127
        iou = float((mask & gt).sum() / max(1, (mask | gt).sum()))
        t = out["timings"]
        rows.append({"clicks": k, "iou": iou, "stage1_ms": t["embedding_ms"] + t["decoder_ms"],
                     "refiner_ms": t["refiner_ms"], "total_ms": t["total_ms"]})
        click = next_click(mask, gt)
        if click is None:
            break
        coords.append([float(click.x), float(click.y)])
        labels.append(int(click.positive))
    per_click = rows[1:]
    return {"stage1": kind, "image": [int(v) for v in gt.shape], "refiner_size": int(p.size), "requests": rows,
            "first_ms": rows[0]["total_ms"],
            "click_stage1_ms": statistics.median(r["stage1_ms"] for r in per_click),
            "click_refiner_ms": statistics.median(r["refiner_ms"] for r in per_click),
            "click_total_ms": statistics.median(r["total_ms"] for r in per_click),
            "iou_box": rows[0]["iou"], "iou_last": rows[-1]["iou"], "clicks": len(per_click),
            "embeddings": service.embeddings_computed,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=None, help="refiner input size (default: the built-in model's)")
    ap.add_argument("--out", default=None, help="results file (default: benchmarks/results/app_click_latency.json)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.clicks, args.threads, args.size)))
        return
    from results_io import markdown_table, save

    rows = []
    for kind in args.stages:
        cmd = [sys.executable, __file__, "--worker", kind, "--clicks", str(args.clicks), "--threads", str(args.threads)]
        if args.size:
            cmd += ["--size", str(args.size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = markdown_table(
        ["stage 1", "first request (box; embedding) ms", "per click: stage 1 ms", "per click: refiner ms",
         "per click: request ms", "clicks", "IoU box → last click", "embeddings", "peak RSS MiB"],
        [[r["stage1"], f"{r['first_ms']:.0f}", f"{r['click_stage1_ms']:.0f}", f"{r['click_refiner_ms']:.0f}",
          f"{r['click_total_ms']:.0f}", r["clicks"], f"{r['iou_box']:.3f} → {r['iou_last']:.3f}", r["embeddings"],
          r["peak_rss_mib"]] for r in rows], align="lrrrrrlrr")
    notes = (f"{EXAMPLE}.jpg ({rows[0]['image'][1]}x{rows[0]['image'][0]}), refiner at {rows[0]['refiner_size']}², "
             f"{args.threads} torch thread(s); per click = median over the clicks; sam = random ViT-B weights "
             "(timing only, its IoU means nothing)")
    save("app_click_latency", {"rows": rows, "clicks": args.clicks, "threads": args.threads},
         {"per_click": table}, notes=notes, out=args.out)


if __name__ == "__main__":
    main()
