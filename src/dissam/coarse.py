"""Weight-free coarse masks: stand-ins for SAM's stage-1 output.

``degrade_mask`` turns a ground truth into a mask with SAM's typical failure on DIS data:
the object is found, but thin parts are lost, small holes are filled and the boundary is
slightly off. It is meant for training a refiner on synthetic data without running SAM.

``grabcut_mask`` is a real (if weaker) box-prompted segmenter with no learned weights:
OpenCV GrabCut initialised by the box. It is a lower-quality stage 1 for users who do not have
SAM weights; the refiner then has to do more of the work.

All masks are ``HxW`` uint8 with values {0, 255}. Boxes are XYXY inclusive pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from dissam.boxes import validate_boxes


def _disk(r: int) -> np.ndarray:
    r = max(0, int(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def degrade_mask(gt: np.ndarray, seed: int, strength: float = 1.0) -> np.ndarray:
    """A SAM-like coarse version of ``gt`` (``HxW`` uint8, soft or binary; foreground ``>= 128``).

    Steps, each drawn from ``numpy.random.default_rng(seed)``, with radii scaled by
    ``strength * max(H, W) / 512``:
    opening (radius 1.5-3.5: removes structures narrower than about twice that), closing
    (radius 2-5: fills small holes and gaps), a dilation or erosion of 0-2 px (boundary bias),
    then a Gaussian blur (sigma 1-3) thresholded at 0.35-0.65 (a smooth, slightly shifted outline).
    ``strength=0`` returns the thresholded GT. Returns ``HxW`` uint8 in {0, 255}.
    """
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"gt must be HxW, got shape {gt.shape}")
    rng = np.random.default_rng(int(seed))
    m = (gt >= 128).astype(np.uint8)
    if strength <= 0 or not m.any():
        return m * 255
    k = float(strength) * max(gt.shape) / 512.0
    r_open = int(round(rng.uniform(1.5, 3.5) * k))
    r_close = int(round(rng.uniform(2.0, 5.0) * k))
    jitter = int(round(rng.uniform(-2.0, 2.0) * k))
    sigma = rng.uniform(1.0, 3.0) * k
    thr = rng.uniform(0.35, 0.65)
    out = m
    if r_open > 0:
        opened = cv2.morphologyEx(out, cv2.MORPH_OPEN, _disk(r_open))
        if opened.any():  # a target made only of thin parts keeps its thresholded self
            out = opened
    if r_close > 0:
        out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, _disk(r_close))
    if jitter > 0:
        out = cv2.dilate(out, _disk(jitter))
    elif jitter < 0:
        eroded = cv2.erode(out, _disk(-jitter))
        out = eroded if eroded.any() else out
    if sigma > 0.3:
        soft = cv2.GaussianBlur(out.astype(np.float32), (0, 0), sigma)
        blurred = soft >= thr
        out = blurred.astype(np.uint8) if blurred.any() else out
    return out.astype(np.uint8) * 255


def grabcut_mask(image: np.ndarray, box, iters: int = 5) -> np.ndarray:
    """OpenCV GrabCut segmentation of ``image`` (``HxWx3`` uint8 RGB) inside ``box`` (XYXY inclusive).

    Pixels outside the box are background; the result is the definite plus probable foreground.
    Deterministic (OpenCV's GMM init uses a fixed seed). If GrabCut cannot run (a box covering
    the whole image leaves no background samples, or a box under 2 px), the filled box is
    returned. Returns ``HxW`` uint8 in {0, 255}, zero outside the box.
    """
    image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape}")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in validate_boxes(box, (h, w))[0])
    out = np.zeros((h, w), np.uint8)
    rect = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    if rect[2] < 2 or rect[3] < 2 or (rect[2] >= w and rect[3] >= h):
        out[y0 : y1 + 1, x0 : x1 + 1] = 255
        return out
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[..., ::-1])
    try:
        cv2.grabCut(bgr, mask, rect, bgd, fgd, int(iters), cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        out[y0 : y1 + 1, x0 : x1 + 1] = 255
        return out
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    out[fg] = 255
    out[:y0] = 0
    out[y1 + 1 :] = 0
    out[:, :x0] = 0
    out[:, x1 + 1 :] = 0
    return out
