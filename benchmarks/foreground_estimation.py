"""Foreground colour estimation for cut-outs: its cost at 1024² and 12 MP, and the colour error it
removes, on generated composites whose true foreground colour is known.

Two cut-outs of the same composite ``I = a F + (1 - a) B`` (``dissam.matting.synthetic_composite``):
naive ``RGBA = [I, a]`` and estimated ``RGBA = [F_est, a]`` (``dissam.visualize.cutout``, blur
fusion, Forte & Pitié 2021). Error: mean absolute colour difference to the true ``F`` (0..255),
alpha-weighted, in the soft-edge band ``0.05 < a < 0.95``. Timings: median of ``--repeats`` calls of
``cutout`` with and without estimation, side by side in one process.

Usage: PYTHONPATH=src python benchmarks/foreground_estimation.py [--seeds 2] [--repeats 3]

Writes benchmarks/results/foreground_estimation.json (``--out``: elsewhere) with the table ``cutout``
and, under ``results``, the band errors and timings per size and the share of the error removed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from results_io import markdown_table, save


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", help="the results file (default benchmarks/results/foreground_estimation.json)")
    args = ap.parse_args()

    import cv2

    from dissam.matting import band_colour_error
    from dissam.matting import synthetic_composite as make
    from dissam.visualize import cutout

    results = {"opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(), "seeds": args.seeds,
               "repeats": args.repeats, "sizes": {}}
    rows = []
    for name, (h, w) in {"1024x1024": (1024, 1024), "4000x3000 (12 MP)": (3000, 4000)}.items():
        errs_naive, errs_est = [], []
        for seed in range(args.seeds):
            c = make(h, w, seed=seed)
            a8 = np.rint(c["alpha"] * 255).astype(np.uint8)
            errs_naive.append(band_colour_error(cutout(c["image"], a8, estimate_fg=False)[..., :3], c["fg"], a8))
            errs_est.append(band_colour_error(cutout(c["image"], a8)[..., :3], c["fg"], a8))
        image, soft = c["image"], c["alpha"]  # a float soft map, as the predictor returns it
        t_naive = _median_s(lambda: cutout(image, soft, estimate_fg=False), args.repeats)  # noqa: B023
        t_est = _median_s(lambda: cutout(image, soft), args.repeats)  # noqa: B023
        naive, est = float(np.mean(errs_naive)), float(np.mean(errs_est))
        results["sizes"][name.split()[0]] = {"naive_ms": t_naive * 1e3, "estimated_ms": t_est * 1e3,
                                             "band_error_naive": naive, "band_error_estimated": est,
                                             "error_removed": 1 - est / naive}
        rows.append([name, f"{t_naive * 1e3:.0f} ms", f"{t_est * 1e3:.0f} ms", f"+{(t_est - t_naive) * 1e3:.0f} ms",
                     f"{naive:.1f}", f"{est:.1f} ({est / naive:.2f}x)"])
    removed = [v["error_removed"] for v in results["sizes"].values()]
    results["error_removed_min"], results["error_removed_max"] = min(removed), max(removed)
    table = markdown_table(["size", "naive cut-out `[I, a]`", "with estimation", "estimation cost",
                            "band error, naive", "band error, estimated"], rows, "llllll")
    save("foreground_estimation", results, {"cutout": table}, out=args.out,
         notes=f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); mean of {args.seeds} composites, "
               f"median of {args.repeats} calls")

if __name__ == "__main__":
    main()
