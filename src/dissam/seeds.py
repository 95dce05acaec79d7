"""Point prompts for the weight-free stage 1s (GrabCut, U²-Netp): clicks as hard seeds.

A positive click says "this is the object", a negative one "this is not". Without a network that
reads clicks, they become seeds: a disc of :func:`dissam.points.seed_radius` pixels (``r``) around
each point is sure foreground or sure background (:func:`dissam.points.seed_labels`). A stage first
makes its mask for the working box (:func:`dissam.points.working_box`: the box grown to hold the
positive seeds, or the box derived from the points) with the seeds held fixed wherever it runs
GrabCut (``GC_FGD`` / ``GC_BGD``); then :func:`correct_with_seeds` applies each click, in order, to
that mask (:func:`click_zone`):

1. **The region the click is on**: for a negative click, the mask's 8-connected component at the
   click; for a positive click, the component of the working box outside the mask at the click. (The
   disc of ``2 r`` around the click is joined to that side first: a seed held fixed by GrabCut leaves
   a hole of about that size around itself.) The click acts only within its reach: a disc of
   :data:`REACH_FACTOR` times its depth (its distance to the edge of the region joined with that
   disc), so at least ``4 r``. In the click simulation, and mostly by hand, a click sits in the middle of what it means:
   a click on a thin strip along the object's edge reaches a few pixels, a click in the middle of a
   swallowed neighbour reaches all of it.
2. **The pixels of it that look like the click**: those whose colour (CIE Lab, OpenCV's 8-bit
   scale) is (a) within a tolerance of the click's colour (the median over a disc of a third of
   ``r``, robust to a seed disc that straddles an edge) and (b) nearer to it than to any of the
   :data:`REFERENCE_COLOURS` main colours (k-means) of the other side, as far as that side is known,
   among its pixels outside the tolerance: the opposite clicks' discs and this side beyond the
   region (for a negative click: the rest of the mask; for a positive one: the box outside the mask
   beyond the region), or, with neither, the region's pixels farther than ``4 r`` from the click.
   The tolerance is :data:`SPREAD_FACTOR` times the colours' RMS spread under the seed disc, clipped
   to :data:`COLOUR_TOLERANCE`: a click on a flat colour takes that colour, a click on a noisy or
   textured patch tolerates more. When the other side is known (opposite clicks, or this side beyond
   the region) and at least :data:`SHARED_COLOUR` of it has the click's colour, colour cannot tell
   the two apart and the click flips only its seed disc (step 4).
3. **Flip them**: a negative click removes all of them within its reach from the mask (it says
   "this colour is not the object here": the background seen through a fence's or a tree's many
   holes goes with one click), and with them the pieces of the region left that lie entirely within
   :data:`FRINGE_WIDTH` pixels of what was removed, are smaller than :data:`FRINGE_SHARE` of it and
   touch no positive click (blended edges, a halo); a positive click adds those connected to a pixel
   within ``2 r`` of the click (an addition stays next to the click).
4. Finally every positive disc is foreground (inside the working box) and every negative disc
   background; where discs overlap, the later click wins.

So a negative click on a neighbour the mask swallowed takes the neighbour away, whether it is a
separate blob or joined to the object (the object has other colours), a negative click on
background the mask spilled into takes that background away, and a positive click on a part the
mask missed adds that part, as far as its colour differs from what surrounds it. A click changes
only the region it is on; the correction is array work (no further GrabCut run).

Masks are ``H x W`` bool; images ``H x W x 3`` uint8 RGB; boxes XYXY pixels, ``(x1, y1)`` inclusive;
seed maps int8 ``H x W`` (1 sure foreground, 0 sure background, -1 free).
"""

from __future__ import annotations

import cv2
import numpy as np

from dissam.coarse import GRABCUT_SEED

__all__ = ["correct_with_seeds", "click_zone", "positive_components", "COLOUR_TOLERANCE", "SPREAD_FACTOR",
           "REFERENCE_COLOURS", "REACH_FACTOR", "SHARED_COLOUR", "FRINGE_WIDTH", "FRINGE_SHARE"]

COLOUR_TOLERANCE = (12.0, 32.0)
"""Bounds of a click zone's colour tolerance: Euclidean distance in OpenCV's 8-bit CIE Lab (L, a, b
each 0..255)."""
SPREAD_FACTOR = 3.0
"""A click zone's colour tolerance is this many times the RMS colour spread under the click's disc
(clipped to :data:`COLOUR_TOLERANCE`): a click on a noisy or textured patch tolerates more."""
REFERENCE_COLOURS = 4
"""Main colours (k-means) of the other side that a click's patch must be farther from than from the
click's colour."""
REACH_FACTOR = 2.0
"""A click acts within this many times its depth in its region (the distance from the click to the
edge of the region joined with the disc of twice the seed radius around the click)."""
SHARED_COLOUR = 0.25
"""When at least this share of the other side's known pixels (the opposite clicks' discs and this
side beyond the region) has the click's colour, the colour does not tell the two apart: the click
flips its seed disc only."""
FRINGE_WIDTH = 3
"""Pieces a negative click leaves of its region that lie entirely within this many pixels of what it
removed, are smaller than :data:`FRINGE_SHARE` of it and touch no positive click (blended edges, a
halo) are removed too."""
FRINGE_SHARE = 0.2


def _disc(shape: tuple[int, int], x: float, y: float, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - round(y)) ** 2 + (xx - round(x)) ** 2 <= radius * radius


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(-1)[:4])
    inside = np.zeros(shape, bool)
    inside[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = True
    return inside


def positive_components(labels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The component numbers (of ``labels``, 8-connected components, 0 = none) that overlap a positive
    seed disc grown by one pixel."""
    grown = cv2.dilate((seeds == 1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    found = np.unique(labels[grown])
    return found[found > 0]


def _main_colours(pixels: np.ndarray) -> np.ndarray:
    """Up to :data:`REFERENCE_COLOURS` main colours of ``pixels`` (``N x 3`` Lab): k-means (OpenCV,
    k-means++ seeded with :data:`dissam.coarse.GRABCUT_SEED`) on at most 4096 of them, evenly spaced."""
    if len(pixels) == 0:
        return np.zeros((0, 3), np.float32)
    sample = np.ascontiguousarray(pixels[:: max(1, len(pixels) // 4096)], dtype=np.float32)
    k = min(REFERENCE_COLOURS, len(sample))
    cv2.setRNGSeed(GRABCUT_SEED)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(sample, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres


def click_zone(lab: np.ndarray, mask: np.ndarray, seeds: np.ndarray, click: tuple[float, float], positive: bool,
               radius: int, box) -> np.ndarray:
    """The pixels one click flips (bool ``H x W``), by steps 1-2 of the module docstring.

    ``lab``: the image in OpenCV's 8-bit CIE Lab, float32 ``H x W x 3``; ``mask``: the current mask;
    ``seeds``: the seed map of all clicks; ``click``: ``(x, y)``; ``radius``: the seed radius ``r``;
    ``box``: the working box."""
    shape = mask.shape
    in_box = _box_mask(shape, box)
    side = (~mask & in_box) if positive else mask
    near = _disc(shape, click[0], click[1], 2 * radius)
    _, labels = cv2.connectedComponents((side | (near & in_box)).astype(np.uint8), connectivity=8)
    x, y = int(round(click[0])), int(round(click[1]))
    region = (labels == labels[y, x]) & side if labels[y, x] else np.zeros(shape, bool)
    if not region.any():
        return region
    # the click's reach: twice its depth in the region (the click sits in the middle of what it means)
    seed_disc = _disc(shape, click[0], click[1], radius)
    depth = float(cv2.distanceTransform(np.pad(region | near, 1).astype(np.uint8), cv2.DIST_L2,
                                        cv2.DIST_MASK_PRECISE)[y + 1, x + 1])
    reach = _disc(shape, click[0], click[1], max(2 * radius, REACH_FACTOR * depth))
    # the click's colour: its core (a third of the seed radius), robust to a disc that straddles an edge
    core = lab[_disc(shape, click[0], click[1], max(1, radius // 3))]
    centre = np.median(core, axis=0)
    disc = lab[seed_disc]
    spread = float(np.sqrt(((disc - disc.mean(axis=0)) ** 2).sum(axis=1).mean()))
    tolerance = float(np.clip(SPREAD_FACTOR * spread, *COLOUR_TOLERANCE))
    pixels = lab[region]
    d_click = np.sqrt(((pixels - centre) ** 2).sum(axis=1))
    like_click = d_click <= tolerance
    # ... and nearer to it than to any main colour of the other side (the colours there unlike the click's)
    reference = (seeds == (0 if positive else 1)) | (side & ~region)
    known = reference.any()
    if not known:
        reference = region & ~_disc(shape, click[0], click[1], 4 * radius)
    ref_pixels = lab[reference]
    unlike = np.sqrt(((ref_pixels - centre) ** 2).sum(axis=1)) > tolerance
    if known and (~unlike).mean() >= SHARED_COLOUR:  # the other side has the click's colour too
        return np.zeros(shape, bool)
    others = _main_colours(ref_pixels[unlike])
    for colour in others:  # one colour at a time: no N x K x 3 temporary on a large photo
        like_click &= d_click < np.sqrt(((pixels - colour) ** 2).sum(axis=1))
    zone = np.zeros(shape, bool)
    zone[region] = like_click
    zone &= reach
    if positive:  # an addition stays next to the click
        _, parts = cv2.connectedComponents(zone.astype(np.uint8), connectivity=8)
        on_click = np.unique(parts[near & zone])
        zone = np.isin(parts, on_click[on_click > 0])
    elif zone.any():  # fringes the removal leaves behind (blended edges, a halo) go with it
        n, rest, stats, _ = cv2.connectedComponentsWithStats((region & ~zone).astype(np.uint8), connectivity=8)
        band = cv2.dilate(zone.astype(np.uint8), np.ones((2 * FRINGE_WIDTH + 1,) * 2, np.uint8)) > 0
        outside_band = np.unique(rest[(region & ~zone) & ~band])
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < FRINGE_SHARE * zone.sum())
        fringes = np.setdiff1d(small[small > 0], np.concatenate([outside_band, positive_components(rest, seeds)]))
        zone |= np.isin(rest, fringes)
    return zone


def correct_with_seeds(image: np.ndarray, mask: np.ndarray, box, seeds: np.ndarray, coords: np.ndarray,
                       labels: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (a stage's bool ``H x W`` mask for the working ``box``) corrected by the clicks
    ``coords`` (``P x 2`` ``(x, y)``) with ``labels`` (1 / 0), in order, by the rule of the module
    docstring; ``seeds`` is their seed map and ``radius`` its disc radius. Returns bool ``H x W``."""
    out = np.asarray(mask, bool).copy()
    lab = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    for (x, y), label in zip(np.asarray(coords, np.float64).reshape(-1, 2), np.asarray(labels).reshape(-1)):
        zone = click_zone(lab, out, seeds, (x, y), bool(label), radius, box)
        out = (out | zone) if label else (out & ~zone)
    out |= (seeds == 1) & _box_mask(out.shape, box)
    out &= seeds != 0
    return out
