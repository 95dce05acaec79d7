"""The stage-1 interface: a box prompt in, a coarse mask out.

DIS-SAM's refiner needs only a coarse mask and a box (its input is ``[R, G, B, coarse mask, box
map]``); nothing ties it to the first SAM. Every stage 1 (SAM, HQ-SAM, SAM 2.1, SAM 3, GrabCut)
therefore has the same two calls, ``set_image`` then ``coarse_masks``, and a ``name``. The existing
:class:`dissam.models.sam.SamStage` and :class:`dissam.predictor.GrabCutStage` already have them.

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive; masks are
``H x W`` bool at the original size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dissam.io import ImageLike


@runtime_checkable
class Stage1(Protocol):
    """What the predictor needs from a stage 1."""

    name: str

    def set_image(self, image: ImageLike) -> object:
        """Keep ``image`` (path, PIL image or ``H x W x 3`` uint8) and compute what every box shares
        (the image embedding for SAM-like models)."""

    def coarse_masks(self, boxes: np.ndarray, selection: str = "first") -> np.ndarray:
        """``N x 4`` XYXY boxes (original pixels) -> ``N x H x W`` bool coarse masks.

        ``selection`` chooses among a model's multimask outputs: ``"first"`` (mask 0, the DIS-SAM
        authors' choice), ``"best"`` (highest predicted IoU) or ``"single"`` (the single-output
        token). Stages with one output ignore it."""


@dataclass
class Instances:
    """What a text prompt found in one image (sorted by score, best first).

    Attributes:
        boxes: float64 ``N x 4`` XYXY pixels, ``(x1, y1)`` inclusive, clipped to the image.
        masks: bool ``N x H x W`` coarse masks at the original size.
        scores: float32 ``(N,)`` detection scores in [0, 1].
    """

    boxes: np.ndarray
    masks: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@runtime_checkable
class TextStage(Protocol):
    """A stage 1 that also finds objects from a text prompt (SAM 3)."""

    name: str

    def set_image(self, image: ImageLike) -> object: ...

    def find(self, text: str, score_threshold: float = 0.5, max_instances: int | None = None) -> Instances:
        """All instances of ``text`` in the current image with score ``>= score_threshold``."""

