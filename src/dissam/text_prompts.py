"""Text prompts: a noun phrase in, one hair-fine mask per instance out.

SAM 3's detector (:class:`dissam.stages.sam3.Sam3TextStage`) finds the instances of the phrase; each
instance's box and coarse mask go to the refiner exactly as a user's box and a SAM mask would (the
refiner input stays ``[R, G, B, coarse mask, box map]``, with the box map drawn from the detected
box). All instances of one image are refined in one batched pass
(:meth:`dissam.DisSamPredictor.predict_text`).
"""

from __future__ import annotations

import os

from dissam.errors import NoMatchError
from dissam.prediction import TextPrediction, slug
from dissam.predictor import DisSamPredictor

__all__ = ["TextPrediction", "NoMatchError", "predict_text", "slug", "text_predictor"]


def predict_text(predictor: DisSamPredictor, text: str, score_threshold: float = 0.5,
                 max_instances: int | None = 10, allow_empty: bool = False) -> list[TextPrediction]:
    """All instances of ``text`` in ``predictor``'s current image, refined
    (:meth:`~dissam.DisSamPredictor.predict_text`)."""
    return predictor.predict_text(text, score_threshold, max_instances, allow_empty)


def text_predictor(source: str | os.PathLike, refiner: str | os.PathLike | None = None, device=None,
                   **kwargs) -> DisSamPredictor:
    """A :class:`~dissam.DisSamPredictor` for text prompts only: SAM 3's detector (``Sam3Model`` +
    tokenizer from ``source``, a folder or hub id) and the refiner; no box stage."""
    return DisSamPredictor.from_pretrained(refiner=refiner, device=device, stage1="none", text_model=source,
                                           **kwargs)
