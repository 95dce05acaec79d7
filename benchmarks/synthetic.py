"""Speed of the synthetic generator and the coarse-mask sources (one process, one core).

    .venv/bin/python benchmarks/synthetic.py [--n 40]

Prints seconds per sample for generate_sample at 512x512 (random kinds), per kind, and for
degrade_mask / grabcut_mask on the same samples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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
    args = ap.parse_args()
    n = args.n
    generate_sample(0, 0, size=64)  # warm the photo cache and the font
    print(
        f"generate_sample 512x512, random kind: {_time(lambda i: generate_sample(i, 0, size=512), n):.3f} s"
    )
    for kind in KINDS:
        s = _time(lambda i, k=kind: generate_sample(i, 0, size=512, kind=k), max(4, n // 4))
        print(f"  kind={kind:<7}: {s:.3f} s")
    samples = [generate_sample(i, 0, size=512) for i in range(max(4, n // 4))]
    m = len(samples)
    print(f"degrade_mask 512x512: {_time(lambda i: degrade_mask(samples[i][1], i), m):.4f} s")
    g = _time(lambda i: grabcut_mask(samples[i][0], samples[i][2]), m)
    print(f"grabcut_mask 512x512 (5 iters): {g:.3f} s")
    print(f"numpy {np.__version__}")


if __name__ == "__main__":
    main()
