"""The salient-object metrics of the paper's table, per image, with SOCToolbox's conventions (the
code the DIS-SAM authors ran): maxF and mean E curves, weighted F, MAE and the S-measure.

Conventions: the ground truth is foreground where ``> 128``; the prediction is divided by 255 and
min-max normalised per image (unless constant) -- :func:`normalize_pair`. F (beta² = 0.3), weighted F,
MAE and E come from pysodmetrics' published classes, one fresh object per image so that their results
are that image's. The S-measure (Fan et al., "Structure-measure: A New Way to Evaluate Foreground
Maps", ICCV 2017) is computed here: SOCToolbox's object score uses the population standard deviation
(``ddof=0``), where pysodmetrics >= 1.4 uses ``ddof=1`` (up to ~6e-7 per image apart).

Curves have 256 entries; index ``i`` belongs to the uint8 threshold ``255 - i`` (prediction >= threshold).
"""

from __future__ import annotations

import warnings

import numpy as np
import py_sod_metrics as psm

__all__ = ["F_BETA2", "S_ALPHA", "normalize_pair", "f_curves", "weighted_f", "mae", "e_curve", "s_measure"]

F_BETA2 = 0.3  # pysodmetrics' ``beta`` argument is beta^2
S_ALPHA = 0.5  # weight of the object score in the S-measure
_EPS = np.spacing(1)


def normalize_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``HxW`` uint8 prediction and ground truth -> float64 prediction in [0, 1] (``/255``, then min-max
    unless constant: MATLAB's ``mapminmax(im2double(...))``) and bool ground truth (``> 128``)."""
    p = pred / 255.0
    lo, hi = p.min(), p.max()
    if hi != lo:
        p = (p - lo) / (hi - lo)
    return p, gt > 128


def f_curves(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """F-measure (beta² = 0.3), precision and recall over the 256 thresholds, float64 ``(256,)`` each,
    for a :func:`normalize_pair` pair."""
    with warnings.catch_warnings():  # handler classes of older releases warn about their API
        warnings.simplefilter("ignore")
        measure = psm.FmeasureV2(metric_handlers={
            "fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=F_BETA2),
            "precision": psm.PrecisionHandler(with_dynamic=True, with_adaptive=False),
            "recall": psm.RecallHandler(with_dynamic=True, with_adaptive=False),
        })
    measure.step(pred, gt, normalize=False)
    res = measure.get_results()
    return {k: np.asarray(res[k]["dynamic"], np.float64) for k in ("fm", "precision", "recall")}


def weighted_f(pred: np.ndarray, gt: np.ndarray) -> float:
    """Weighted F-measure (Margolin et al., CVPR 2014) of a :func:`normalize_pair` pair."""
    measure = psm.WeightedFmeasure()
    measure.step(pred, gt, normalize=False)
    return float(measure.get_results()["wfm"])


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error of a :func:`normalize_pair` pair."""
    measure = psm.MAE()
    measure.step(pred, gt, normalize=False)
    return float(measure.get_results()["mae"])


def e_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Enhanced-alignment measure (Fan et al., IJCAI 2018) over the 256 thresholds, float64 ``(256,)``."""
    measure = psm.Emeasure()
    measure.step(pred, gt, normalize=False)
    return np.asarray(measure.get_results()["em"]["curve"], np.float64)


def _object_similarity(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    return 2.0 * mean / (mean * mean + 1.0 + float(np.std(x)) + _EPS)  # population std (ddof=0)


def _region_ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM of one region as the S-measure defines it (unbiased variances, ``N - 1 + eps``)."""
    n = pred.size
    mx, my = float(np.mean(pred)), float(np.mean(gt))
    dx, dy = pred - mx, gt - my
    var_x = float(np.sum(dx * dx)) / (n - 1 + _EPS)
    var_y = float(np.sum(dy * dy)) / (n - 1 + _EPS)
    cov = float(np.sum(dx * dy)) / (n - 1 + _EPS)
    num = 4.0 * mx * my * cov
    den = (mx * mx + my * my) * (var_x + var_y)
    if num != 0:
        return num / (den + _EPS)
    return 1.0 if den == 0 else 0.0


def s_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """S-measure of a :func:`normalize_pair` pair (``pred`` float in [0, 1], ``gt`` bool), as SOCToolbox.

    ``0.5 * object score + 0.5 * region score``, clipped at 0; an all-background ground truth scores
    ``1 - mean(pred)``, an all-foreground one ``mean(pred)``. The region score splits both maps at the
    ground truth's centroid (rounded, plus one, as MATLAB's ``1:X`` includes ``X``) into four parts and
    sums their SSIMs weighted by area."""
    gt_f = gt.astype(np.float64)
    share = float(np.mean(gt_f))
    if share == 0:
        return 1.0 - float(np.mean(pred))
    if share == 1:
        return float(np.mean(pred))
    obj = share * _object_similarity(pred[gt]) + (1 - share) * _object_similarity((1 - pred)[~gt])
    h, w = gt.shape
    cy, cx = (int(v) + 1 for v in np.argwhere(gt).mean(axis=0).round())
    area = h * w
    w_lt, w_rt, w_lb = cx * cy / area, cy * (w - cx) / area, (h - cy) * cx / area
    parts = (((slice(0, cy), slice(0, cx)), w_lt), ((slice(0, cy), slice(cx, w)), w_rt),
             ((slice(cy, h), slice(0, cx)), w_lb), ((slice(cy, h), slice(cx, w)), 1 - w_lt - w_rt - w_lb))
    region = 0.0
    for (rows, cols), weight in parts:
        if weight > 0:  # an empty part (centroid on the last row or column) weighs nothing
            region += _region_ssim(pred[rows, cols], gt_f[rows, cols]) * weight
    return max(0.0, S_ALPHA * obj + (1 - S_ALPHA) * region)
