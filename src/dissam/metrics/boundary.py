"""mIoU and mBIoU: per-image IoU of the foreground and of its boundary band (Boundary IoU; Cheng et
al., CVPR 2021), as the DIS-SAM authors' (deleted) ``miou.py`` / ``mbiou.py`` computed them: maps
binarised at ``>= 128``, the band ``0.02`` of the image diagonal wide, 0 when the prediction is empty.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["IOU_THRESHOLD", "BOUNDARY_DILATION_RATIO", "mask_to_boundary", "iou_and_boundary_iou"]

IOU_THRESHOLD = 128  # mIoU / mBIoU binarise at >= 128
BOUNDARY_DILATION_RATIO = 0.02


def _binarise_for_iou(mask: np.ndarray) -> np.ndarray:
    """``HxW`` uint8 -> ``HxW`` uint8 in {0, 1}: ``>= 128`` when the map is 8-bit (max > 1);
    a map whose values are already in {0, 1} is used as it is."""
    if mask.max() > 1:
        return (mask >= IOU_THRESHOLD).astype(np.uint8)
    return (mask > 0).astype(np.uint8)


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = BOUNDARY_DILATION_RATIO) -> np.ndarray:
    """Inner boundary band of a {0,1} ``HxW`` uint8 mask (Boundary IoU, Cheng et al., CVPR 2021).

    The band width is ``max(1, round(dilation_ratio * diagonal))`` pixels; the image border counts
    as background (the mask is zero-padded by one pixel before the 3x3 erosion).
    """
    h, w = mask.shape
    width = max(1, int(round(dilation_ratio * np.sqrt(h * h + w * w))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=width)[1 : h + 1, 1 : w + 1]
    return mask - eroded


def _foreground_iou(pred01: np.ndarray, gt01: np.ndarray) -> float:
    inter = np.count_nonzero(pred01 & gt01)
    union = np.count_nonzero(pred01 | gt01)
    return float(inter / union) if union else 0.0


def iou_and_boundary_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Per-image (IoU, boundary IoU) of the foreground class for ``HxW`` uint8 maps.

    Both maps are binarised at ``>= 128``; an empty prediction scores 0 for both (the authors'
    convention). Returns Python floats.
    """
    p = _binarise_for_iou(pred)
    g = _binarise_for_iou(gt)
    if not p.any():
        return 0.0, 0.0
    return _foreground_iou(p, g), _foreground_iou(mask_to_boundary(p), mask_to_boundary(g))
