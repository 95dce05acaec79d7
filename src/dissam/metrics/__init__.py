"""The paper's evaluation: maxFm, wFmeasure, MAE, Smeasure, meanEm, HCE, mIoU and mBIoU.

Inputs are 8-bit maps, ``pred`` and ``gt`` both ``HxW uint8`` of the same size: the saved prediction
PNG (soft or binary) and the ground truth, as ``cv2.imread(..., IMREAD_GRAYSCALE)`` returns them.

* SOC metrics (maxFm, wFmeasure, MAE, Smeasure, meanEm; :mod:`dissam.metrics.soc`): ground truth
  ``> 128``, prediction ``/255`` then min-max normalised per image, SOCToolbox's S-measure.
* ``maxFm`` (beta² = 0.3) is the maximum over the 256 uint8 thresholds of the **dataset-mean
  per-image F curve**; ``meanEm`` is the mean over thresholds of the dataset-mean E curve.
* ``HCE`` (:mod:`dissam.metrics.correction_effort`; relax 5, RDP epsilon 2.0, maps binarised at
  ``> 128``): its value depends on the OpenCV version; report ``cv2.__version__`` with it.
* ``mIoU`` / ``mBIoU`` (:mod:`dissam.metrics.boundary`): per-image IoU of the foreground at ``>= 128``
  and of the boundary bands, 0 when the prediction is empty; the dataset value is the mean.

Per-image values are computed by :class:`ImageMetrics` (a picklable :class:`ImageResult` per image)
so that a process pool can compute them; :class:`MetricSuite` aggregates them in insertion order, so a
parallel run that adds the results in the serial order gives bit-identical numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dissam.choices import METRICS
from dissam.errors import DisSamError
from dissam.metrics.boundary import (
    BOUNDARY_DILATION_RATIO,
    IOU_THRESHOLD,
    iou_and_boundary_iou,
    mask_to_boundary,
)
from dissam.metrics.correction_effort import (
    HCE_EPSILON,
    HCE_RELAX,
    HCE_THRESHOLD,
    SkeletonCache,
    gt_skeleton,
    hce,
    new_measure,
    skeleton_for,
    skeleton_source,
)
from dissam.metrics.soc import F_BETA2, e_curve, f_curves, mae, normalize_pair, s_measure, weighted_f

__all__ = [
    "ALL_METRICS",
    "LOWER_IS_BETTER",
    "CURVE_THRESHOLDS",
    "check_metrics",
    "ImageResult",
    "ImageMetrics",
    "compute_image",
    "MetricSuite",
    "evaluate_arrays",
    "hce",
    "gt_skeleton",
    "SkeletonCache",
    "mask_to_boundary",
    "iou_and_boundary_iou",
    "HCE_RELAX",
    "HCE_EPSILON",
    "HCE_THRESHOLD",
    "IOU_THRESHOLD",
    "BOUNDARY_DILATION_RATIO",
    "F_BETA2",
]

ALL_METRICS: tuple[str, ...] = METRICS
"""Metric keys in the order of the paper's table."""

LOWER_IS_BETTER = frozenset({"MAE", "HCE"})

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


class ImageMetrics:
    """Computes the selected metrics of one pair at a time (:meth:`__call__`); reusable across images
    and cheap to build (one per worker process).

    Args:
        metrics: which of :data:`ALL_METRICS` to compute.
        gt_skeleton_cache: ``None`` (compute HCE's skeleton each time), a folder (skeleton PNGs keyed by
            a hash of the binarised ground truth) or a dict-like in memory.
    """

    def __init__(self, metrics: Sequence[str] = ALL_METRICS, gt_skeleton_cache=None):
        self.metrics = check_metrics(metrics)
        self.skeleton_cache = skeleton_source(gt_skeleton_cache)
        self._hce = new_measure() if "HCE" in self.metrics else None

    def __call__(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> ImageResult:
        """The metrics of one ``HxW`` uint8 prediction against its ``HxW`` uint8 ground truth."""
        _check_pair(pred, gt, name)
        want = set(self.metrics)
        values: dict[str, float] = {}
        curves: dict[str, np.ndarray] = {}
        if want & {"maxFm", "wFmeasure", "MAE", "Smeasure", "meanEm"}:
            p, g = normalize_pair(pred, gt)  # done once for all five
            if "maxFm" in want:
                curves.update(f_curves(p, g))
                values["maxFm"] = float(curves["fm"].max())
            if "wFmeasure" in want:
                values["wFmeasure"] = weighted_f(p, g)
            if "MAE" in want:
                values["MAE"] = mae(p, g)
            if "Smeasure" in want:
                values["Smeasure"] = s_measure(p, g)
            if "meanEm" in want:
                curves["em"] = e_curve(p, g)
                values["meanEm"] = float(curves["em"].mean())
        if "HCE" in want:
            skel = None
            if self.skeleton_cache is not None:
                skel = skeleton_for(self.skeleton_cache, gt > HCE_THRESHOLD)
            values["HCE"] = float(hce(pred, gt, skeleton=skel, measure=self._hce))
        if want & {"mIoU", "mBIoU"}:
            iou, biou = iou_and_boundary_iou(pred, gt)
            values["mIoU"], values["mBIoU"] = iou, biou
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
    return ImageMetrics(metrics, gt_skeleton_cache)(pred, gt, name)


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
        self._computer = ImageMetrics(metrics, gt_skeleton_cache)
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
