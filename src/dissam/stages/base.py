"""The stage-1 interface: a box prompt in, a coarse mask out.

DIS-SAM's refiner needs only a coarse mask and a box (its input is ``[R, G, B, coarse mask, box
map]``); nothing ties it to the first SAM. Every stage 1 (SAM, HQ-SAM, SAM 2.1, SAM 3, U²-Netp,
GrabCut, and third-party ones) therefore implements :class:`Stage1`: ``set_image`` then
``coarse_masks``, a ``name``, and a per-image state that can be taken out and put back (a server keeps
one per image instead of re-encoding). Stages whose image encoder can run on another backend or
precision also implement :class:`ConfigurableRuntime`.

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive; masks are
``H x W`` bool at the original size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dissam.errors import DisSamError
from dissam.io import ImageLike, read_image

__all__ = ["Stage1", "ConfigurableRuntime", "TextStage", "Instances", "ImageKeepingStage"]


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

    def get_image_state(self) -> object:
        """What :meth:`set_image` computed for the current image (an opaque, immutable value:
        references, not copies), or ``None`` when no image is set."""

    def set_image_state(self, state: object) -> None:
        """Make the image of a state from :meth:`get_image_state` current again (``None``: no image)."""


@runtime_checkable
class ConfigurableRuntime(Protocol):
    """A stage whose image encoder runs on a chosen backend and precision (SAM's: torch or ONNX
    Runtime, fp32, bf16/fp16 autocast or int8)."""

    def use_runtime(self, backend: str, precision: str) -> None:
        """Run the image encoder with ``backend`` (``"torch"``, ``"onnx"``, ``"auto"``) at
        ``precision``; raises :class:`~dissam.errors.DisSamError` for a pair it does not support."""


class ImageKeepingStage:
    """The per-image part of a stage that keeps only the image (GrabCut, the U²-Netp stages: their
    networks or algorithms run per box): ``set_image`` reads it, and the image is the state."""

    _image: np.ndarray | None = None

    def set_image(self, image: ImageLike) -> None:
        self._image = read_image(image)

    def get_image_state(self) -> np.ndarray | None:
        """The current image (nothing else is kept per image)."""
        return self._image

    def set_image_state(self, state: np.ndarray | None) -> None:
        self._image = state

    def _require_image(self) -> np.ndarray:
        if self._image is None:
            raise DisSamError("set_image must be called before predicting")
        return self._image


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
