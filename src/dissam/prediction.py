"""What a prediction returns: :class:`Prediction` for a box, :class:`TextPrediction` for an instance
of a text prompt.

Arrays are at the original image size: ``H x W``; boxes are XYXY pixels, ``(x1, y1)`` inclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Prediction", "TextPrediction", "slug"]


@dataclass
class Prediction:
    """The result for one box.

    Attributes:
        soft: float32 ``H x W`` refined probability map in [0, 1] (refiner d1, original size).
        mask: bool ``H x W`` binary mask (``soft > threshold`` or Otsu).
        coarse: bool ``H x W`` coarse mask that was fed to the refiner (stage 1's, or the one given).
        box: float64 ``(4,)`` XYXY box the refiner was given, after clipping to the image (with point
            prompts and no box: the corrected coarse mask's tight box).
        low_res_logits: float32 ``1 x h x w`` low-resolution logits of stage 1's chosen mask (SAM-like
            stages, prompts given as points / ``prompts=``): pass them as the next call's
            ``mask_input`` to iterate; ``None`` otherwise.
    """

    soft: np.ndarray
    mask: np.ndarray
    coarse: np.ndarray
    box: np.ndarray
    low_res_logits: np.ndarray | None = None


@dataclass
class TextPrediction(Prediction):
    """A :class:`Prediction` for one instance of a text prompt.

    Attributes (besides ``soft``, ``mask``, ``coarse``, ``box``):
        text: the prompt.
        index: the instance's rank (0 = highest score).
        score: SAM 3's detection score in [0, 1].
    """

    text: str = ""
    index: int = 0
    score: float = 0.0

    @property
    def label(self) -> str:
        """``prompt_index`` with the prompt made file-name safe (``"red car"`` -> ``red-car_0``)."""
        return f"{slug(self.text)}_{self.index}"


def slug(text: str) -> str:
    """A file-name-safe form of a prompt: lower case, runs of other characters become ``-``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.strip().lower()).strip("-")
    return s[:48] or "prompt"
