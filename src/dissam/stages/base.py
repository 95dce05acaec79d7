"""The stage-1 interface: a box prompt in, a coarse mask out.

DIS-SAM's refiner needs only a coarse mask and a box (its input is ``[R, G, B, coarse mask, box
map]``); nothing ties it to the first SAM. Every stage 1 (SAM, HQ-SAM, SAM 2.1, SAM 3, U²-Netp,
GrabCut, and third-party ones) therefore implements :class:`Stage1`: ``set_image`` then
``coarse_masks``, a ``name``, and a per-image state that can be taken out and put back (a server keeps
one per image instead of re-encoding). Stages whose image encoder can run on another backend or
precision also implement :class:`ConfigurableRuntime`.

Point prompts are optional: a stage that takes them also implements :class:`PointStage`
(``prompt_masks``: one :class:`~dissam.points.Prompt` per object, a box and/or points and/or a
previous mask). Every bundled stage does; a third-party stage without it keeps working with boxes,
and :func:`require_point_stage` says clearly that it cannot take points.

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive; points are
``(x, y)`` pixels of the original image (:mod:`dissam.points`); masks are ``H x W`` bool at the
original size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dissam.errors import DisSamError, PointError
from dissam.io import ImageLike, read_image
from dissam.points import Prompt, seed_labels, seed_radius, validate_prompt, working_box

__all__ = ["Stage1", "ConfigurableRuntime", "TextStage", "Instances", "ImageKeepingStage", "PointStage",
           "PromptMasks", "require_point_stage", "per_prompt", "seeded_prompts"]


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


@dataclass
class PromptMasks:
    """What :meth:`PointStage.prompt_masks` returns for ``N`` prompts.

    Attributes:
        masks: bool ``N x H x W`` coarse masks at the original size.
        low_res_logits: per prompt, float32 ``1 x h x w`` low-resolution logits of the chosen mask (pass
            them back as the next prompt's ``mask_input`` to iterate, as SAM's predictor does), or
            ``None`` for a stage without them (GrabCut, U²-Netp).
    """

    masks: np.ndarray
    low_res_logits: list[np.ndarray | None]


@runtime_checkable
class PointStage(Protocol):
    """A stage 1 that also takes point prompts (and, for SAM-like models, a previous mask)."""

    name: str

    def prompt_masks(self, prompts: Sequence[Prompt], selection: str | Sequence[str] = "first") -> PromptMasks:
        """One coarse mask per :class:`~dissam.points.Prompt` (a box and/or points and/or a
        ``mask_input``, in original pixels) of the current image.

        ``selection`` (one for all prompts, or one per prompt) chooses among multimask outputs as in
        :meth:`Stage1.coarse_masks`. A prompt with a box only gives the mask ``coarse_masks`` gives
        for that box."""


def require_point_stage(stage: object) -> PointStage:
    """``stage`` if it takes point prompts, else a :class:`~dissam.errors.PointError` that says so."""
    if isinstance(stage, PointStage):
        return stage
    name = getattr(stage, "name", type(stage).__name__)
    raise PointError(f"stage 1 {name!r} takes boxes only, not point prompts: use a stage with "
                     "prompt_masks() (sam, sam-hq, sam2, sam3, grabcut, u2netp, u2netp-grabcut, u2netp-auto)")


def per_prompt(selection: str | Sequence[str], n: int) -> list[str]:
    """``selection`` (one value, or one per prompt) as a list of ``n`` values."""
    if isinstance(selection, str):
        return [selection] * n
    out = list(selection)
    if len(out) != n:
        raise DisSamError(f"{len(out)} mask selections for {n} prompts: give one, or one per prompt")
    return out


@runtime_checkable
class ConfigurableRuntime(Protocol):
    """A stage whose image encoder runs on a chosen backend and precision (SAM's: torch or ONNX
    Runtime, fp32, bf16/fp16 autocast or int8)."""

    def use_runtime(self, backend: str, precision: str) -> None:
        """Run the image encoder with ``backend`` (``"torch"``, ``"onnx"``, ``"auto"``) at
        ``precision``; raises :class:`~dissam.errors.DisSamError` for a pair it does not support."""


class ImageKeepingStage:
    """The per-image part of a stage that keeps only the image (GrabCut, the U²-Netp stages: their
    networks or algorithms run per box): ``set_image`` reads it, and the image is the state.

    ``seed_radius``: the radius in pixels of the discs that point prompts mark as sure foreground or
    background (``None``: :func:`dissam.points.seed_radius`, 1 % of the image's longer side)."""

    _image: np.ndarray | None = None
    seed_radius: int | None = None

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


def seeded_prompts(prompts: Sequence[Prompt], image_hw: tuple[int, int], radius: int | None,
                   name: str) -> Iterator[tuple[Prompt, np.ndarray | None, np.ndarray, int]]:
    """For a weight-free stage: each validated prompt with its seed map (int8 ``H x W``,
    :func:`dissam.points.seed_labels`; ``None`` without points), the box it segments (its own box,
    or :func:`dissam.points.working_box` with points) and the seed radius. A ``mask_input`` is a
    :class:`~dissam.errors.PointError`: these stages have no low-resolution logits to iterate on."""
    for i, prompt in enumerate(prompts):
        p = validate_prompt(prompt, image_hw, where=f"prompt {i}")
        if p.mask_input is not None:
            raise PointError(f"stage 1 {name!r} takes no mask_input (it returns no low-resolution logits); "
                             "pass the clicks again instead: every call uses all of them")
        r = seed_radius(image_hw) if radius is None else int(radius)
        if not p.has_points:
            yield p, None, p.box, r
            continue
        yield p, seed_labels(image_hw, p.point_coords, p.point_labels, r), working_box(p, image_hw, r), r


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
