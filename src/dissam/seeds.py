"""Point prompts for the weight-free stage 1s (GrabCut, U²-Netp): clicks as hard seeds.

A positive click says "this is the object", a negative one "this is not". Without a network that
reads clicks, they become seeds: a disc of :func:`dissam.points.seed_radius` pixels around each
point is sure foreground or sure background (:func:`dissam.points.seed_labels`). A stage first makes
its mask for the working box (:func:`dissam.points.working_box`: the box grown to hold the positive
seeds, or the box derived from the points) with the seeds where it runs GrabCut; then
:func:`correct_with_seeds` applies the clicks to that mask:

1. the mask's 8-connected components are sorted by the seeds they touch (a component touches a
   seed when it overlaps the seed's disc grown by one pixel):
   * touching only negative seeds: **removed** (a negative click on a neighbour the mask swallowed
     takes the whole neighbour away);
   * touching negative and positive seeds: **split** by GrabCut, started from the rest of the mask
     plus the component's pixels nearer to a positive seed than to a negative one, the seeds held
     fixed: the parts GrabCut keeps that do not touch a negative seed stay;
   * touching none or only positive seeds: kept;
2. where a positive seed lies outside the mask, the connected region GrabCut (same run) adds around
   it is **added** (a positive click on a part the mask missed adds that part);
3. finally every positive disc is foreground and every negative disc background.

GrabCut runs only when step 1 splits a component or step 2 has a click to grow, at most once per
call (on a copy of at most 1024 px, :data:`dissam.coarse.GRABCUT_MAX_SIDE`). A click therefore
changes the region it is on and nothing far from it.

Masks are ``H x W`` bool; images ``H x W x 3`` uint8 RGB; boxes XYXY pixels, ``(x1, y1)`` inclusive.
"""

from __future__ import annotations

import cv2
import numpy as np

from dissam.coarse import GRABCUT_MAX_SIDE, grabcut_mask

__all__ = ["correct_with_seeds", "components_touching"]


def _grown(seed_mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(seed_mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def _distance_to(seed_mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest pixel of ``seed_mask`` (inf without one)."""
    if not seed_mask.any():
        return np.full(seed_mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~seed_mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-connected components of ``mask`` (bool ``H x W``) and which seeds each touches.

    Returns ``labels`` (int32 ``H x W``, 0 = not in the mask, 1..K = component), and bool ``(K + 1,)``
    arrays ``negative`` and ``positive``: component ``k`` overlaps a negative / positive seed disc grown
    by one pixel (index 0 is unused)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    negative = np.zeros(n, bool)
    positive = np.zeros(n, bool)
    negative[np.unique(labels[_grown(seeds == 0)])] = True
    positive[np.unique(labels[_grown(seeds == 1)])] = True
    negative[0] = positive[0] = False
    return labels, negative, positive


def correct_with_seeds(image: np.ndarray, mask: np.ndarray, box, seeds: np.ndarray,
                       max_side: int | None = GRABCUT_MAX_SIDE) -> np.ndarray:
    """``mask`` (a stage's bool ``H x W`` mask for ``box``) corrected by the clicks in ``seeds`` (int8
    ``H x W``: 1 sure foreground, 0 sure background, -1 free), by the rule of the module docstring.
    Returns bool ``H x W``."""
    mask = np.asarray(mask, bool)
    labels, negative, positive = components_touching(mask, seeds)
    removed = np.isin(labels, np.flatnonzero(negative & ~positive))
    contested = np.isin(labels, np.flatnonzero(negative & positive))
    kept = mask & ~removed & ~contested
    missed = (seeds == 1) & ~mask
    out = kept.copy()
    if contested.any() or missed.any():
        # GrabCut's first guess: a contested component splits between its seeds (each pixel goes with
        # the nearer seed), so that its colour models start from the object and the neighbour apart
        near_positive = _distance_to(seeds == 1) < _distance_to(seeds == 0)
        init = kept | (contested & near_positive)
        cut = grabcut_mask(image, box, max_side=max_side, init=init if init.any() else None, seeds=seeds) > 127
        # a contested component keeps what GrabCut keeps of it, minus the parts joined to a negative seed
        split = cut & contested
        if split.any():
            part_labels, part_negative, part_positive = components_touching(split, seeds)
            out |= np.isin(part_labels, np.flatnonzero(~part_negative | part_positive)) & split
        # a positive click outside the mask adds the region GrabCut grows around it
        added = cut & ~mask
        if added.any() and missed.any():
            add_labels, _, add_positive = components_touching(added, seeds)
            out |= np.isin(add_labels, np.flatnonzero(add_positive))
    h, w = mask.shape
    x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(-1)[:4])
    inside = np.zeros((h, w), bool)
    inside[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = True
    out |= (seeds == 1) & inside
    out &= seeds != 0
    return out
