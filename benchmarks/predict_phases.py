"""Where a one-image ``dissam predict`` process spends its time: import, loading, ONNX Runtime sessions,
the SAM encoder, the decoder, the refiner, writing.

Runs the predictor the way the command does (``DisSamPredictor.from_pretrained`` then ``set_image`` and
``predict``) with wall-clock timers around each phase, in this process, for one backend/precision.

    PYTHONPATH=src python benchmarks/predict_phases.py --sam SAM_FOLDER --refiner REFINER.safetensors \\
        --backend onnx --precision fp32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

T0 = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sam", required=True)
    ap.add_argument("--refiner", required=True)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    phases: dict[str, float] = {}
    t = time.perf_counter()
    import numpy as np
    import torch

    from dissam.predictor import DisSamPredictor

    torch.set_num_threads(args.threads)
    phases["import torch + dissam"] = time.perf_counter() - t
    t = time.perf_counter()
    p = DisSamPredictor.from_pretrained(sam=args.sam, refiner=args.refiner, device="cpu", backend=args.backend,
                                        precision=args.precision)
    phases["load SAM + refiner (+ SAM encoder session)"] = time.perf_counter() - t
    t = time.perf_counter()
    _ = p.refiner_runner
    phases["refiner runner (session / layout)"] = time.perf_counter() - t
    img = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    p.set_image(img)
    box = np.array([[100.0, 80.0, 540.0, 420.0]])
    t = time.perf_counter()
    p.sam_stage.set_image(img)
    p._sam_ready = True
    phases["SAM image encoder (first call)"] = time.perf_counter() - t
    t = time.perf_counter()
    coarse = p.coarse_masks(box)
    phases["SAM decoder"] = time.perf_counter() - t
    t = time.perf_counter()
    soft = p.refine(coarse, box)
    phases["refiner (first call, incl. input pipeline)"] = time.perf_counter() - t
    t = time.perf_counter()
    from dissam.io import write_png

    write_png("/tmp/_phases_mask.png", (soft[0] > 0.5).astype("uint8") * 255)
    phases["write"] = time.perf_counter() - t
    phases["total since start"] = time.perf_counter() - T0
    print(json.dumps({"backend": args.backend, "precision": args.precision, "phases_s": phases}, indent=1))


if __name__ == "__main__":
    main()
