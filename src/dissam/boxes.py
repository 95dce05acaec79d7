"""Box prompts.

Convention everywhere in dissam: a box is ``(x0, y0, x1, y1)`` (XYXY) in pixels of the original
image, where ``(x1, y1)`` is the last pixel column/row **inside** the box (inclusive), exactly as
the authors derive boxes from masks (``np.where`` minima and maxima). Arrays of boxes are ``N x 4``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dissam.choices import BOX_FORMATS
from dissam.errors import BoxError

BoxFormat = Literal["xyxy", "xywh"]


def as_boxes(boxes, fmt: BoxFormat = "xyxy") -> np.ndarray:
    """Convert one box or a list of boxes to an ``N x 4`` float64 XYXY array (no validation)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise BoxError(f"a box has 4 numbers (x0, y0, x1, y1); got an array of shape {np.shape(boxes)}")
    if fmt == "xywh":
        arr = np.stack([arr[:, 0], arr[:, 1], arr[:, 0] + arr[:, 2], arr[:, 1] + arr[:, 3]], axis=1)
    elif fmt != "xyxy":
        raise BoxError(f"unknown box format {fmt!r}: use one of {', '.join(BOX_FORMATS)}")
    return arr


def validate_boxes(boxes, image_hw: tuple[int, int], fmt: BoxFormat = "xyxy") -> np.ndarray:
    """Check and clip boxes for an image of size ``image_hw = (H, W)``.

    Returns an ``N x 4`` float64 XYXY array clipped to ``[0, W-1] x [0, H-1]``. Raises
    :class:`BoxError` for non-finite numbers, inverted or empty boxes (``x1 <= x0`` or
    ``y1 <= y0``), boxes that lie entirely outside the image and boxes left with no area once
    clipped to it. Messages quote each box as given (in ``fmt``, before clipping).
    """
    arr = as_boxes(boxes, fmt)
    sent = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # as given: what messages quote
    h, w = int(image_hw[0]), int(image_hw[1])
    out = arr.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w - 1)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h - 1)
    for i, (x0, y0, x1, y1) in enumerate(arr):
        desc = f"box {i} ({', '.join(f'{v:g}' for v in sent[i])})"
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            raise BoxError(f"{desc} has non-finite coordinates")
        if x1 <= x0 or y1 <= y0:
            raise BoxError(
                f"{desc} is inverted or empty: boxes are XYXY (x0, y0, x1, y1) with x1 > x0 and y1 > y0"
                + (" (did you mean --box-format xywh?)" if fmt == "xyxy" else "")
            )
        if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
            raise BoxError(f"{desc} lies entirely outside the {w}x{h} image")
        cx0, cy0, cx1, cy1 = out[i]
        if cx1 <= cx0 or cy1 <= cy0:
            raise BoxError(f"{desc} only touches the edge of the {w}x{h} image: clipped to its pixels "
                           f"(x in 0..{w - 1}, y in 0..{h - 1}) it has no area")
    return out


def box_from_mask(mask: np.ndarray, threshold: float = 0) -> np.ndarray | None:
    """Tight XYXY box (inclusive pixel indices) of ``mask > threshold``; ``None`` if empty."""
    ys, xs = np.nonzero(np.asarray(mask) > threshold)
    if ys.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def widen_box(box: np.ndarray, hw: tuple[int, int], min_side: float = 1.0) -> np.ndarray:
    """Make an XYXY box at least ``min_side`` wider than a point along each axis (so a 1-pixel-wide
    mask still gives a valid box), clipped to the ``(H, W)`` image."""
    h, w = hw
    b = np.asarray(box, dtype=np.float64).copy()
    if b[2] - b[0] < min_side:
        b[0], b[2] = max(0.0, b[0] - min_side), min(w - 1.0, b[2] + min_side)
    if b[3] - b[1] < min_side:
        b[1], b[3] = max(0.0, b[1] - min_side), min(h - 1.0, b[3] + min_side)
    return b
