"""SAM 3 as stage 1: boxes through its tracker, and text prompts through its detector.

Box prompts use the tracker half (``Sam3TrackerModel``), which has SAM 2's prompt interface
(:class:`dissam.stages.sam2.PromptableStage`).

``Sam3Model`` (the detector half of SAM 3) takes an image and a short text prompt and returns up to
``num_queries`` (200) candidate instances, each with a box, a mask and a score. The score is the
query's ``sigmoid(logit)`` times the image-level ``sigmoid(presence_logit)``, as
``Sam3Processor.post_process_instance_segmentation`` computes it. Each kept instance becomes a
box + coarse mask pair for the refiner, exactly as a user's box + SAM mask would.

Pre-processing follows ``Sam3Processor``: ``1008 x 1008`` PIL bilinear resize, 0.5/0.5
normalisation; the text is tokenised with the checkpoint's CLIP tokenizer, padded to 32 tokens.
Masks (logits at 288²) are upsampled to the original size (bilinear) and kept where
``sigmoid > 0.5``; boxes come normalised XYXY and are scaled to pixels and clipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from dissam.boxes import box_from_mask, widen_box
from dissam.errors import CheckpointError, DisSamError, NoMatchError
from dissam.hub.cache import hub_local_only
from dissam.io import ImageLike, read_image
from dissam.stages.base import Instances
from dissam.stages.hf import load_hf_model
from dissam.stages.sam2 import HALF, PromptableStage, square_input
from dissam.utils import resolve_device

__all__ = ["Sam3TextStage", "NoMatchError", "load_sam3_tracker", "load_sam3_text", "load_stage", "widen_box"]

TEXT_LENGTH = 32  # Sam3Processor pads every prompt to 32 tokens


class Sam3TextStage:
    """Text-prompted SAM 3 detector.

    Args:
        model: a ``transformers.Sam3Model``.
        tokenizer: callable like a ``transformers`` tokenizer: ``tokenizer(text, padding="max_length",
            max_length=32, return_tensors="pt")`` -> ``input_ids``, ``attention_mask``.
    """

    name = "sam3"

    def __init__(self, model: torch.nn.Module, tokenizer: Callable, device: str | torch.device = "cpu",
                 source: str = "model"):
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.image_size = int(model.config.vision_config.backbone_config.image_size)
        self.encoder_calls = 0
        self._vision = None
        self.original_size: tuple[int, int] | None = None

    def set_image(self, image: ImageLike) -> Sam3TextStage:
        """Encode ``image`` once; several prompts can then be asked of it."""
        arr = read_image(image)
        x = square_input(arr, self.image_size, HALF, HALF).to(self.device)
        with torch.inference_mode():
            self._vision = self.model.get_vision_features(pixel_values=x)
        self.encoder_calls += 1
        self.original_size = (int(arr.shape[0]), int(arr.shape[1]))
        return self

    def find(self, text: str, score_threshold: float = 0.5, max_instances: int | None = None) -> Instances:
        """Instances of ``text`` in the current image with score ``>= score_threshold``, best first,
        at most ``max_instances``. Instances whose mask and box are both empty are dropped.

        Returns :class:`Instances` (possibly empty: the caller decides whether that is an error)."""
        if self._vision is None:
            raise DisSamError("no image is set: call set_image(image) before find(text)")
        if not str(text).strip():
            raise DisSamError("the text prompt is empty")
        tok = self.tokenizer(str(text), padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                             return_tensors="pt")
        h, w = self.original_size
        with torch.inference_mode():
            out = self.model(vision_embeds=self._vision, input_ids=tok["input_ids"].to(self.device),
                             attention_mask=tok["attention_mask"].to(self.device))
            scores = out.pred_logits[0].float().sigmoid()
            if out.presence_logits is not None:
                scores = scores * out.presence_logits[0].float().sigmoid()
            order = torch.argsort(scores, descending=True)
            order = order[scores[order] >= float(score_threshold)]
            if max_instances is not None:
                order = order[: max(0, int(max_instances))]
            if len(order) == 0:
                return Instances(np.zeros((0, 4)), np.zeros((0, h, w), bool), np.zeros(0, np.float32))
            logits = out.pred_masks[0, order].float()[None]
            masks = (F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)[0].sigmoid() > 0.5)
            boxes = out.pred_boxes[0, order].float().cpu().numpy().astype(np.float64)
        masks = masks.cpu().numpy()
        boxes = boxes * np.array([w, h, w, h], dtype=np.float64)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
        keep, fixed = [], []
        for i, (b, m) in enumerate(zip(boxes, masks)):
            fixed_box = _usable_box(b, m, (h, w))
            if fixed_box is not None:
                keep.append(i)
                fixed.append(fixed_box)
        keep_idx = np.asarray(keep, dtype=np.int64)
        return Instances(
            np.asarray(fixed, dtype=np.float64).reshape(-1, 4),
            masks[keep_idx],
            scores[order].cpu().numpy().astype(np.float32)[keep_idx],
        )

    def __repr__(self) -> str:
        return f"Sam3TextStage(S={self.image_size}, device={self.device}, source={self.source!r})"


def _usable_box(box: np.ndarray, mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray | None:
    """The detector's box if it is non-empty, else the mask's box (widened to 2 px), else ``None``."""
    if box[2] > box[0] and box[3] > box[1]:
        return box
    mb = box_from_mask(mask)
    if mb is None:
        return None
    return widen_box(mb, hw)


def load_sam3_text(source: str | os.PathLike, device: str | torch.device | None = "cpu") -> Sam3TextStage:
    """SAM 3 text stage from a Hugging Face folder or hub id (``facebook/sam3``): the ``Sam3Model``
    weights and the CLIP tokenizer stored with them."""
    src = os.fspath(source)
    model = load_hf_model(src, "Sam3Model", ("sam3", "sam3_video"), "sam3")
    missing = (
        f"{src} has SAM 3 weights but no usable tokenizer (tokenizer.json, or vocab.json + merges.txt); "
        "text prompts need the CLIP tokenizer saved with the checkpoint"
    )
    if os.path.isdir(src) and not any(
        os.path.isfile(os.path.join(src, f)) for f in ("tokenizer.json", "vocab.json")
    ):
        # transformers 5 would build an empty CLIP tokenizer here and every prompt would read as <unk>
        raise CheckpointError(missing)
    try:
        offline = os.path.isdir(src) or hub_local_only()
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=offline)
    except Exception as exc:
        raise CheckpointError(f"{missing} ({type(exc).__name__}: {exc})") from exc
    if len(tokenizer) <= 3:  # only the special tokens: the vocabulary did not load
        raise CheckpointError(missing)
    return Sam3TextStage(model, tokenizer, device or "cpu", source=src)


def load_sam3_tracker(source: str | os.PathLike, device: str | torch.device | None = "cpu") -> PromptableStage:
    """SAM 3 box-prompted stage (``Sam3TrackerModel``) from a folder or hub id (``facebook/sam3``; the
    full checkpoint holds detector and tracker, and the tracker part is read)."""
    model = load_hf_model(source, "Sam3TrackerModel", ("sam3_tracker", "sam3_video", "sam3_tracker_video"), "sam3")
    return PromptableStage(model, device or "cpu", source=os.fspath(source))


def load_stage(source: str | os.PathLike, device=None) -> PromptableStage:
    """The registry's loader of stage ``sam3`` (box prompts; :func:`load_sam3_text` for text)."""
    return load_sam3_tracker(source, device)
