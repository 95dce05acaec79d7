"""Human Correction Effort (HCE; Qin et al., "Highly Accurate Dichotomous Image Segmentation",
ECCV 2022): how many mouse clicks a person needs to turn a prediction into the ground truth.

Computed by pysodmetrics' published ``HumanCorrectionEffortMeasure`` (the DIS authors' algorithm:
relax 5, Ramer-Douglas-Peucker epsilon 2.0) on maps binarised at ``> 128``, as the official
``hce_metric_main.py`` does. The ground truth's skeleton, the expensive step, can be supplied from a
cache (:class:`SkeletonCache`): :func:`hce` then repeats the measure's relaxation with that skeleton and
counts with the measure's own public boundary and polygon functions, which the test suite checks equal
to the measure's ``cal_hce``. HCE depends on the OpenCV version (contour and polygon routines): report
``cv2.__version__`` with it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import MutableMapping
from pathlib import Path

import cv2
import numpy as np
import skimage
from py_sod_metrics import HumanCorrectionEffortMeasure
from skimage.morphology import disk, skeletonize

from dissam.utils import atomic_write_bytes

__all__ = ["HCE_RELAX", "HCE_EPSILON", "HCE_THRESHOLD", "hce", "gt_skeleton", "SkeletonCache", "skeleton_source",
           "skeleton_for", "new_measure"]

HCE_RELAX = 5
HCE_EPSILON = 2.0
HCE_THRESHOLD = 128  # HCE binarises both maps at > 128
_KERNEL = disk(1)  # the 3 x 3 cross every morphology step of HCE uses


def new_measure() -> HumanCorrectionEffortMeasure:
    """The measure with the paper's settings (one per process is enough: it keeps nothing per call
    that :func:`hce` uses)."""
    return HumanCorrectionEffortMeasure(relax=HCE_RELAX, epsilon=HCE_EPSILON)


def gt_skeleton(gt_fg: np.ndarray) -> np.ndarray:
    """Skeleton (``HxW`` bool) of the ground-truth foreground ``gt_fg`` (``HxW`` bool), as HCE uses it:
    scikit-image's 2-D ``skeletonize`` (Zhang's method)."""
    return skeletonize(gt_fg).astype(bool)


def _skeleton_key(gt_fg: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{gt_fg.shape[0]}x{gt_fg.shape[1]}|skimage{skimage.__version__}|".encode())
    h.update(np.packbits(gt_fg).tobytes())
    return h.hexdigest()


class SkeletonCache:
    """Ground-truth skeletons on disk, one PNG (0/255) per skeleton, keyed by a hash of the binarised
    ground truth and the scikit-image version. Safe to share between processes (atomic writes)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def get(self, gt_fg: np.ndarray) -> np.ndarray:
        """Skeleton of ``gt_fg`` (``HxW`` bool), from the cache or computed and stored."""
        path = self.folder / f"{_skeleton_key(gt_fg)}.png"
        if path.is_file():
            cached = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if cached is not None and cached.shape == gt_fg.shape:
                return cached > 128
        skel = gt_skeleton(gt_fg)
        ok, buf = cv2.imencode(".png", skel.astype(np.uint8) * 255)
        if ok:
            try:
                atomic_write_bytes(path, buf.tobytes())
            except OSError:  # a read-only cache must not stop an evaluation
                pass
        return skel


def skeleton_source(cache):
    """``None``, a :class:`SkeletonCache`, or a dict-like in memory; a folder path becomes a cache."""
    if cache is None or isinstance(cache, SkeletonCache | MutableMapping):
        return cache
    return SkeletonCache(cache)


def skeleton_for(cache, gt_fg: np.ndarray) -> np.ndarray:
    """The skeleton of ``gt_fg`` from ``cache`` (:func:`skeleton_source`), computed when missing."""
    if isinstance(cache, SkeletonCache):
        return cache.get(gt_fg)
    key = _skeleton_key(gt_fg)
    skel = cache.get(key)
    if skel is None:
        skel = cache[key] = gt_skeleton(gt_fg)
    return skel


def _relaxed_errors(pred: np.ndarray, gt: np.ndarray, skeleton: np.ndarray, relax: int):
    """The false positives and negatives a person has to correct, after HCE's relaxation: errors
    within ``relax`` pixels of the union's border are forgiven, except that every skeleton pixel of
    the ground truth the prediction misses must be drawn. All arguments and results ``HxW`` bool."""
    tp, fp, fn = pred & gt, pred & ~gt, gt & ~pred
    eroded_union = cv2.erode((pred | gt).astype(np.uint8), _KERNEL, iterations=relax) > 0
    fp_relaxed = fp & eroded_union
    for _ in range(relax):
        fp_relaxed = (cv2.dilate(fp_relaxed.astype(np.uint8), _KERNEL) > 0) & ~gt
    fp_relaxed &= fp
    fn_relaxed = fn & eroded_union
    for _ in range(relax):
        fn_relaxed = (cv2.dilate(fn_relaxed.astype(np.uint8), _KERNEL) > 0) & ~pred
    fn_relaxed &= fn
    fn_relaxed |= skeleton & ~tp
    return tp, fp_relaxed, fn_relaxed


def _correction_effort(measure: HumanCorrectionEffortMeasure, pred: np.ndarray, gt: np.ndarray,
                       skeleton: np.ndarray) -> int:
    tp, fp_relaxed, fn_relaxed = _relaxed_errors(pred, gt, skeleton, measure.relax)
    contours_fp, _ = cv2.findContours(fp_relaxed.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    bounds_fp, independent_fp = measure.filter_conditional_boundary(contours_fp, fp_relaxed, tp | fn_relaxed)
    contours_fn, _ = cv2.findContours(fn_relaxed.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    untouched = (~(tp | fp_relaxed | fn_relaxed)).astype(np.uint8)
    bounds_fn, independent_fn = measure.filter_conditional_boundary(contours_fn, fn_relaxed, untouched)
    points = measure.count_polygon_control_points(bounds_fp, epsilon=measure.epsilon)
    points += measure.count_polygon_control_points(bounds_fn, epsilon=measure.epsilon)
    return int(points + independent_fp + independent_fn)


def hce(pred: np.ndarray, gt: np.ndarray, skeleton: np.ndarray | None = None, measure=None) -> int:
    """Human Correction Effort of one ``HxW`` uint8 prediction against its ``HxW`` uint8 ground truth.

    Both maps are binarised at ``> 128``. ``skeleton`` (``HxW`` bool) may supply the ground-truth
    skeleton; it is computed with scikit-image otherwise. ``measure``: a :func:`new_measure` to reuse.
    """
    measure = measure or new_measure()
    pred_fg = pred > HCE_THRESHOLD
    gt_fg = gt > HCE_THRESHOLD
    if skeleton is None:
        # the measure's own path: on a {0, 1} map its normalisation and > 0.5 are the > 128 above
        return int(measure.cal_hce(pred_fg, gt_fg))
    return _correction_effort(measure, pred_fg, gt_fg, skeleton.astype(bool))
