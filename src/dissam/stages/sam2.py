"""SAM 2.1 (and the SAM 3 tracker, which shares its prompt interface) as stage 1: box and point prompts -> coarse mask.

Both are ``transformers`` models with the same prompt interface (``Sam2Model`` for SAM 2 / 2.1,
Hiera tiny to large; ``Sam3TrackerModel``, the promptable tracker half of SAM 3). Pre- and
post-processing follow their processors (``Sam2Processor`` / ``Sam3TrackerProcessor``) and are done
here with PIL/numpy/torch, so no processor files are needed next to the weights:

* the image is resized to ``S x S`` (no aspect-preserving padding, unlike SAM 1; ``S`` = 1024 for
  SAM 2.1, 1008 for SAM 3) with PIL bilinear and normalised (ImageNet mean/std for SAM 2,
  0.5/0.5 for SAM 3);
* boxes and points are scaled per axis (``x * S / W``, ``y * S / H``); points carry labels 1
  (object) / 0 (background) and a previous prediction's low-resolution logits can be passed back
  as ``mask_input`` (:meth:`PromptableStage.predict`, :meth:`PromptableStage.prompt_masks`);
* the low-resolution logits (``S/4``) are upsampled straight to the original size (bilinear,
  ``align_corners=False``) and thresholded at 0.

The processors resize with torch (antialiased); PIL's bilinear differs from it by small amounts at
edges, which moves mask borders by well under a pixel at the low-resolution output.

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive; points ``(x, y)``
pixels of the original image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dissam.choices import MASK_SELECTIONS
from dissam.errors import DisSamError
from dissam.io import ImageLike, read_image
from dissam.points import Prompt
from dissam.runtime.runners import autocast_dtype, resolve_runtime
from dissam.stages.base import PromptMasks
from dissam.stages.hf import load_hf_model
from dissam.stages.prompting import decode_prompts, prepare_batch, single_prompt
from dissam.utils import resolve_device

__all__ = ["PromptableStage", "PromptableImageState", "load_sam2", "load_stage", "square_input", "model_input_size"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# model_type -> (normalisation mean, std) of the family's processor
NORMALISATION = {
    "sam2": (IMAGENET_MEAN, IMAGENET_STD),
    "sam2_video": (IMAGENET_MEAN, IMAGENET_STD),
    "sam3_tracker": (HALF, HALF),
    "sam3_tracker_video": (HALF, HALF),
    "sam3": (HALF, HALF),
    "sam3_video": (HALF, HALF),
}


def square_input(image: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """``H x W x 3`` uint8 RGB -> ``(1, 3, size, size)`` float32: PIL bilinear resize to a square,
    ``(x / 255 - mean) / std``."""
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    x = (resized - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def model_input_size(config) -> int:
    """The square input side ``S`` of a SAM 2 / SAM 3 model (prompt-encoder image size)."""
    cfg = getattr(config, "prompt_encoder_config", None)
    if cfg is not None and getattr(cfg, "image_size", None):
        return int(cfg.image_size)
    return int(config.image_size)


@dataclass(frozen=True)
class PromptableImageState:
    """What :meth:`PromptableStage.set_image` computed for one image: the model's image features
    (references) and the image's ``(H, W)``."""

    embeddings: list[torch.Tensor]
    original_size: tuple[int, int]


class PromptableStage:
    """SAM 2.1 (``Sam2Model``) or the SAM 3 tracker (``Sam3TrackerModel``), prompted by boxes and points.

    Attributes:
        model: the transformers model (eval, frozen, on ``device``).
        name: ``"sam2"`` or ``"sam3"``.
        image_size: the square input side ``S``.
        encoder_calls: number of image-encoder runs so far (one per :meth:`set_image`).
        original_size: ``(H, W)`` of the current image, or ``None``.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", source: str = "model"):
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source = source
        model_type = model.config.model_type
        if model_type not in NORMALISATION:
            raise DisSamError(f"PromptableStage takes a SAM 2 or SAM 3 tracker model, not {model_type!r}")
        self.name = "sam3" if model_type.startswith("sam3") else "sam2"
        self.mean, self.std = NORMALISATION[model_type]
        self.image_size = model_input_size(model.config)
        self.encoder_calls = 0
        self.dtype = torch.float32  # the image encoder's autocast dtype (use_runtime)
        self._embeddings: list[torch.Tensor] | None = None
        self.original_size: tuple[int, int] | None = None

    def use_runtime(self, backend: str, precision: str) -> None:
        """Run the image encoder in torch at ``precision`` (fp32, or bf16/fp16 autocast); ONNX Runtime
        is not available for SAM 2.1 / SAM 3 (a :class:`DisSamError`)."""
        backend = "torch" if backend == "auto" else backend
        if backend != "torch":
            raise DisSamError(f"--backend {backend}: stage 1 {self.name} runs on torch only")
        _, precision = resolve_runtime(self.device, backend, precision)
        self.dtype = autocast_dtype(precision)

    def set_image(self, image: ImageLike) -> PromptableStage:
        """Encode ``image`` once (path, PIL image or ``H x W x 3`` uint8) and keep its features."""
        arr = read_image(image)
        x = square_input(arr, self.image_size, self.mean, self.std).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                    enabled=self.dtype != torch.float32):
            embeddings = self.model.get_image_embeddings(x)
        self._embeddings = [e.float() for e in embeddings] if self.dtype != torch.float32 else embeddings
        self.encoder_calls += 1
        self.original_size = (int(arr.shape[0]), int(arr.shape[1]))
        return self

    def get_image_state(self) -> PromptableImageState | None:
        """The current image's features and size (``None`` when no image is set)."""
        return None if self._embeddings is None else PromptableImageState(self._embeddings, self.original_size)

    def set_image_state(self, state: PromptableImageState | None) -> None:
        """Make the image of ``state`` current again without encoding it."""
        self._embeddings = None if state is None else state.embeddings
        self.original_size = None if state is None else state.original_size

    def transform_coords(self, coords: np.ndarray) -> np.ndarray:
        """Original-image ``(..., 2)`` ``(x, y)`` points -> the ``S x S`` input frame (``x * S / W``,
        ``y * S / H``: the official predictor's normalised coordinates times ``S``)."""
        h, w = self.original_size
        out = np.asarray(coords, np.float64).copy()
        out[..., 0] *= self.image_size / w
        out[..., 1] *= self.image_size / h
        return out

    def transform_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image XYXY boxes ``(N, 4)`` -> the ``S x S`` input frame (corners as points)."""
        return self.transform_coords(np.asarray(boxes, np.float64).reshape(-1, 2, 2)).reshape(-1, 4)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """``(h, w)`` of the low-resolution logits the decoder returns and ``mask_input`` takes."""
        return tuple(int(v) for v in self.model.prompt_encoder.mask_input_size)

    def _decode(self, boxes, multimask_output: bool, point_coords=None, point_labels=None, mask_input=None,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``N`` prompts -> masks ``(N, C, H, W)`` (bool, or float32 logits), IoU ``(N, C)`` and the
        low-resolution logits ``(N, C, h, w)`` clamped to [-32, 32] (as the official SAM 2 predictor
        returns them for ``mask_input``). One decoder call; one per prompt with ``mask_input``
        (``transformers`` takes a dense mask prompt per image). Box, points and mask go to the model
        as ``input_boxes``, ``input_points``/``input_labels`` and ``input_masks``: the same prompt
        tokens as the official predictor's (which passes the box as two corner points, labels 2 and 3,
        ahead of the clicks), in another order, which the decoder's attention does not depend on."""
        if self._embeddings is None:
            raise DisSamError("no image is set: call set_image(image) before predicting")
        n, box_t, pts_t, labels_t, mask_t = prepare_batch(self, boxes, point_coords, point_labels, mask_input,
                                                          self.mask_input_size)
        h, w = self.original_size
        if n == 0:
            c, (mh, mw) = (3 if multimask_output else 1), self.mask_input_size
            return (np.zeros((0, c, h, w), np.float32 if return_logits else bool), np.zeros((0, c), np.float32),
                    np.zeros((0, c, mh, mw), np.float32))

        def call(sl: slice):
            def take(t, dtype):
                return None if t is None else t[sl].to(self.device, dtype)

            points, labels, box = take(pts_t, torch.float32), take(labels_t, torch.int64), take(box_t, torch.float32)
            out = self.model(image_embeddings=self._embeddings,
                             input_points=None if points is None else points[None],
                             input_labels=None if labels is None else labels[None],
                             input_boxes=None if box is None else box[None],
                             input_masks=take(mask_t, torch.float32), multimask_output=multimask_output)
            return out.pred_masks[0].float(), out.iou_scores[0].float()

        with torch.inference_mode():
            parts = [call(slice(None))] if mask_t is None else [call(slice(i, i + 1)) for i in range(n)]
            low = torch.cat([p[0] for p in parts])  # (N, C, h, w) logits
            iou = torch.cat([p[1] for p in parts])
            masks = F.interpolate(low, (h, w), mode="bilinear", align_corners=False)
            if not return_logits:
                masks = masks > 0
        return masks.cpu().numpy(), iou.cpu().numpy(), low.clamp(-32.0, 32.0).cpu().numpy()

    def predict_batch(self, boxes=None, multimask_output: bool = True, *, point_coords=None, point_labels=None,
                      mask_input=None) -> tuple[np.ndarray, np.ndarray]:
        """Masks for ``N`` prompts in one decoder call.

        Args:
            boxes: ``N x 4`` XYXY pixels of the original image (validated and clipped), or ``None``.
            multimask_output: three masks per prompt (True) or the single-output token (False).
            point_coords: ``N x P x 2`` ``(x, y)`` pixels of the original image, or ``None``.
            point_labels: ``N x P``: 1 = object, 0 = background.
            mask_input: ``N x 1 x h x w`` low-resolution logits of previous predictions
                (:attr:`mask_input_size`), or ``None``.
        Returns:
            ``masks`` bool ``(N, C, H, W)`` and ``iou_predictions`` float32 ``(N, C)``, C = 3 or 1.
        """
        masks, iou, _ = self._decode(boxes, multimask_output, point_coords, point_labels, mask_input)
        return masks, iou

    def predict(self, box=None, multimask_output: bool = True, return_logits: bool = False, *,
                point_coords=None, point_labels=None, mask_input=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``SAM2ImagePredictor.predict`` for one object: a box and/or points (``P x 2`` ``(x, y)``
        pixels, labels 1 object / 0 background) and/or ``mask_input`` (``1 x h x w``, a previous call's
        low-resolution logits). Returns ``masks`` ``(C, H, W)`` (bool, or float32 logits),
        ``iou_predictions`` ``(C,)`` and ``low_res_logits`` ``(C, h, w)`` clamped to [-32, 32]."""
        boxes, coords, labels, masks_in = single_prompt(box, point_coords, point_labels, mask_input)
        masks, iou, low = self._decode(boxes, multimask_output, coords, labels, masks_in, return_logits)
        return masks[0], iou[0], low[0]

    def coarse_masks(self, boxes, selection: str = "first") -> np.ndarray:
        """``N x 4`` boxes -> ``N x H x W`` bool (``selection`` as in :class:`dissam.stages.sam.SamStage`)."""
        if selection not in MASK_SELECTIONS:
            raise DisSamError(f"unknown mask selection {selection!r}: use one of {', '.join(MASK_SELECTIONS)}")
        masks, iou = self.predict_batch(boxes, multimask_output=selection != "single")
        idx = iou.argmax(axis=1) if selection == "best" else np.zeros(len(masks), dtype=np.int64)
        return masks[np.arange(len(masks)), idx]

    def prompt_masks(self, prompts: Sequence[Prompt], selection: str | Sequence[str] = "first") -> PromptMasks:
        """One coarse mask per :class:`~dissam.points.Prompt` (:class:`~dissam.stages.base.PointStage`),
        with the chosen mask's low-resolution logits for the next ``mask_input``."""
        if self._embeddings is None:
            raise DisSamError("no image is set: call set_image(image) before predicting")
        return decode_prompts(self._decode, prompts, selection, self.original_size)

    def __repr__(self) -> str:
        return f"PromptableStage({type(self.model).__name__}, S={self.image_size}, device={self.device}, source={self.source!r})"


def load_sam2(source: str | os.PathLike, device: str | torch.device | None = "cpu") -> PromptableStage:
    """SAM 2 / 2.1 stage from a Hugging Face folder or hub id (``facebook/sam2.1-hiera-tiny`` ...
    ``-large``). A ``sam2_video`` checkpoint is read as its image model."""
    model = load_hf_model(source, "Sam2Model", ("sam2", "sam2_video"), "sam2")
    return PromptableStage(model, device or "cpu", source=os.fspath(source))


def load_stage(source: str | os.PathLike, device=None) -> PromptableStage:
    """The registry's loader of stage ``sam2``."""
    return load_sam2(source, device)
