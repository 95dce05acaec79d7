"""Training coarse masks with the errors of the stage 1 the built-in default really uses.

:func:`stage1_like_mask` draws, per sample, GrabCut or U²-Netp run on the image inside the box, or a
degraded ground truth (:func:`dissam.coarse.degrade_mask`); ``dissam synth --coarse stage1-like``
writes these masks for the built-in model's training.
"""

from __future__ import annotations

import numpy as np

from dissam.coarse import degrade_mask, grabcut_mask, mask_iou
from dissam.stages.u2netp import U2NetpStage, load_u2netp

__all__ = ["STAGE1_LIKE_SOURCES", "STAGE1_LIKE_MIN_IOU", "stage1_like_mask"]

STAGE1_LIKE_SOURCES = {"grabcut": 0.4, "u2netp": 0.4, "degrade": 0.2}
"""The draw of :func:`stage1_like_mask`: the weight-free stage 1s and the degraded ground truth."""
STAGE1_LIKE_MIN_IOU = 0.7


def stage1_like_mask(
    image: np.ndarray, gt: np.ndarray, box, seed: int, min_iou: float = STAGE1_LIKE_MIN_IOU
) -> tuple[np.ndarray, str, float]:
    """A training coarse mask with the errors of the stage 1 the built-in default really uses.

    Draws a source from :data:`STAGE1_LIKE_SOURCES` with ``numpy.random.default_rng(seed)``: GrabCut or
    U²-Netp run on ``image`` inside ``box``, or :func:`degrade_mask`. A stage-1 mask whose IoU with the
    ground truth is below ``min_iou`` is replaced by the degraded ground truth: on real photographs
    these stage 1s are mostly right (IoU 0.8-0.9 on DIS-5K photos), so training on their outright
    failures on generated data would teach the refiner to distrust the coarse mask everywhere, which
    is what washes real photographs out.

    Args:
        image: ``HxWx3`` uint8 RGB. gt: ``HxW`` uint8 ground truth. box: XYXY inclusive pixels.
    Returns:
        ``(mask HxW uint8 {0, 255}, source used, IoU of the drawn stage 1's mask with gt)``.
    """
    rng = np.random.default_rng(int(seed))
    names = list(STAGE1_LIKE_SOURCES)
    p = np.array([STAGE1_LIKE_SOURCES[k] for k in names], dtype=np.float64)
    source = names[int(rng.choice(len(names), p=p / p.sum()))]
    fallback_seed = int(rng.integers(2**31))  # drawn for every source: each sample's draw stays the same
    if source == "degrade":
        fallback = degrade_mask(gt, fallback_seed)
        return fallback, "degrade", mask_iou(fallback, gt)
    if source == "grabcut":
        mask = grabcut_mask(image, box)
    else:
        stage = _u2netp_stage()
        stage.set_image(image)
        mask = stage.coarse_masks(np.asarray([box], dtype=np.float64))[0].astype(np.uint8) * 255
    iou = mask_iou(mask, gt)
    if iou < min_iou:
        return degrade_mask(gt, fallback_seed), "degrade", iou
    return mask, source, iou


_U2NETP: U2NetpStage | None = None


def _u2netp_stage() -> U2NetpStage:
    """One U²-Netp stage per process (the ONNX session is the expensive part)."""
    global _U2NETP
    if _U2NETP is None:
        _U2NETP = load_u2netp(threads=1)  # data generation runs one process per core
    return _U2NETP
