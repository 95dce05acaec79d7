"""Point prompts: clicks on the object (label 1) and on what is not the object (label 0).

Conventions are SAM's (``segment_anything.SamPredictor.predict``):

* ``point_coords``: ``P x 2`` float pixels ``(x, y)`` of the original (EXIF-corrected) image, x to the
  right and y down; ``(x, y) = (3, 5)`` is the pixel in column 3, row 5, as for boxes
  (:mod:`dissam.boxes`). A point must lie on the image: ``-0.5 <= x < W - 0.5`` and
  ``-0.5 <= y < H - 0.5`` (every such point rounds to a pixel of the image).
* ``point_labels``: ``(P,)`` integers, ``1`` = on the object (a positive click), ``0`` = not on the
  object (a negative click).
* ``mask_input``: ``1 x h x w`` float32 low-resolution logits of a previous prediction of the same
  object (SAM and SAM 2.1: ``1 x 256 x 256``; SAM 3: ``1 x 288 x 288``), the official
  predictors' way to iterate: pass the ``low_res_logits`` a prediction returned.

A :class:`Prompt` holds one object's prompt: an optional box, optional points and an optional
``mask_input``; at least a box or one point.

For the weight-free stage 1s (GrabCut, U²-Netp) points are hard seeds: a disc of
:func:`seed_radius` pixels around each point is sure foreground (label 1) or sure background (label
0); without a box, their working box comes from the points (:func:`points_box`). What the refiner
is given as the box is :func:`refiner_box`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dissam.boxes import BoxFormat, box_from_mask, validate_boxes, widen_box
from dissam.choices import MASK_SELECTIONS, POINT_SELECTIONS
from dissam.errors import PointError

__all__ = [
    "Prompt", "make_prompt", "validate_prompt", "as_points", "as_mask_input", "resolve_selection",
    "SEED_RADIUS_SHARE", "MIN_SEED_RADIUS", "seed_radius", "seed_labels", "POINT_BOX_GROWTH",
    "points_box", "working_box", "refiner_box", "prompts_from_arrays",
]

SEED_RADIUS_SHARE = 0.01
"""A seed disc's radius as a share of the image's longer side (:func:`seed_radius`)."""
MIN_SEED_RADIUS = 2
"""The smallest seed radius in pixels."""
POINT_BOX_GROWTH = 0.25
"""Without a box, the weight-free stages' working box is the positive points' box grown on every
side by this share of the image's longer side (or by half the points' spread, if larger)."""


@dataclass(frozen=True, eq=False)
class Prompt:
    """One object's prompt (validated by :func:`validate_prompt`).

    Attributes:
        box: float64 ``(4,)`` XYXY pixels, ``(x1, y1)`` inclusive, or ``None``.
        point_coords: float64 ``P x 2`` ``(x, y)`` pixels, or ``None``.
        point_labels: int64 ``(P,)``, 1 = object, 0 = background, or ``None``.
        mask_input: float32 ``1 x h x w`` low-resolution logits of a previous prediction, or ``None``.
    """

    box: np.ndarray | None = None
    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    mask_input: np.ndarray | None = None

    @property
    def has_points(self) -> bool:
        return self.point_coords is not None and len(self.point_coords) > 0

    @property
    def num_points(self) -> int:
        return 0 if self.point_coords is None else len(self.point_coords)

    def positive(self) -> np.ndarray:
        """``K x 2`` coordinates of the positive points (``0 x 2`` when there are none)."""
        if not self.has_points:
            return np.zeros((0, 2))
        return self.point_coords[self.point_labels == 1]


def as_points(point_coords, point_labels, where: str = "point prompt") -> tuple[np.ndarray, np.ndarray]:
    """Check and convert points: ``P x 2`` coordinates (a single ``(2,)`` point is accepted) and ``P``
    labels -> float64 ``P x 2`` and int64 ``(P,)``. Raises :class:`PointError` for anything else."""
    if point_coords is None or point_labels is None:
        raise PointError(f"{where}: give both point_coords (P x 2, x, y pixels) and point_labels (P values, "
                         "1 = object, 0 = background)")
    try:
        coords = np.asarray(point_coords, dtype=np.float64)
        labels = np.asarray(point_labels)
    except (TypeError, ValueError) as exc:
        raise PointError(f"{where}: point_coords must be numbers, P x 2 (x, y); {exc}") from exc
    if coords.size == 0 and labels.size == 0:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    if coords.ndim == 1 and coords.size == 2:
        coords = coords[None]
    labels = labels.reshape(-1) if labels.ndim == 0 else labels
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise PointError(f"{where}: point_coords must be P x 2 (x, y), got shape {coords.shape}")
    if labels.ndim != 1 or len(labels) != len(coords):
        raise PointError(f"{where}: point_labels must hold one label per point ({len(coords)}), got shape "
                         f"{labels.shape}")
    if not np.all(np.isfinite(coords)):
        raise PointError(f"{where}: point_coords has non-finite values")
    if labels.dtype.kind not in "biuf" or not np.all(np.isin(labels, (0, 1))):
        raise PointError(f"{where}: point labels must be 1 (object) or 0 (background), got {labels.tolist()}")
    return coords, labels.astype(np.int64)


def as_mask_input(mask_input, where: str = "mask_input") -> np.ndarray:
    """``h x w`` or ``1 x h x w`` low-resolution logits -> float32 ``1 x h x w``."""
    arr = np.asarray(mask_input, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != 1 or min(arr.shape[1:]) < 1:
        raise PointError(f"{where} must be 1 x h x w low-resolution logits (a previous prediction's "
                         f"low_res_logits), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise PointError(f"{where} has non-finite values")
    return arr


def _check_on_image(coords: np.ndarray, hw: tuple[int, int], where: str) -> None:
    h, w = int(hw[0]), int(hw[1])
    outside = (coords[:, 0] < -0.5) | (coords[:, 0] >= w - 0.5) | (coords[:, 1] < -0.5) | (coords[:, 1] >= h - 0.5)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise PointError(f"{where}: point {i} ({coords[i, 0]:g}, {coords[i, 1]:g}) lies outside the {w}x{h} image")


def make_prompt(box=None, point_coords=None, point_labels=None, mask_input=None) -> Prompt:
    """A :class:`Prompt` from array-likes (shapes checked, not yet against an image)."""
    coords = labels = None
    if point_coords is not None or point_labels is not None:
        coords, labels = as_points(point_coords, point_labels)
        if len(coords) == 0:
            coords = labels = None
    b = None if box is None else np.asarray(box, dtype=np.float64).reshape(-1)
    return Prompt(b, coords, labels, None if mask_input is None else as_mask_input(mask_input))


def validate_prompt(prompt: Prompt, image_hw: tuple[int, int], box_format: BoxFormat = "xyxy",
                    where: str = "prompt") -> Prompt:
    """``prompt`` checked against an ``(H, W)`` image: the box validated and clipped
    (:func:`dissam.boxes.validate_boxes`), points checked to lie on the image; a prompt with neither a
    box nor a point is a :class:`PointError`."""
    box = None if prompt.box is None else validate_boxes(prompt.box, image_hw, box_format)[0]
    coords, labels = prompt.point_coords, prompt.point_labels
    if coords is not None or labels is not None:
        coords, labels = as_points(coords, labels, where)
        _check_on_image(coords, image_hw, where)
        if len(coords) == 0:
            coords = labels = None
    if box is None and coords is None:
        raise PointError(f"{where}: give a box, points or both")
    mask = None if prompt.mask_input is None else as_mask_input(prompt.mask_input, f"{where}: mask_input")
    return Prompt(box, coords, labels, mask)


def resolve_selection(prompt: Prompt, box_selection: str = "first", point_selection: str = "auto") -> str:
    """Which mask of a SAM-like stage feeds the refiner for ``prompt``.

    A box alone keeps ``box_selection`` (DIS-SAM's ``"first"``: the paper's pipeline is unchanged).
    A prompt with points or a ``mask_input`` takes ``point_selection``; ``"auto"`` is SAM's own advice:
    ``"best"`` of the three multimask outputs for one point alone (an ambiguous prompt), ``"single"``
    (``multimask_output=False``) for anything more (box and points, several points, a mask_input).
    """
    if point_selection not in POINT_SELECTIONS:
        raise PointError(f"unknown point mask selection {point_selection!r}: use one of {', '.join(POINT_SELECTIONS)}")
    if box_selection not in MASK_SELECTIONS:
        raise PointError(f"unknown mask selection {box_selection!r}: use one of {', '.join(MASK_SELECTIONS)}")
    if not prompt.has_points and prompt.mask_input is None:
        return box_selection
    if point_selection != "auto":
        return point_selection
    alone = prompt.num_points == 1 and prompt.box is None and prompt.mask_input is None
    return "best" if alone else "single"


# ---------------------------------------------------------------------------- hard seeds
def seed_radius(image_hw: tuple[int, int]) -> int:
    """The seed discs' radius in pixels: :data:`SEED_RADIUS_SHARE` of the longer side, rounded, at least
    :data:`MIN_SEED_RADIUS` (6 px on a 640 x 480 image, 10 px at 1024, 40 px at 4000)."""
    return max(MIN_SEED_RADIUS, int(round(SEED_RADIUS_SHARE * max(image_hw))))


def seed_labels(image_hw: tuple[int, int], coords: np.ndarray, labels: np.ndarray, radius: int) -> np.ndarray:
    """``H x W`` int8 seed map: ``1`` sure foreground, ``0`` sure background, ``-1`` unconstrained.

    Each point marks the pixels whose centres lie within ``radius`` pixels of its nearest pixel's
    centre; where discs of opposite labels overlap the later point wins (the latest click is the
    user's latest word)."""
    h, w = (int(v) for v in image_hw)
    out = np.full((h, w), -1, np.int8)
    r = int(radius)
    for (x, y), lab in zip(np.asarray(coords).reshape(-1, 2), np.asarray(labels).reshape(-1)):
        cx, cy = int(round(x)), int(round(y))
        y0, y1, x0, x1 = max(0, cy - r), min(h, cy + r + 1), max(0, cx - r), min(w, cx + r + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = int(lab)
    return out


def points_box(coords: np.ndarray, labels: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """The working box of the weight-free stages for points without a box: the tight box of the
    positive points grown on every side by ``max(POINT_BOX_GROWTH * max(H, W), spread / 2)``, where
    ``spread`` is the larger side of the points' box; clipped to the image. Negative points do not
    shape it. Raises :class:`PointError` when there is no positive point."""
    pos = np.asarray(coords, np.float64).reshape(-1, 2)[np.asarray(labels).reshape(-1) == 1]
    if len(pos) == 0:
        raise PointError("points without a box need at least one positive point (label 1) for this stage 1: "
                         "it has to know where the object is")
    h, w = image_hw
    x0, y0 = pos.min(axis=0)
    x1, y1 = pos.max(axis=0)
    grow = max(POINT_BOX_GROWTH * max(h, w), 0.5 * max(x1 - x0, y1 - y0))
    box = np.array([x0 - grow, y0 - grow, x1 + grow, y1 + grow])
    return widen_box(validate_boxes(box, image_hw)[0], image_hw)


def working_box(prompt: Prompt, image_hw: tuple[int, int], radius: int) -> np.ndarray:
    """The region a weight-free stage segments for ``prompt``: the box grown to hold every positive
    point's seed disc (a click on a part outside the box asks for that part), or :func:`points_box`
    without a box."""
    if prompt.box is None:
        return points_box(prompt.point_coords, prompt.point_labels, image_hw)
    box = np.asarray(prompt.box, np.float64).copy()
    pos = prompt.positive()
    if len(pos):
        h, w = image_hw
        box[:2] = np.minimum(box[:2], np.maximum(pos.min(axis=0) - radius, 0))
        box[2:] = np.maximum(box[2:], np.minimum(pos.max(axis=0) + radius, [w - 1, h - 1]))
    return box


def refiner_box(prompt: Prompt, coarse: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """The box the refiner is given with the corrected coarse mask ``coarse`` (``H x W`` bool).

    * With a box: that box; if a positive point lies outside it (the user asked for a part the box
      missed), the box grown to the tight box of ``coarse``.
    * Without a box: the tight box of ``coarse`` (as the paper's boxes are the tight boxes of
      objects); if ``coarse`` is empty, the positive points' box; with neither, the whole image.
    Always a valid XYXY box at least 2 px on each side (:func:`dissam.boxes.widen_box`).
    """
    h, w = image_hw
    tight = box_from_mask(coarse)
    if prompt.box is not None:
        box = np.asarray(prompt.box, np.float64).copy()
        pos = prompt.positive()
        outside = len(pos) and np.any((pos[:, 0] < box[0]) | (pos[:, 0] > box[2])
                                      | (pos[:, 1] < box[1]) | (pos[:, 1] > box[3]))
        if outside and tight is not None:
            box = np.concatenate([np.minimum(box[:2], tight[:2]), np.maximum(box[2:], tight[2:])])
        return box
    if tight is None:
        pos = prompt.positive()
        if len(pos) == 0:
            return np.array([0.0, 0.0, w - 1.0, h - 1.0])
        tight = np.concatenate([pos.min(axis=0), pos.max(axis=0)]).round().clip(0, [w - 1, h - 1, w - 1, h - 1])
    return widen_box(tight, image_hw)


def prompts_from_arrays(boxes=None, point_coords: Sequence | None = None, point_labels: Sequence | None = None,
                        mask_inputs: Sequence | None = None) -> list[Prompt]:
    """One :class:`Prompt` per object from parallel lists: ``boxes`` (``N x 4`` or ``None``),
    ``point_coords[i]`` (``P_i x 2`` or ``None``), ``point_labels[i]``, ``mask_inputs[i]``. The number of
    objects is the length of the first one given."""
    lengths = {name: len(v) for name, v in (("boxes", boxes), ("point_coords", point_coords),
                                            ("point_labels", point_labels), ("mask_inputs", mask_inputs))
               if v is not None}
    if not lengths:
        return []
    if len(set(lengths.values())) != 1:
        raise PointError("boxes, point_coords, point_labels and mask_inputs must have one entry per object, got "
                         + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
    n = next(iter(lengths.values()))

    def pick(seq, i):
        return None if seq is None else seq[i]

    return [make_prompt(pick(boxes, i), pick(point_coords, i), pick(point_labels, i), pick(mask_inputs, i))
            for i in range(n)]
