"""Temporal stability of a mask sequence, with known motion (generated clips, :mod:`dissam.data.clips`).

* ``compensated_iou(a_t, a_t1, (dx, dy))``: IoU of frame ``t+1``'s mask with frame ``t``'s mask
  shifted by the object's motion; 1.0 for a perfectly stable segmentation of a rigid object. Pixels
  shifted in from outside the frame count as background.
* ``flicker(s_t, s_t1, (dx, dy), region)``: mean absolute change of the soft map (8-bit levels,
  0..255) after the same shift, inside ``region`` (e.g. the ground truth dilated by a few pixels, so
  the empty background does not dilute it); 0 for a perfectly stable map.

Masks are ``H x W`` bool, soft maps ``H x W`` uint8.
"""

from __future__ import annotations

import numpy as np


def shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``a`` moved by ``(dx, dy)`` pixels (x right, y down), zero-filled."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def compensated_iou(prev: np.ndarray, cur: np.ndarray, motion: tuple[int, int]) -> float:
    """IoU of ``cur`` with ``prev`` shifted by ``motion``; 1.0 when both are empty."""
    moved = shift(np.asarray(prev, bool), *motion)
    cur = np.asarray(cur, bool)
    union = np.logical_or(moved, cur).sum()
    return 1.0 if union == 0 else float(np.logical_and(moved, cur).sum() / union)


def flicker(prev: np.ndarray, cur: np.ndarray, motion: tuple[int, int], region: np.ndarray) -> float:
    """Mean ``|cur - shift(prev)|`` in 8-bit levels over the bool ``region``."""
    moved = shift(np.asarray(prev, np.int16), *motion)
    diff = np.abs(np.asarray(cur, np.int16) - moved)
    region = np.asarray(region, bool)
    return float(diff[region].mean()) if region.any() else 0.0
