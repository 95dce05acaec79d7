"""Text prompts: a noun phrase in, one hair-fine mask per instance out.

SAM 3 (:class:`dissam.stages.sam3.Sam3TextStage`) finds the instances of the phrase; each instance's
box and coarse mask go to the refiner exactly as a user's box and a SAM mask would (the refiner input
stays ``[R, G, B, coarse mask, box map]``, with the box map drawn from the detected box). All
instances of one image are refined in one batched pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dissam.errors import DisSamError
from dissam.predictor import Prediction


@dataclass
class TextPrediction(Prediction):
    """A :class:`~dissam.predictor.Prediction` for one instance of a text prompt.

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


def predict_text(predictor, text: str, score_threshold: float = 0.5, max_instances: int | None = 10,
                 allow_empty: bool = False) -> list[TextPrediction]:
    """All instances of ``text`` in the predictor's current image, refined.

    Args:
        predictor: a :class:`~dissam.predictor.DisSamPredictor` with a text stage (SAM 3).
        text: a short noun phrase ("bicycle", "red car").
        score_threshold: keep instances whose SAM 3 score is at least this.
        max_instances: keep at most this many (highest scores first); ``None`` keeps all.
        allow_empty: return ``[]`` instead of raising when nothing matches.
    Raises:
        NoMatchError: no instance reaches ``score_threshold`` (and ``allow_empty`` is False).
    """
    from dissam.stages.sam3 import NoMatchError

    stage = predictor.get_text_stage()
    if predictor.text_image is not predictor.image:  # one SAM 3 encoding per image, for every phrase
        stage.set_image(predictor.image)
        predictor.text_image = predictor.image
    found = stage.find(text, score_threshold=score_threshold, max_instances=max_instances)
    if len(found) == 0:
        if allow_empty:
            return []
        raise NoMatchError(
            f"the text prompt {text!r} matched nothing with score >= {score_threshold:g}; "
            "try a lower --score-threshold or another phrase"
        )
    soft = predictor.refine(found.masks, found.boxes)
    binary = predictor.binarize(soft)
    return [
        TextPrediction(soft[i], binary[i], found.masks[i], found.boxes[i], text=text, index=i,
                       score=float(found.scores[i]))
        for i in range(len(found))
    ]


def require_text_stage(stage) -> None:
    if not (hasattr(stage, "find") and hasattr(stage, "set_image")):
        raise DisSamError(
            "text prompts need SAM 3: build the predictor with stage1='sam3' and SAM 3 weights "
            "(--stage1 sam3 --sam facebook/sam3, or a local copy of it)"
        )


def text_predictor(source, refiner=None, device=None, **kwargs):
    """A :class:`~dissam.predictor.DisSamPredictor` for text prompts only: SAM 3's detector
    (``Sam3Model`` + tokenizer from ``source``, a folder or hub id) and the refiner; no box stage."""
    from dissam.predictor import DisSamPredictor
    from dissam.stages.sam3 import load_sam3_text

    predictor = DisSamPredictor.from_pretrained(sam=None, refiner=refiner, device=device, stage1="grabcut", **kwargs)
    predictor.text_stage = load_sam3_text(source, predictor.device)
    return predictor
