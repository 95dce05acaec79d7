"""The paper's evaluation: maxFm, wFmeasure, MAE, Smeasure, meanEm, HCE, mIoU and mBIoU.

Conventions (see ``docs/evaluation.md``):

- Inputs are 8-bit maps, ``pred`` and ``gt`` both ``HxW uint8`` of the same size: the saved
  prediction PNG (soft or binary) and the ground truth, as ``cv2.imread(..., IMREAD_GRAYSCALE)``
  returns them.
- SOC metrics (maxFm, wFmeasure, MAE, Smeasure, meanEm) come from ``pysodmetrics``, which is the
  SOCToolbox code the authors ran: ground truth ``> 128``, prediction ``/255`` then min-max
  normalised per image (unless constant). One difference is restored here: SOCToolbox's S-measure
  object score uses the population standard deviation (``ddof=0``; pysodmetrics now uses 1).
- ``maxFm`` (beta^2 = 0.3) is the maximum over the 256 uint8 thresholds of the **dataset-mean
  per-image F curve**; ``meanEm`` is the mean over thresholds of the dataset-mean E curve.
- ``HCE`` (Qin et al., ECCV 2022; relax 5, RDP epsilon 2.0) is pysodmetrics'
  ``HumanCorrectionEffortMeasure`` fed with maps binarised at ``> 128``, as the official
  ``hce_metric_main.py`` does. Its value depends on the OpenCV version (contour and polygon
  routines): report ``cv2.__version__`` with it.
- ``mIoU`` / ``mBIoU`` (not in pysodmetrics, implemented here): per-image IoU of the foreground at
  ``>= 128`` and of the boundary bands (Boundary IoU, dilation ratio 0.02 of the diagonal), 0 when
  the prediction is empty; the dataset value is the mean over images.

Per-image values are computed by :func:`compute_image` (a picklable :class:`ImageResult`) so that
a process pool can compute them; :class:`MetricSuite` aggregates them in insertion order, so a
parallel run that adds the results in the serial order gives bit-identical numbers.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dissam.errors import DisSamError
from dissam.utils import atomic_write_bytes

ALL_METRICS: tuple[str, ...] = ("maxFm", "wFmeasure", "MAE", "Smeasure", "meanEm", "HCE", "mIoU", "mBIoU")
"""Metric keys in the order of the paper's table."""

LOWER_IS_BETTER = frozenset({"MAE", "HCE"})

HCE_RELAX = 5
HCE_EPSILON = 2.0
HCE_THRESHOLD = 128  # HCE binarises both maps at > 128
IOU_THRESHOLD = 128  # mIoU / mBIoU binarise at >= 128
BOUNDARY_DILATION_RATIO = 0.02
F_BETA2 = 0.3  # pysodmetrics' ``beta`` argument is beta^2

# index i of every curve corresponds to the uint8 threshold 255 - i (prediction >= threshold)
CURVE_THRESHOLDS = np.arange(255, -1, -1)


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """Validate metric names; returns them in :data:`ALL_METRICS` order without duplicates."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(",", " ").split() if m]
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise DisSamError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
    if not metrics:
        raise DisSamError(f"no metric selected; choose from {', '.join(ALL_METRICS)}")
    return tuple(m for m in ALL_METRICS if m in metrics)


# --------------------------------------------------------------------------------------------
# mIoU / mBIoU (the authors' deleted miou.py / mbiou.py, docs/evaluation.md)


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


# --------------------------------------------------------------------------------------------
# HCE with an optional precomputed ground-truth skeleton


def gt_skeleton(gt_fg: np.ndarray) -> np.ndarray:
    """Skeleton (``HxW`` bool) of the ground-truth foreground ``gt_fg`` (``HxW`` bool), as HCE uses it:
    scikit-image's 2-D ``skeletonize`` (Zhang's method)."""
    from skimage.morphology import skeletonize

    return skeletonize(gt_fg).astype(bool)


def _skeleton_key(gt_fg: np.ndarray) -> str:
    import skimage

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


def _as_skeleton_source(cache):
    if cache is None or isinstance(cache, SkeletonCache | MutableMapping):
        return cache
    return SkeletonCache(cache)


def _skeleton_from(cache, gt_fg: np.ndarray) -> np.ndarray:
    if isinstance(cache, SkeletonCache):
        return cache.get(gt_fg)
    key = _skeleton_key(gt_fg)
    skel = cache.get(key)
    if skel is None:
        skel = cache[key] = gt_skeleton(gt_fg)
    return skel


def _smeasure():
    import py_sod_metrics as psm
    from py_sod_metrics.sod_metrics import EPS

    class _SOCSmeasure(psm.Smeasure):
        """S-measure (Fan et al., ICCV 2017) exactly as SOCToolbox's ``metrics.py``, the code the
        authors ran: the object score uses the population standard deviation (``ddof=0``), where
        pysodmetrics >= 1.4 uses ``ddof=1`` (a difference of up to ~6e-7 per image)."""

        def s_object(self, x: np.ndarray) -> float:
            mean = np.mean(x)
            return 2 * mean / (np.power(mean, 2) + 1 + np.std(x) + EPS)

    return _SOCSmeasure()


def _hce_measure():
    from py_sod_metrics import HumanCorrectionEffortMeasure

    class _HCE(HumanCorrectionEffortMeasure):
        """pysodmetrics' HCE whose skeleton step can take a precomputed skeleton.

        ``cal_hce_with_skeleton`` is the relaxed-error computation of ``cal_hce`` with the
        skeleton passed in; it reuses the parent's boundary filtering and polygon counting, and
        the test suite checks that it equals ``cal_hce`` exactly.
        """

        def cal_hce_with_skeleton(self, pred: np.ndarray, gt: np.ndarray, skeleton: np.ndarray) -> int:
            kernel = self.morphology_kernel
            tp = pred & gt
            fp = pred & ~gt
            fn = gt & ~pred
            eroded_union = cv2.erode((pred | gt).astype(np.uint8), kernel, iterations=self.relax) > 0
            # false positives far enough from the union border, grown back inside the background
            fp_relaxed = fp & eroded_union
            for _ in range(self.relax):
                fp_relaxed = (cv2.dilate(fp_relaxed.astype(np.uint8), kernel) > 0) & ~gt
            fp_relaxed &= fp
            # false negatives likewise, plus every skeleton pixel that the prediction misses
            fn_relaxed = fn & eroded_union
            for _ in range(self.relax):
                fn_relaxed = (cv2.dilate(fn_relaxed.astype(np.uint8), kernel) > 0) & ~pred
            fn_relaxed &= fn
            fn_relaxed |= skeleton & ~tp

            contours_fp, _ = cv2.findContours(
                fp_relaxed.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE
            )
            bdies_fp, indep_fp = self.filter_conditional_boundary(contours_fp, fp_relaxed, tp | fn_relaxed)
            contours_fn, _ = cv2.findContours(
                fn_relaxed.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE
            )
            cond_fn = (~(tp | fp_relaxed | fn_relaxed)).astype(np.uint8)
            bdies_fn, indep_fn = self.filter_conditional_boundary(contours_fn, fn_relaxed, cond_fn)
            points = self.count_polygon_control_points(bdies_fp, epsilon=self.epsilon)
            points += self.count_polygon_control_points(bdies_fn, epsilon=self.epsilon)
            return int(points + indep_fp + indep_fn)

    return _HCE(relax=HCE_RELAX, epsilon=HCE_EPSILON)


def hce(pred: np.ndarray, gt: np.ndarray, skeleton: np.ndarray | None = None, _measure=None) -> int:
    """Human Correction Effort of one ``HxW`` uint8 prediction against its ``HxW`` uint8 ground truth.

    Both maps are binarised at ``> 128`` (official ``hce_metric_main.py``), then pysodmetrics'
    HumanCorrectionEffortMeasure (relax 5, RDP epsilon 2.0) counts polygon control points plus
    independent regions. ``skeleton`` (``HxW`` bool) may supply the ground-truth skeleton; it is
    computed with scikit-image otherwise. Depends on the OpenCV version.
    """
    measure = _measure or _hce_measure()
    pred_fg = pred > HCE_THRESHOLD
    gt_fg = gt > HCE_THRESHOLD
    if skeleton is None:
        # the stock code path: it normalises (/255, min-max) and thresholds at > 0.5, which on a
        # {0, 255} map is exactly the > 128 binarisation above
        return int(measure.cal_hce(pred_fg, gt_fg))
    return measure.cal_hce_with_skeleton(pred_fg, gt_fg, skeleton.astype(bool))


# --------------------------------------------------------------------------------------------
# per-image computation and aggregation


@dataclass
class ImageResult:
    """Everything one image contributes to the aggregate.

    ``values``: per-image numbers keyed like the aggregate (``maxFm`` is this image's max F,
    ``meanEm`` the mean of its E curve, ``mIoU`` its IoU, ...). ``curves``: float64 arrays of
    length 256 (index i = threshold 255 - i): ``fm``, ``precision``, ``recall`` and ``em``.
    """

    name: str | None
    values: dict[str, float]
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, **self.values}


class _Computer:
    """Holds the pysodmetrics measure objects (reused across images) for one metric selection."""

    def __init__(self, metrics: Sequence[str], gt_skeleton_cache=None):
        import py_sod_metrics as psm

        self.metrics = check_metrics(metrics)
        self.skeleton_cache = _as_skeleton_source(gt_skeleton_cache)
        with warnings.catch_warnings():  # Fmeasure is marked for removal in favour of FmeasureV2
            warnings.simplefilter("ignore")
            self.fm = psm.Fmeasure(beta=F_BETA2) if "maxFm" in self.metrics else None
        self.wfm = psm.WeightedFmeasure() if "wFmeasure" in self.metrics else None
        self.mae = psm.MAE() if "MAE" in self.metrics else None
        self.sm = _smeasure() if "Smeasure" in self.metrics else None
        self.em = psm.Emeasure() if "meanEm" in self.metrics else None
        self.hce = _hce_measure() if "HCE" in self.metrics else None

    def __call__(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> ImageResult:
        from py_sod_metrics.utils import prepare_data

        _check_pair(pred, gt, name)
        values: dict[str, float] = {}
        curves: dict[str, np.ndarray] = {}
        if any(m is not None for m in (self.fm, self.wfm, self.mae, self.sm, self.em)):
            p, g = prepare_data(pred, gt)  # pred /255 + min-max, gt > 128 (done once for all five)
            if self.fm is not None:
                self.fm.step(p, g, normalize=False)
                curves["fm"] = np.asarray(self.fm.changeable_fms.pop(), np.float64)
                curves["precision"] = np.asarray(self.fm.precisions.pop(), np.float64)
                curves["recall"] = np.asarray(self.fm.recalls.pop(), np.float64)
                self.fm.adaptive_fms.clear()
                values["maxFm"] = float(curves["fm"].max())
            if self.wfm is not None:
                self.wfm.step(p, g, normalize=False)
                values["wFmeasure"] = float(self.wfm.weighted_fms.pop())
            if self.mae is not None:
                self.mae.step(p, g, normalize=False)
                values["MAE"] = float(self.mae.maes.pop())
            if self.sm is not None:
                self.sm.step(p, g, normalize=False)
                values["Smeasure"] = float(self.sm.sms.pop())
            if self.em is not None:
                self.em.step(p, g, normalize=False)
                curves["em"] = np.asarray(self.em.changeable_ems.pop(), np.float64)
                self.em.adaptive_ems.clear()
                values["meanEm"] = float(curves["em"].mean())
        if self.hce is not None:
            skel = None
            if self.skeleton_cache is not None:
                skel = _skeleton_from(self.skeleton_cache, gt > HCE_THRESHOLD)
            values["HCE"] = float(hce(pred, gt, skeleton=skel, _measure=self.hce))
        if "mIoU" in self.metrics or "mBIoU" in self.metrics:
            iou, biou = iou_and_boundary_iou(pred, gt)
            if "mIoU" in self.metrics:
                values["mIoU"] = iou
            if "mBIoU" in self.metrics:
                values["mBIoU"] = biou
        values = {k: values[k] for k in self.metrics}
        return ImageResult(name=name, values=values, curves=curves)


def _check_pair(pred: np.ndarray, gt: np.ndarray, name: str | None) -> None:
    where = f" ({name})" if name else ""
    for label, arr in (("prediction", pred), ("ground truth", gt)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.dtype != np.uint8:
            desc = f"{arr.dtype} array of shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr)
            raise DisSamError(f"{label}{where} must be an HxW uint8 array, got {desc}")
    if pred.shape != gt.shape:
        raise DisSamError(
            f"prediction{where} is {pred.shape[1]}x{pred.shape[0]} but its ground truth is "
            f"{gt.shape[1]}x{gt.shape[0]}; resize the prediction to the ground-truth size first"
        )


def compute_image(
    pred: np.ndarray,
    gt: np.ndarray,
    name: str | None = None,
    metrics: Sequence[str] = ALL_METRICS,
    gt_skeleton_cache=None,
) -> ImageResult:
    """All selected metrics of one pair (``HxW`` uint8 each, same size). See :class:`MetricSuite`."""
    return _Computer(metrics, gt_skeleton_cache)(pred, gt, name)


class MetricSuite:
    """Accumulates the paper's metrics over images; aggregate with :meth:`results`.

    Args:
        metrics: which of :data:`ALL_METRICS` to compute (e.g. ``("maxFm", "MAE")`` for a fast
            in-training validation that skips HCE).
        gt_skeleton_cache: ``None`` (compute the HCE skeleton each time), a folder (skeleton PNGs
            keyed by a hash of the binarised ground truth) or a dict-like in memory.

    ``step(pred, gt)`` takes ``HxW`` uint8 maps of the same size (saved prediction, ground truth)
    and returns this image's values; ``results()`` returns the dataset numbers.
    """

    def __init__(self, metrics: Sequence[str] = ALL_METRICS, gt_skeleton_cache=None):
        self._computer = _Computer(metrics, gt_skeleton_cache)
        self.metrics = self._computer.metrics
        self.images: list[ImageResult] = []

    def step(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> dict:
        """Add one image; returns ``{"name": name, <metric>: per-image value, ...}``."""
        res = self._computer(pred, gt, name)
        self.images.append(res)
        return res.as_dict()

    def add(self, result: ImageResult) -> dict:
        """Add a result computed elsewhere (e.g. by :func:`compute_image` in a worker process)."""
        missing = [m for m in self.metrics if m not in result.values]
        if missing:
            raise ValueError(f"image result {result.name!r} lacks {missing}")
        self.images.append(result)
        return result.as_dict()

    def per_image(self) -> list[dict]:
        """Per-image values, in the order the images were added."""
        return [r.as_dict() for r in self.images]

    def _mean_curve(self, key: str) -> np.ndarray:
        return np.mean(np.array([r.curves[key] for r in self.images], dtype=np.float64), axis=0)

    def results(self) -> dict[str, float]:
        """Dataset numbers keyed ``maxFm, wFmeasure, MAE, Smeasure, meanEm, HCE, mIoU, mBIoU`` (the
        selected ones, in that order). maxFm = max of the mean F curve; meanEm = mean of the mean E
        curve; all others are means over images."""
        if not self.images:
            raise DisSamError("no image was evaluated")
        out: dict[str, float] = {}
        for m in self.metrics:
            if m == "maxFm":
                out[m] = float(self._mean_curve("fm").max())
            elif m == "meanEm":
                out[m] = float(self._mean_curve("em").mean())
            else:
                out[m] = float(np.mean(np.array([r.values[m] for r in self.images], dtype=np.float64)))
        return out

    def curves(self) -> dict[str, np.ndarray]:
        """Dataset-mean curves over the 256 thresholds (``thresholds[i] = 255 - i``, prediction
        ``>=`` threshold after min-max normalisation): ``fm``, ``precision``, ``recall`` (needs
        maxFm) and ``em`` (needs meanEm), each float64 of shape (256,)."""
        out: dict[str, np.ndarray] = {"thresholds": CURVE_THRESHOLDS.copy()}
        if not self.images:
            return out
        for key in ("fm", "precision", "recall", "em"):
            if all(key in r.curves for r in self.images):
                out[key] = self._mean_curve(key)
        return out


def evaluate_arrays(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], metrics: Sequence[str] = ALL_METRICS
) -> dict[str, float]:
    """Aggregate metrics of paired ``HxW`` uint8 predictions and ground truths (see :class:`MetricSuite`)."""
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise DisSamError(f"{len(preds)} predictions but {len(gts)} ground truths")
    suite = MetricSuite(metrics)
    for i, (p, g) in enumerate(zip(preds, gts)):
        suite.step(p, g, name=str(i))
    return suite.results()
