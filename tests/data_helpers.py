"""Small on-disk data sets for the dissam.data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dissam.io import write_png


def make_split(root: Path, gts: dict[str, np.ndarray], masks: bool = True, seed: int = 0) -> Path:
    """A split folder with PNG images (random), the given GTs and coarse masks (= GT)."""
    rng = np.random.default_rng(seed)
    for stem, gt in gts.items():
        write_png(root / "im" / f"{stem}.png", rng.integers(0, 256, (*gt.shape, 3), dtype=np.uint8))
        write_png(root / "gt" / f"{stem}.png", gt)
        if masks:
            write_png(root / "mask" / f"{stem}.png", gt)
    return root


def gt_two_big_one_tiny() -> np.ndarray:
    """50x60 GT: component A (rows 2..11, cols 3..12, 100 px), B (rows 20..29, cols 30..49, 200 px),
    and a 2x2 speck (4 px < 0.004*3000 = 12) that must be dropped."""
    g = np.zeros((50, 60), np.uint8)
    g[2:12, 3:13] = 255
    g[20:30, 30:50] = 200  # >= 128 counts
    g[45:47, 5:7] = 255
    g[40, 40] = 127  # below the binarisation threshold: not a component
    return g
