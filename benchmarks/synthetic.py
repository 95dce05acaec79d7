"""Speed of the synthetic generator and the coarse-mask sources (one process, one core).

    .venv/bin/python benchmarks/synthetic.py [--n 40] [--out benchmarks/results/synthetic.json]

Seconds per sample for generate_sample at 512x512 (random kinds), per kind, and for degrade_mask /
grabcut_mask on the same samples; written to benchmarks/results/synthetic.json (``--out``: elsewhere)
with the table ``synthetic``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results_io import markdown_table, save

from dissam.coarse import degrade_mask, grabcut_mask
from dissam.data.synthetic import KINDS, generate_sample


def _time(fn, n):
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", help="the results file (default benchmarks/results/synthetic.json)")
    args = ap.parse_args()
    n = args.n
    generate_sample(0, 0, size=64)  # warm the photo cache and the font
    res = {"n": n, "numpy": np.__version__}
    res["generate_random_kind_s"] = _time(lambda i: generate_sample(i, 0, size=512), n)
    res["by_kind_s"] = {kind: _time(lambda i, k=kind: generate_sample(i, 0, size=512, kind=k), max(4, n // 4))
                        for kind in KINDS}
    samples = [generate_sample(i, 0, size=512) for i in range(max(4, n // 4))]
    m = len(samples)
    res["degrade_mask_s"] = _time(lambda i: degrade_mask(samples[i][1], i), m)
    res["grabcut_mask_s"] = _time(lambda i: grabcut_mask(samples[i][0], samples[i][2]), m)
    rows = [
        ["`generate_sample`, random kind", f"{res['generate_random_kind_s']:.3f}"],
        [f"by kind: {' / '.join(KINDS)}", " / ".join(f"{v:.3f}" for v in res["by_kind_s"].values())],
        ["`degrade_mask`", f"{res['degrade_mask_s']:.3f}"],
        ["`grabcut_mask` (5 iterations)", f"{res['grabcut_mask_s']:.3f}"],
    ]
    save("synthetic", res, {"synthetic": markdown_table(["step (512x512)", "seconds per sample"], rows)},
         notes=f"{n} samples with random kinds, {max(4, n // 4)} per kind; one process", out=args.out)


if __name__ == "__main__":
    main()
