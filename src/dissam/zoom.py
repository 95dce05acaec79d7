"""Zoomed refinement (opt-in): refine a crop around each box at the refiner's resolution and paste it back.

The paper's refiner sees the whole image resized to ``S x S`` (1024² for its model): a 10 % object in
a 50 MP photograph gets about 100 x 100 refiner pixels, and structures thinner than the resize factor
(7 source pixels per refiner pixel there) cannot be recovered. With zoom, each box is refined on its
own crop, the box widened by ``margin`` times its width (horizontally) and height (vertically) on each
side, clipped to the image, so the object fills most of the ``S x S`` input. The refined crop is
resized back to the crop's size (bilinear, as the whole-image path resizes its output) and pasted into
an otherwise empty map: the object is expected inside its box, as it is for the box map.

Coordinates: boxes are XYXY pixels of the image, ``(x1, y1)`` inclusive (:mod:`dissam.boxes`): a box
covers ``[x0, x1 + 1)``; windows are ``(x0, y0, x1, y1)`` integer pixels, ``x1``/``y1`` exclusive
(slices of the image).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from dissam.errors import DisSamError
from dissam.transforms import clean_inputs, postprocess

__all__ = ["ZOOM_MARGIN", "check_margin", "zoom_window", "refine_zoomed"]

ZOOM_MARGIN = 0.25
"""Default margin: a quarter of the box's width (height) on the left and right (top and bottom), so
the box covers 2/3 of the crop along each side; the box map and the coarse mask's surroundings stay in
view, as in the whole-image input where the box is rarely at the border."""


def check_margin(margin: float) -> float:
    """``margin`` as a float, refused (DisSamError) unless finite and in [0, 10]."""
    try:
        m = float(margin)
    except (TypeError, ValueError):
        m = math.nan
    if not math.isfinite(m) or not 0.0 <= m <= 10.0:
        raise DisSamError(f"the zoom margin must be between 0 and 10 (a fraction of the box's size), got {margin!r}")
    return m


def zoom_window(box: Sequence[float], hw: Sequence[int], margin: float = ZOOM_MARGIN) -> tuple[int, int, int, int]:
    """The crop ``(x0, y0, x1, y1)`` refined for ``box`` (XYXY) in an image of ``hw = (H, W)``: the box
    widened by ``margin`` x its width / height on each side, rounded outwards, clipped to the image,
    and at least one pixel wide and high (``x1``/``y1`` exclusive)."""
    h, w = int(hw[0]), int(hw[1])
    bx0, by0, bx1, by1 = (float(v) for v in box)
    bx1, by1 = bx1 + 1.0, by1 + 1.0  # inclusive corner -> the pixel edge after it
    mx, my = margin * (bx1 - bx0), margin * (by1 - by0)
    x0 = min(max(0, math.floor(bx0 - mx)), w - 1)
    y0 = min(max(0, math.floor(by0 - my)), h - 1)
    x1 = max(min(w, math.ceil(bx1 + mx)), x0 + 1)
    y1 = max(min(h, math.ceil(by1 + my)), y0 + 1)
    return x0, y0, x1, y1


def refine_zoomed(run: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray, coarse: np.ndarray,
                  boxes: np.ndarray, size: int, margin: float = ZOOM_MARGIN) -> np.ndarray:
    """``N x H x W`` float32 soft maps, each refined on its box's :func:`zoom_window`.

    Args:
        run: the refiner runner: ``(1, 5, S, S)`` float32 input -> ``(1, 1, S, S)`` map in [0, 1].
        image: ``H x W x 3`` uint8 RGB.
        coarse: ``N x H x W`` bool coarse masks.
        boxes: ``N x 4`` XYXY boxes (pixels of ``image``).
        size: the refiner's input size ``S``.
    Returns:
        ``N x H x W`` float32; zero outside each box's window.
    """
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), h, w), dtype=np.float32)
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64)):
        x0, y0, x1, y1 = zoom_window(box, (h, w), margin)
        local = box - np.array([x0, y0, x0, y0], dtype=np.float64)
        x = clean_inputs(np.ascontiguousarray(image[y0:y1, x0:x1]), coarse[i:i + 1, y0:y1, x0:x1], local[None], size)
        out[i, y0:y1, x0:x1] = postprocess(run(x), (y1 - y0, x1 - x0)).cpu().numpy()[0]
    return out
