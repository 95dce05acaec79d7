"""DisDataset item cost at the paper's size: decode + resize (no cache) vs the content-keyed cache.

Writes N random-content JPEG images (H x W) with GT and mask PNGs to a temporary split, then times
``DisDataset(size=S)[i]`` over all items: a cold pass without cache, a pass filling the cache, and a
pass reading it. Usage: ``.venv/bin/python benchmarks/data_loading.py --n 8 --hw 1080 1620 --size 1024``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dissam.data.dataset import DisDataset
from dissam.data.layout import discover_split
from dissam.io import write_png


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--hw", type=int, nargs=2, default=(1080, 1620))
    ap.add_argument("--size", type=int, default=1024)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    h, w = a.hw
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "S"
        (root / "im").mkdir(parents=True)
        for i in range(a.n):
            base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
            Image.fromarray(img).save(root / "im" / f"x{i}.jpg", quality=92)
            gt = np.zeros((h, w), np.uint8)
            gt[h // 4 : 3 * h // 4, w // 5 : 4 * w // 5] = 255
            write_png(root / "gt" / f"x{i}.png", gt)
            write_png(root / "mask" / f"x{i}.png", gt)
        samples = discover_split(root, require_masks=True)
        rows = []
        for label, cache in (
            ("no cache", None),
            ("cache: first pass (fill)", Path(tmp) / "c"),
            ("cache: second pass (read)", Path(tmp) / "c"),
        ):
            ds = DisDataset(samples, size=a.size, cache_dir=cache, augment=True)
            t = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            rows.append((label, (time.perf_counter() - t) / len(ds)))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {a.n} images {h}x{w} -> {a.size}^2")
    print("| pass | ms per item |\n|---|---|")
    for label, sec in rows:
        print(f"| {label} | {sec * 1000:.0f} |")


if __name__ == "__main__":
    main()
