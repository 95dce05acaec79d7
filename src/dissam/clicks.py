"""Interactive segmentation measured the standard way: simulated corrective clicks and NoC.

The protocol (Xu et al., "Deep Interactive Object Selection", CVPR 2016; the rule of RITM's reference
evaluation, Sofiiuk et al. 2022, which later click-based methods report):

* **Where the next click goes** (:func:`next_click`): the errors of the current mask against the
  ground truth are the false negatives (object pixels the mask misses) and the false positives
  (mask pixels that are not object). Each error set's Euclidean distance transform is taken with the
  image border counting as a border (the mask is padded with one pixel of "no error"); the click goes
  to the error pixel farthest from any correct pixel, i.e. the centre of the largest disc that fits
  in an error region. It is **positive** (label 1) when that pixel is a false negative and
  **negative** (label 0) when it is a false positive; when the two maxima are equal the click is
  negative (RITM's ``fn_max > fp_max``). Among pixels with the same distance the first in row-major
  order (smallest y, then smallest x) is taken. No error left: no click.
* **Each step** (:func:`simulate`) predicts with the start prompt (the ground truth's box, or
  nothing) plus every click so far, and for SAM-like stages the previous prediction's low-resolution
  logits as ``mask_input`` (the official predictors' way to iterate); the IoU of the final binary
  mask with the ground truth (``>= 128``) is recorded after each click.
* **Stopping**: after :data:`MAX_CLICKS` (20) clicks, or once the IoU reaches ``stop_iou`` (0.90) with
  at least ``min_clicks`` (5, so that IoU@5 is measured) clicks made, or when no error is left. The
  IoU after a stop is carried forward (the mask would not change without a click).
* **NoC@t** (:func:`noc`): the number of clicks after which the IoU first reaches ``t``; a case that
  never does within 20 clicks counts 20. With a start box, a box that is already good enough gives
  NoC 0 (the box is free; the clicks are what is counted). NoC@85 and NoC@90 are the means over the
  cases; **IoU@k** is the mean IoU after ``k`` clicks (k = 1, 3, 5).

Masks are ``H x W`` bool; clicks ``(x, y)`` pixels of the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["Click", "ClickTrace", "MAX_CLICKS", "NOC_THRESHOLDS", "IOU_AT", "STOP_IOU", "MIN_CLICKS",
           "next_click", "mask_iou", "simulate", "noc", "summarize"]

MAX_CLICKS = 20
NOC_THRESHOLDS = (0.85, 0.90)
IOU_AT = (1, 3, 5)
STOP_IOU = 0.90
MIN_CLICKS = 5


@dataclass(frozen=True)
class Click:
    """A simulated click at pixel ``(x, y)``; ``positive``: label 1 (object), else 0 (background)."""

    x: int
    y: int
    positive: bool

    @property
    def label(self) -> int:
        return int(self.positive)


def _interior_distance(region: np.ndarray) -> np.ndarray:
    """Distance of each pixel of ``region`` to the nearest pixel outside it, the image border counting
    as outside (0 off the region)."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """The next corrective click for the mask ``pred`` against the ground truth ``gt`` (both bool
    ``H x W``), by the rule of the module docstring; ``None`` when ``pred`` equals ``gt``."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask {pred.shape} and ground truth {gt.shape} differ in size")
    fn, fp = gt & ~pred, pred & ~gt
    if not fn.any() and not fp.any():
        return None
    fn_dist, fp_dist = _interior_distance(fn), _interior_distance(fp)
    positive = bool(fn_dist.max() > fp_dist.max())
    dist = fn_dist if positive else fp_dist
    y, x = np.argwhere(dist == dist.max())[0]
    return Click(int(x), int(y), positive)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = int(np.count_nonzero(pred | gt))
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


@dataclass
class ClickTrace:
    """One case's simulation.

    Attributes:
        clicks: the clicks, in order.
        ious: float ``(max_clicks + 1,)``: ``ious[k]`` = IoU after ``k`` clicks; ``ious[0]`` is the start
            prompt's (NaN without one); values after a stop are carried forward.
        coarse_ious: the same for stage 1's coarse mask (NaN where the segmenter gives none).
        seconds: wall time of each prediction (the start prompt's first, when there is one).
    """

    clicks: list[Click] = field(default_factory=list)
    ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coarse_ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seconds: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"clicks": [[c.x, c.y, c.label] for c in self.clicks],
                "ious": [None if np.isnan(v) else round(float(v), 6) for v in self.ious],
                "coarse_ious": [None if np.isnan(v) else round(float(v), 6) for v in self.coarse_ious],
                "seconds": [round(s, 4) for s in self.seconds]}

    @classmethod
    def from_json(cls, data: dict) -> ClickTrace:
        def arr(values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls([Click(int(x), int(y), bool(lab)) for x, y, lab in data["clicks"]], arr(data["ious"]),
                   arr(data["coarse_ious"]), list(data.get("seconds", [])))


# segment(point_coords (K, 2), point_labels (K,), previous step's state or None)
#   -> (mask bool H x W, coarse mask bool H x W or None, state passed to the next step)
Segmenter = Callable[[np.ndarray, np.ndarray, object], tuple[np.ndarray, np.ndarray | None, object]]


def simulate(segment: Segmenter, gt: np.ndarray, *, start: bool = True, max_clicks: int = MAX_CLICKS,
             stop_iou: float = STOP_IOU, min_clicks: int = MIN_CLICKS, clock: Callable[[], float] | None = None,
             ) -> ClickTrace:
    """Simulate corrective clicks on one case (module docstring).

    Args:
        segment: the model under test (:data:`Segmenter`): called with every click so far and what
            its previous call returned as state (the previous low-resolution logits, for
            ``mask_input``); the start prompt, when there is one, is the segmenter's own business.
        gt: bool ``H x W`` ground truth.
        start: the segmenter has a start prompt (a box) and is called once before any click.
        max_clicks, stop_iou, min_clicks: the stopping rule.
        clock: a timer for :attr:`ClickTrace.seconds` (``time.perf_counter``); ``None``: not timed.
    """
    gt = np.asarray(gt, bool)
    ious = np.full(max_clicks + 1, np.nan)
    coarse_ious = np.full(max_clicks + 1, np.nan)
    trace = ClickTrace(ious=ious, coarse_ious=coarse_ious)
    coords, labels = np.zeros((0, 2)), np.zeros(0, np.int64)
    state: object = None
    pred = np.zeros_like(gt)

    def step(k: int) -> None:
        nonlocal pred, state
        t0 = clock() if clock else 0.0
        pred, coarse, state = segment(coords, labels, state)
        if clock:
            trace.seconds.append(clock() - t0)
        pred = np.asarray(pred, bool)
        ious[k] = mask_iou(pred, gt)
        if coarse is not None:
            coarse_ious[k] = mask_iou(np.asarray(coarse, bool), gt)

    if start:
        step(0)
    for k in range(1, max_clicks + 1):
        if ious[k - 1] >= stop_iou and k - 1 >= min_clicks:
            break
        click = next_click(pred, gt)
        if click is None:
            break
        trace.clicks.append(click)
        coords = np.vstack([coords, [[click.x, click.y]]])
        labels = np.append(labels, click.label)
        step(k)
    done = len(trace.clicks)
    ious[done + 1:] = ious[done]
    coarse_ious[done + 1:] = coarse_ious[done]
    return trace


def noc(ious: np.ndarray, threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """Clicks needed to reach ``threshold``: the smallest ``k`` with ``ious[k] >= threshold`` (``k = 0``
    counts when ``ious[0]``, the start prompt's IoU, is not NaN), else ``max_clicks``."""
    ious = np.asarray(ious, dtype=np.float64)[: max_clicks + 1]
    reached = np.flatnonzero(np.nan_to_num(ious, nan=-1.0) >= threshold)
    return int(reached[0]) if len(reached) else int(max_clicks)


def summarize(traces: Sequence[ClickTrace], thresholds: Sequence[float] = NOC_THRESHOLDS,
              iou_at: Sequence[int] = IOU_AT, max_clicks: int = MAX_CLICKS) -> dict:
    """Means over ``traces``: ``NoC@85``, ``NoC@90`` (and other thresholds, named by percent), the
    cases that never reach each threshold (``NoF@t``), ``IoU@0`` (the start prompt alone, when there
    is one), ``IoU@k`` and the same for stage 1's coarse mask (``coarse NoC@t``, ``coarse IoU@k``)."""
    out: dict = {"cases": len(traces)}
    if not traces:
        return out
    for key, series in (("", [t.ious for t in traces]), ("coarse ", [t.coarse_ious for t in traces])):
        arr = np.stack(series)
        if np.isnan(arr[:, 1:]).all():
            continue
        for t in thresholds:
            counts = [noc(s, t, max_clicks) for s in series]
            reached = [np.nan_to_num(np.asarray(s)[: max_clicks + 1], nan=-1.0).max() >= t for s in series]
            out[f"{key}NoC@{round(t * 100)}"] = float(np.mean(counts))
            out[f"{key}NoF@{round(t * 100)}"] = int(len(series) - sum(reached))
        if not np.isnan(arr[:, 0]).any():
            out[f"{key}IoU@0"] = float(arr[:, 0].mean())
        for k in (k for k in iou_at if k < arr.shape[1]):  # a run of fewer clicks has no IoU@5
            out[f"{key}IoU@{k}"] = float(np.nanmean(arr[:, k]))
    return out
