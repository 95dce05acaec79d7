"""Point prompts for the SAM-like stages (SAM, HQ-SAM, SAM 2.1, SAM 3): the numpy layer they share.

The stages' own code transforms coordinates and calls their decoder; this module checks and
batches what a caller gives (:func:`single_prompt`, :func:`prepare_batch`) and turns a list of
:class:`~dissam.points.Prompt` into decoder calls, one per group of prompts of the same kind, and the
chosen masks (:func:`decode_prompts`).

Shapes: points are ``(N, P, 2)`` ``(x, y)`` pixels of the original image with ``(N, P)`` labels
(1 object, 0 background); boxes ``(N, 4)`` XYXY; ``mask_input`` ``(N, 1, h, w)`` low-resolution logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dissam.boxes import validate_boxes
from dissam.choices import MASK_SELECTIONS
from dissam.errors import DisSamError, PointError
from dissam.points import Prompt, as_mask_input, as_points, validate_prompt
from dissam.stages.base import PromptMasks, per_prompt

__all__ = ["batched_points", "single_prompt", "prepare_batch", "decode_prompts"]

# (boxes (N, 4) | None, multimask, coords (N, P, 2) | None, labels (N, P) | None, masks (N, 1, h, w) | None)
#   -> (masks (N, C, H, W) bool, iou (N, C), low-res logits (N, C, h, w))
Decoder = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


def batched_points(point_coords, point_labels, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, P, 2)`` points and ``(N, P)`` labels checked (labels 0/1, points on the image) ->
    float64 and int64 arrays."""
    if point_coords is None or point_labels is None:
        raise PointError("give both point_coords (N x P x 2) and point_labels (N x P)")
    coords = np.asarray(point_coords, dtype=np.float64)
    labels = np.asarray(point_labels)
    if coords.ndim != 3 or coords.shape[2] != 2 or labels.shape != coords.shape[:2]:
        raise PointError(f"batched points are N x P x 2 point_coords and N x P point_labels, got shapes "
                         f"{coords.shape} and {labels.shape}")
    for i in range(len(coords)):
        validate_prompt(Prompt(None, coords[i], labels[i]), image_hw, where=f"prompt {i}")
    return coords, labels.astype(np.int64)


def single_prompt(box, point_coords, point_labels, mask_input):
    """One object's ``predict`` arguments as a batch of one: ``(1, 4)`` box, ``(1, P, 2)`` points,
    ``(1, P)`` labels, ``(1, 1, h, w)`` mask (each ``None`` when not given)."""
    if box is None and point_coords is None:
        raise DisSamError("predict needs a box (x0, y0, x1, y1), points (point_coords + point_labels) or both")
    boxes = None
    if box is not None:
        boxes = np.asarray(box, dtype=np.float64)
        if boxes.size != 4:
            raise DisSamError(f"predict takes one box of 4 numbers, got shape {boxes.shape}; use predict_batch")
        boxes = boxes.reshape(1, 4)
    coords = labels = None
    if point_coords is not None or point_labels is not None:
        coords, labels = as_points(point_coords, point_labels)
        coords, labels = coords[None], labels[None]
    masks = None if mask_input is None else as_mask_input(mask_input)[None]
    return boxes, coords, labels, masks


def prepare_batch(stage: Any, boxes, point_coords, point_labels, mask_input, mask_hw: tuple[int, int] | None):
    """Check a batch of prompts and move it into ``stage``'s input frame (its ``transform_boxes`` and
    ``transform_coords``) as float32 / int64 tensors.

    ``mask_hw``: the ``(h, w)`` a ``mask_input`` must have (``None``: any size, the model resizes it).
    Returns ``(n, boxes, points, labels, masks)``; each tensor ``None`` when not given."""
    sizes, box_t, pts_t, labels_t, mask_t = [], None, None, None, None
    if boxes is not None:
        valid = validate_boxes(boxes, stage.original_size)
        box_t = torch.as_tensor(stage.transform_boxes(valid), dtype=torch.float32)
        sizes.append(("boxes", len(valid)))
    if point_coords is not None or point_labels is not None:
        coords, labels = batched_points(point_coords, point_labels, stage.original_size)
        pts_t = torch.as_tensor(stage.transform_coords(coords), dtype=torch.float32)
        labels_t = torch.as_tensor(labels, dtype=torch.int64)
        sizes.append(("point_coords", len(coords)))
    if mask_input is not None:
        arr = np.asarray(mask_input, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1] != 1 or (mask_hw is not None and arr.shape[2:] != tuple(mask_hw)):
            want = f"1 x {mask_hw[0]} x {mask_hw[1]}" if mask_hw else "1 x h x w"
            raise PointError(f"mask_input is N x {want} low-resolution logits (a previous prediction's "
                             f"low_res_logits), got shape {arr.shape}")
        mask_t = torch.from_numpy(arr)
        sizes.append(("mask_input", len(arr)))
    if box_t is None and pts_t is None:
        raise PointError("give boxes, points or both (a mask_input alone is not a prompt here)")
    if len({n for _, n in sizes}) != 1:
        raise PointError("one entry per prompt in each of " + ", ".join(f"{k} ({n})" for k, n in sizes))
    return sizes[0][1], box_t, pts_t, labels_t, mask_t


def decode_prompts(decode: Decoder, prompts: Sequence[Prompt], selection: str | Sequence[str],
                   image_hw: tuple[int, int]) -> PromptMasks:
    """Coarse masks for ``prompts`` through ``decode`` (a stage's ``predict_batch``-like call, see
    :data:`Decoder`): prompts of the same kind (box or not, number of points, mask or not, one or
    three outputs) go in one call; ``selection`` per prompt picks mask 0 (``"first"``, ``"single"``)
    or the highest predicted IoU (``"best"``)."""
    prompts = [validate_prompt(p, image_hw, where=f"prompt {i}") for i, p in enumerate(prompts)]
    selections = per_prompt(selection, len(prompts))
    for s in selections:
        if s not in MASK_SELECTIONS:
            raise DisSamError(f"unknown mask selection {s!r}: use one of {', '.join(MASK_SELECTIONS)}")
    groups: dict[tuple, list[int]] = {}
    for i, (p, s) in enumerate(zip(prompts, selections)):
        groups.setdefault((p.box is not None, p.num_points, p.mask_input is not None, s != "single"), []).append(i)
    masks = np.zeros((len(prompts), *image_hw), bool)
    low_res: list[np.ndarray | None] = [None] * len(prompts)
    for (has_box, n_points, has_mask, multi), idx in groups.items():
        group = [prompts[i] for i in idx]
        out_masks, iou, low = decode(
            np.stack([p.box for p in group]) if has_box else None, multi,
            np.stack([p.point_coords for p in group]) if n_points else None,
            np.stack([p.point_labels for p in group]) if n_points else None,
            np.stack([p.mask_input for p in group]) if has_mask else None)
        for j, i in enumerate(idx):
            k = int(iou[j].argmax()) if selections[i] == "best" else 0
            masks[i] = out_masks[j, k]
            low_res[i] = low[j, k:k + 1].astype(np.float32)
    return PromptMasks(masks, low_res)
