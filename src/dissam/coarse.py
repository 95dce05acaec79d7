"""Weight-free coarse masks: stand-ins for SAM's stage-1 output.

``degrade_mask`` turns a ground truth into a mask with SAM's typical failure on DIS data:
the object is found, but thin parts are lost, small holes are filled and the boundary is
slightly off. It is meant for training a refiner on synthetic data without running SAM.

``grabcut_mask`` is a real (if weaker) box-prompted segmenter with no learned weights:
OpenCV GrabCut initialised by the box (stage 1 ``grabcut``, :mod:`dissam.stages.grabcut`, and the
GrabCut step of the U²-Netp stages). ``colour_overlap`` says how well a mask separates the
object's colours from the rest of its box (stage 1 ``u2netp-auto``); ``mask_iou`` compares masks.

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


GRABCUT_MAX_SIDE = 1024
"""The longest side the weight-free stage 1s run GrabCut at (``GrabCutStage``, U²-Netp's fallback)."""
GRABCUT_SEED = 0
"""Seed of OpenCV's random generator set before each GrabCut: its colour models start from k-means
with random centres drawn from that generator, which every OpenCV call that draws advances."""


def grabcut_mask(image: np.ndarray, box, iters: int = 5, max_side: int | None = None,
                 init: np.ndarray | None = None, seeds: np.ndarray | None = None) -> np.ndarray:
    """OpenCV GrabCut segmentation of ``image`` (``HxWx3`` uint8 RGB) inside ``box`` (XYXY inclusive).

    Pixels outside the box are background; the result is the definite plus probable foreground.
    Deterministic: OpenCV's k-means initialisation of the colour models draws from the calling
    thread's random generator, so it is seeded (:data:`GRABCUT_SEED`) before each run; unseeded, the
    same image and box gave masks as different as IoU 0.94 from one call to the next, depending on
    what ran before. If GrabCut cannot run (a box covering the whole image leaves no background
    samples unless ``init`` gives some, or a box under 2 px), the filled box is returned.
    ``max_side``: run on a copy whose longer side is at most this (GrabCut's time grows with the
    pixel count: about 20 s for 3 MP on one core) and upscale the mask (bilinear, at 0.5).
    ``init``: a first guess, ``HxW`` bool (another stage 1's mask): GrabCut's colour models start
    from it (probable foreground where it is set inside the box, probable background elsewhere in
    the box) instead of from the whole box; a guess that is empty in the box or fills it is ignored.
    ``seeds``: hard labels from point prompts, ``HxW`` int8 (:func:`dissam.points.seed_labels`: 1 sure
    foreground, 0 sure background, -1 free): GrabCut keeps them fixed (``GC_FGD`` / ``GC_BGD``) and the
    result obeys them inside the box.
    Returns ``HxW`` uint8 in {0, 255}, zero outside the box.
    """
    image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape}")
    h, w = image.shape[:2]
    if init is not None:
        init = np.asarray(init).astype(bool)
        if init.shape != (h, w):
            raise ValueError(f"init mask {init.shape} and image {(h, w)} differ in size")
    if seeds is not None:
        seeds = np.asarray(seeds, np.int8)
        if seeds.shape != (h, w):
            raise ValueError(f"seed map {seeds.shape} and image {(h, w)} differ in size")
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        b = validate_boxes(box, (h, w))[0]
        small_box = np.array([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
        small_init = None if init is None else cv2.resize(
            init.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA) > 0
        small_seeds = None if seeds is None else cv2.resize(
            seeds, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        m = grabcut_mask(small, np.clip(small_box, 0, [small.shape[1] - 1, small.shape[0] - 1] * 2), iters,
                         init=small_init, seeds=small_seeds)
        up = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) >= 128
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        out = np.zeros((h, w), np.uint8)
        out[y0 : y1 + 1, x0 : x1 + 1] = up[y0 : y1 + 1, x0 : x1 + 1] * np.uint8(255)
        return _obey_seeds(out, seeds, (x0, y0, x1, y1))
    x0, y0, x1, y1 = (int(round(v)) for v in validate_boxes(box, (h, w))[0])
    out = np.zeros((h, w), np.uint8)
    rect = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    # a first guess that is neither empty nor the whole box gives both colour models samples
    seeded = init is not None and 0 < init[y0 : y1 + 1, x0 : x1 + 1].sum() < rect[2] * rect[3]
    background_seed = seeds is not None and bool((seeds[y0 : y1 + 1, x0 : x1 + 1] == 0).any())
    if rect[2] < 2 or rect[3] < 2 or (rect[2] >= w and rect[3] >= h and not seeded and not background_seed):
        out[y0 : y1 + 1, x0 : x1 + 1] = 255
        return _obey_seeds(out, seeds, (x0, y0, x1, y1))
    mask = np.zeros((h, w), np.uint8)  # GC_BGD: outside the box
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[..., ::-1])
    if seeded:
        mask[y0 : y1 + 1, x0 : x1 + 1] = np.where(init[y0 : y1 + 1, x0 : x1 + 1], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    elif seeds is not None:  # what GC_INIT_WITH_RECT would set, so that the seeds can be added to it
        mask[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_FGD
    if seeds is not None:
        mask[seeds == 1] = cv2.GC_FGD
        mask[seeds == 0] = cv2.GC_BGD
    try:
        cv2.setRNGSeed(GRABCUT_SEED)
        if seeded or seeds is not None:
            cv2.grabCut(bgr, mask, None, bgd, fgd, int(iters), cv2.GC_INIT_WITH_MASK)
        else:
            cv2.grabCut(bgr, mask, rect, bgd, fgd, int(iters), cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        out[y0 : y1 + 1, x0 : x1 + 1] = 255
        return _obey_seeds(out, seeds, (x0, y0, x1, y1))
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    out[fg] = 255
    out[:y0] = 0
    out[y1 + 1 :] = 0
    out[:, :x0] = 0
    out[:, x1 + 1 :] = 0
    return _obey_seeds(out, seeds, (x0, y0, x1, y1))


def _obey_seeds(out: np.ndarray, seeds: np.ndarray | None, box: tuple[int, int, int, int]) -> np.ndarray:
    """``out`` (uint8 {0, 255}) with the seeds' sure foreground set inside ``box`` and their sure
    background cleared."""
    if seeds is None:
        return out
    x0, y0, x1, y1 = box
    inside = np.zeros(out.shape, bool)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    out[(seeds == 1) & inside] = 255
    out[seeds == 0] = 0
    return out


COLOUR_BINS = 8
"""Bins per RGB channel of :func:`colour_overlap`'s histograms."""


def colour_overlap(image: np.ndarray, mask: np.ndarray, box) -> float:
    """How alike the colours of ``mask`` and of the rest of ``box`` are: the Bhattacharyya
    coefficient of their RGB histograms (:data:`COLOUR_BINS` bins per channel, each normalised).

    ``image``: ``HxWx3`` uint8; ``mask``: ``HxW`` (nonzero = object); ``box``: XYXY inclusive pixels.
    Returns a value in [0, 1]: 1 when the two colour distributions are the same, 0 when they share
    no bin. A mask that is empty in the box or fills it separates nothing: 1.
    """
    image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape}")
    mask = np.asarray(mask).astype(bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    x0, y0, x1, y1 = (int(round(v)) for v in validate_boxes(box, image.shape[:2])[0])
    crop = image[y0 : y1 + 1, x0 : x1 + 1]
    inside = mask[y0 : y1 + 1, x0 : x1 + 1]
    if not inside.any() or inside.all():
        return 1.0
    hists = []
    for part in (inside, ~inside):
        hist = cv2.calcHist([crop], [0, 1, 2], part.astype(np.uint8), [COLOUR_BINS] * 3, [0, 256] * 3)
        hists.append(hist / hist.sum())
    # OpenCV's Bhattacharyya "distance" is sqrt(1 - coefficient) for normalised histograms
    distance = cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA)
    return float(np.clip(1.0 - distance**2, 0.0, 1.0))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``HxW`` masks thresholded at 128 (1.0 when both are empty)."""
    a, b = np.asarray(a) >= 128, np.asarray(b) >= 128
    union = int(np.count_nonzero(a | b))
    return float(np.count_nonzero(a & b) / union) if union else 1.0
