"""Pictures of results: cut-outs, overlays, side-by-side panels. Arrays are ``H x W x 3`` uint8 RGB
images and ``H x W`` masks; boxes XYXY inclusive pixels."""

from __future__ import annotations

import cv2
import numpy as np

from dissam.matting import foreground_rgb

COLORS = [(255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 192, 0), (200, 80, 255), (0, 220, 220)]


def cutout(image: np.ndarray, alpha: np.ndarray, estimate_fg: bool = True) -> np.ndarray:
    """``H x W x 4`` RGBA cut-out; ``alpha`` is a soft map in [0, 1] (float) or a mask (bool/uint8).

    With ``estimate_fg`` (the default) the RGB under soft edges is the estimated foreground colour
    (:func:`dissam.matting.estimate_foreground`), so no fringe of the old background shows when the
    cut-out is composited elsewhere; ``False`` keeps the image's own colours (``[I, alpha]``).
    """
    a = np.asarray(alpha)
    if a.dtype == bool:
        a8 = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a8 = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    else:
        a8 = a.astype(np.uint8)
    if estimate_fg:
        image = foreground_rgb(image, a8)
    return np.dstack([image, a8])


def overlay(image: np.ndarray, masks, boxes=None, alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """The image with each mask tinted in its own colour, its contour, and its box drawn."""
    out = image.astype(np.float32).copy()
    masks = [np.asarray(m) for m in (masks if isinstance(masks, (list, tuple)) else [masks])]
    boxes = [] if boxes is None else list(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    for i, m in enumerate(masks):
        color = np.array(COLORS[i % len(COLORS)], np.float32)
        mf = (m.astype(np.float32) / (255.0 if m.dtype == np.uint8 else 1.0))[..., None]
        out = out * (1 - alpha * mf) + color * (alpha * mf)
    out8 = np.clip(out, 0, 255).astype(np.uint8)
    for i, m in enumerate(masks):
        color = COLORS[i % len(COLORS)]
        if outline:
            mb = (m > (127 if m.dtype == np.uint8 else 0.5)).astype(np.uint8)
            contours, _ = cv2.findContours(mb, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out8, contours, -1, color, 1)
    thick = max(1, round(max(image.shape[:2]) / 400))
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        cv2.rectangle(out8, (x0, y0), (x1, y1), COLORS[i % len(COLORS)], thick)
    return out8


def panel(images: list[np.ndarray], labels: list[str] | None = None, height: int = 320, gap: int = 6) -> np.ndarray:
    """Images (RGB or masks) side by side at a common height, with optional captions."""
    tiles = []
    for k, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype == bool:
            im = im.astype(np.uint8) * 255
        if np.issubdtype(im.dtype, np.floating):
            im = np.clip(im * 255, 0, 255).astype(np.uint8)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        h, w = im.shape[:2]
        tile = cv2.resize(im, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
        if labels:
            cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
            cv2.putText(tile, labels[k], (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((height, gap, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)
