"""The predictor's point prompts: one :class:`~dissam.points.Prompt` per object (a box and/or clicks
and/or the previous low-resolution logits) through stage 1 and the refiner.

* Stage 1 (:func:`prompt_masks`): the stage's ``prompt_masks`` (:class:`~dissam.stages.base.PointStage`)
  on the kept image embedding, so a new click costs the decoder and the refiner, never the image
  encoder. Which of a SAM-like stage's masks is taken follows
  :func:`dissam.points.resolve_selection`: a box alone keeps the predictor's ``mask_selection`` (the
  paper's pipeline), a prompt with clicks or a ``mask_input`` the predictor's ``point_selection``.
* The refiner (:func:`refiner_boxes`) gets the corrected coarse mask and a box: the user's box (grown
  to the corrected mask's tight box when a positive click lies outside it), or, without a box, the
  tight box of the corrected mask, as the paper's boxes are the tight boxes of objects
  (:func:`dissam.points.refiner_box`).

The functions take the predictor (:class:`dissam.predictor.DisSamPredictor`) as their first argument;
the predictor's ``predict``, ``prompt_masks`` and ``refiner_boxes`` call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dissam.boxes import BoxFormat
from dissam.errors import DisSamError, PointError
from dissam.points import Prompt, make_prompt, refiner_box, resolve_selection, validate_prompt
from dissam.prediction import Prediction
from dissam.stages.base import PointStage, PromptMasks, require_point_stage

__all__ = ["as_prompts", "prompt_masks", "refiner_boxes", "predict_prompts"]

_PROMPT_KEYS = ("box", "point_coords", "point_labels", "mask_input")


def as_prompts(prompts: Sequence[Prompt | Mapping[str, Any]], image_hw: tuple[int, int],
               box_format: BoxFormat = "xyxy") -> list[Prompt]:
    """Prompts (each a :class:`~dissam.points.Prompt` or a mapping with keys ``box``,
    ``point_coords``, ``point_labels``, ``mask_input``) validated against an ``(H, W)`` image."""
    if isinstance(prompts, (Prompt, Mapping)):
        raise PointError("prompts= takes a list with one prompt per object; for one object pass box=, "
                         "point_coords= and point_labels= instead")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, Mapping):
            unknown = set(p) - set(_PROMPT_KEYS)
            if unknown:
                raise PointError(f"prompt {i}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; a prompt has "
                                 f"{', '.join(_PROMPT_KEYS)}")
            p = make_prompt(**p)
        elif not isinstance(p, Prompt):
            raise PointError(f"prompt {i} is a {type(p).__name__}: give a dissam.points.Prompt or a dict with "
                             f"{', '.join(_PROMPT_KEYS)}")
        out.append(validate_prompt(p, image_hw, box_format, where=f"prompt {i}"))
    return out


def prompt_masks(predictor, prompts: Sequence[Prompt]) -> PromptMasks:
    """Stage 1 for validated ``prompts`` of the predictor's image (the embedding computed at most once
    per image). Box-only prompts work with any stage 1; clicks and ``mask_input`` need a
    :class:`~dissam.stages.base.PointStage` (a clear :class:`~dissam.errors.PointError` otherwise)."""
    stage = predictor.sam_stage
    if stage is None:
        raise DisSamError("this predictor has no stage 1: points correct stage 1's mask; pass coarse_mask=... "
                          "with a box to refine a given mask instead")
    box_only = all(not p.has_points and p.mask_input is None for p in prompts)
    if box_only and not isinstance(stage, PointStage):
        masks = predictor.coarse_masks(np.stack([p.box for p in prompts])) if prompts else None
        h, w = predictor.image.shape[:2]
        return PromptMasks(masks if masks is not None else np.zeros((0, h, w), bool), [None] * len(prompts))
    stage = require_point_stage(stage)
    predictor.ensure_embedding()
    selections = [resolve_selection(p, predictor.mask_selection, predictor.point_selection) for p in prompts]
    out = stage.prompt_masks(prompts, selections)
    return PromptMasks(np.asarray(out.masks, dtype=bool), list(out.low_res_logits))


def refiner_boxes(prompts: Sequence[Prompt], coarse: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """``N x 4`` boxes for the refiner: :func:`dissam.points.refiner_box` of each prompt and its
    corrected coarse mask (``coarse``: ``N x H x W`` bool)."""
    boxes = [refiner_box(p, coarse[i], image_hw) for i, p in enumerate(prompts)]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def predict_prompts(predictor, prompts: Sequence[Prompt | Mapping[str, Any]],
                    box_format: BoxFormat = "xyxy") -> list[Prediction]:
    """One :class:`~dissam.prediction.Prediction` per prompt (one stage-1 call per kind of prompt, one
    batched refiner pass). Each carries the refiner's box and, from a SAM-like stage, the chosen mask's
    ``low_res_logits`` to pass back as the next click's ``mask_input``."""
    hw = predictor.image.shape[:2]
    checked = as_prompts(prompts, hw, box_format)
    stage_out = prompt_masks(predictor, checked)
    boxes = refiner_boxes(checked, stage_out.masks, hw)
    soft = predictor.refine(stage_out.masks, boxes)
    binary = predictor.binarize(soft)
    return [Prediction(soft[i], binary[i], stage_out.masks[i], boxes[i], stage_out.low_res_logits[i])
            for i in range(len(checked))]
