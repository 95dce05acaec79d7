"""The predictor's text prompts (SAM 3): every instance of a noun phrase, each refined.

SAM 3's detector (:class:`~dissam.stages.base.TextStage`: ``set_image`` and ``find``) finds the
instances; each instance's box (XYXY pixels of the image) and coarse mask (``H x W`` bool) go to the
refiner exactly as a user's box and a SAM mask would, all instances of one image in one batched pass.

The functions take the predictor (:class:`dissam.predictor.DisSamPredictor`) as their first argument;
its ``get_text_stage`` and ``predict_text`` call them.
"""

from __future__ import annotations

import os

from dissam.errors import DisSamError, NoMatchError
from dissam.prediction import TextPrediction
from dissam.stages.base import TextStage
from dissam.stages.sam3 import load_sam3_text


def load_text_stage(source: str | os.PathLike, device) -> TextStage:
    """SAM 3's detector from ``source`` (a folder or hub id of SAM 3 weights) on ``device``."""
    return load_sam3_text(source, device)


def text_stage_of(predictor) -> TextStage:
    """The predictor's text stage: the one set, else SAM 3's detector loaded once from the weights
    stage 1 (SAM 3) came from. Raises :class:`DisSamError` when there is none."""
    if predictor._text_stage is None and getattr(predictor.sam_stage, "name", "") == "sam3" \
            and predictor.stage1_source:
        predictor._text_stage = load_text_stage(predictor.stage1_source, predictor.device)
    if predictor._text_stage is None:
        raise DisSamError(
            "text prompts need SAM 3: build the predictor with stage1='sam3' and SAM 3 weights "
            "(--stage1 sam3 --sam facebook/sam3, or a local copy of it), or text_model=..."
        )
    return predictor._text_stage


def predict_text(predictor, text: str, score_threshold: float, max_instances: int | None,
                 allow_empty: bool) -> list[TextPrediction]:
    """Every instance of ``text`` in the predictor's current image, refined, best score first
    (arguments as :meth:`dissam.predictor.DisSamPredictor.predict_text`)."""
    stage = text_stage_of(predictor)
    if predictor._text_image is not predictor.image:  # one SAM 3 encoding per image, for every phrase
        stage.set_image(predictor.image)
        predictor._text_image = predictor.image
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
