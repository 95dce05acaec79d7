"""Several images through one :class:`~dissam.predictor.DisSamPredictor`, the refiner's boxes
optionally batched across images.

Stage 1 runs per image (one image embedding, one batched call for all of that image's boxes). The
refiner then runs either

* ``refine_batch=0``: per image, in chunks of the predictor's ``refiner_batch_size``: exactly the
  calls :meth:`DisSamPredictor.predict` makes, so the outputs are bit-identical to the local engine's;
* ``refine_batch=N``: in chunks of up to ``N`` boxes taken across the images in order, so that a GPU
  sees full batches even when every image has one box. Convolutions at another batch size round
  differently in the last bits of float32, so soft maps may differ from the local engine's by about
  1e-7 (rarely one step of the 8-bit soft map); each box's inputs and post-processing are the same.

Coordinates: boxes are ``(N, 4)`` XYXY pixels of their image (``(x1, y1)`` inclusive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dissam.boxes import validate_boxes
from dissam.errors import DisSamError
from dissam.prediction import Prediction
from dissam.refiner import merge_edits
from dissam.transforms import clean_inputs, postprocess, resize_image

__all__ = ["predict_many"]


def predict_many(predictor, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                 refine_batch: int = 0) -> list[list | Exception]:
    """Predict every box of every image.

    Args:
        predictor: a :class:`~dissam.predictor.DisSamPredictor`.
        images: ``H x W x 3`` uint8 RGB arrays.
        boxes: per image, ``(N_i, 4)`` XYXY boxes.
        refine_batch: ``0``: per image (bit-identical to ``predictor.predict``); ``N``: up to ``N``
            boxes of several images per refiner call (module docstring).
    Returns:
        per image, its list of :class:`~dissam.prediction.Prediction` (one per box), or the
        :class:`DisSamError`/``ValueError`` that stopped that image (the others go on).
    """
    if refine_batch <= 0:
        out: list[list | Exception] = []
        for image, bx in zip(images, boxes, strict=True):
            try:
                predictor.set_image(image)
                out.append(predictor.predict(boxes=np.asarray(bx, dtype=np.float64), box_format="xyxy"))
            except (DisSamError, ValueError) as exc:
                out.append(exc)
        return out
    return _predict_across_images(predictor, images, boxes, refine_batch)


def _predict_across_images(predictor, images, boxes, refine_batch: int) -> list[list | Exception]:
    import torch

    results: list[list | Exception] = [[] for _ in images]
    staged = []  # (image index, image, boxes (N, 4), coarse (N, H, W) bool)
    for i, (image, bx) in enumerate(zip(images, boxes, strict=True)):
        try:
            predictor.set_image(image)
            valid = validate_boxes(np.asarray(bx, dtype=np.float64), image.shape[:2], "xyxy")
            staged.append((i, image, valid, predictor.coarse_masks(valid)))
        except (DisSamError, ValueError) as exc:
            results[i] = exc
    entries = [(s, k) for s in range(len(staged)) for k in range(len(staged[s][2]))]
    soft = {s: np.empty((len(bx), *im.shape[:2]), np.float32) for s, (_, im, bx, _) in enumerate(staged)}
    resized: dict[int, torch.Tensor] = {}  # (3, S, S) uint8 per image, made once
    for start in range(0, len(entries), refine_batch):
        chunk = entries[start:start + refine_batch]
        parts, where = [], []
        for s in dict.fromkeys(s for s, _ in chunk):  # images of this chunk, in order
            ks = [k for t, k in chunk if t == s]
            _, image, bx, coarse = staged[s]
            if s not in resized:
                resized[s] = resize_image(image, predictor.size)
            parts.append(clean_inputs(image, coarse[ks], bx[ks], predictor.size, im_u8=resized[s]))
            where.append((s, ks))
        d1 = predictor.refiner_runner(torch.cat(parts))
        offset = 0
        for s, ks in where:
            hw = staged[s][1].shape[:2]
            soft[s][ks] = postprocess(d1[offset:offset + len(ks)], hw).cpu().numpy()
            offset += len(ks)
    for s, (i, _, bx, coarse) in enumerate(staged):
        maps = soft.pop(s)
        if predictor.edit_threshold:
            maps = merge_edits(maps, np.asarray(coarse, dtype=bool), predictor.edit_threshold)
        binary = predictor.binarize(maps)
        results[i] = [Prediction(maps[k], binary[k], coarse[k], bx[k]) for k in range(len(bx))]
    return results
