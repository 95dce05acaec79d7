"""GrabCut as stage 1: OpenCV's GrabCut seeded by the box, no weights at all.

Lower quality than SAM and the bundled U²-Netp; for when neither can run. The algorithm itself is
:func:`dissam.coarse.grabcut_mask` (deterministic: OpenCV's generator is seeded before each run).
Images larger than ``max_side`` (default 1024) are segmented on a downscaled copy: a 3 MP photograph
takes about 20 s at full size on one core.

Point prompts (:meth:`GrabCutStage.prompt_masks`) are hard seeds: GrabCut runs on the working box
(:func:`dissam.points.working_box`) with a disc around each click held sure foreground or sure
background (``GC_FGD`` / ``GC_BGD``), then :func:`dissam.seeds.correct_with_seeds` flips the part of
the region each click is on that looks like the click (a negative click removes it, a positive one
adds it).

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive; points ``(x, y)``
pixels; masks are ``N x H x W`` bool at the original size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dissam.coarse import GRABCUT_MAX_SIDE, grabcut_mask
from dissam.points import Prompt
from dissam.seeds import correct_with_seeds
from dissam.stages.base import ImageKeepingStage, PromptMasks, seeded_prompts

__all__ = ["GrabCutStage", "load_stage"]


class GrabCutStage(ImageKeepingStage):
    """Stage 1 ``grabcut``: :func:`dissam.coarse.grabcut_mask` per box.

    Args:
        iterations: GrabCut iterations.
        max_side: GrabCut runs on a copy whose longer side is at most this (``None``: full size).
    """

    name = "grabcut"

    def __init__(self, iterations: int = 5, max_side: int | None = GRABCUT_MAX_SIDE):
        self.iterations = iterations
        self.max_side = max_side

    def coarse_masks(self, boxes: np.ndarray, selection: str = "first") -> np.ndarray:
        """``N x 4`` XYXY boxes -> ``N x H x W`` bool masks (``selection`` is ignored: one output)."""
        image = self._require_image()
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, *image.shape[:2]), dtype=bool)
        return np.stack([grabcut_mask(image, b, iters=self.iterations, max_side=self.max_side) > 127
                         for b in boxes])

    def prompt_masks(self, prompts: Sequence[Prompt], selection: str | Sequence[str] = "first") -> PromptMasks:
        """One mask per :class:`~dissam.points.Prompt` (:class:`~dissam.stages.base.PointStage`): a box
        alone as :meth:`coarse_masks`; with points, GrabCut on the working box with the seeds held
        fixed, corrected by :func:`dissam.seeds.correct_with_seeds`. No low-resolution logits
        (``None``); ``selection`` is ignored."""
        image = self._require_image()
        masks = []
        for p, seeds, box, radius in seeded_prompts(prompts, image.shape[:2], self.seed_radius, self.name):
            mask = grabcut_mask(image, box, iters=self.iterations, max_side=self.max_side, seeds=seeds) > 127
            if seeds is not None:
                mask = correct_with_seeds(image, mask, box, seeds, p.point_coords, p.point_labels, radius)
            masks.append(mask)
        return PromptMasks(np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool), [None] * len(masks))


def load_stage(source=None, device=None) -> GrabCutStage:
    """The registry's loader of stage ``grabcut`` (it has no weights: ``source`` and ``device`` are
    ignored)."""
    return GrabCutStage()
