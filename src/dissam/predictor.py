"""The two-stage DIS-SAM predictor: an image and boxes in, hair-fine masks out.

Mirrors ``segment_anything.SamPredictor``: ``set_image`` once (the SAM image embedding is computed
once and kept), then ``predict`` for one box or ``N`` boxes. For ``N`` boxes there is one image
embedding, one batched SAM decoder call and one batched refiner call (in chunks of
``refiner_batch_size``).

Inference follows the paper's benchmark pipeline (docs/data.md) with one deliberate change from the
authors' demo: the box map is drawn from the **user's** box (``transforms.clean_inputs``), not from
the SAM mask. The refiner sees ``[R, G, B, SAM mask, box map]`` at ``size x size`` (1024 for the
paper's model); its side output d1 is resized back to the original image (bilinear).

Coordinates: boxes are XYXY pixels of the original (EXIF-corrected) image, ``(x1, y1)`` inclusive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dissam.boxes import BoxFormat, validate_boxes
from dissam.choices import MASK_SELECTIONS, STAGE1_CHOICES
from dissam.coarse import GRABCUT_MAX_SIDE
from dissam.errors import DisSamError
from dissam.io import ImageLike, read_image, read_mask
from dissam.refiner import Refiner

log = logging.getLogger(__name__)

BUILTIN_REFINER = Path(__file__).parent / "weights" / "dis-sam-compact.safetensors"
BUILTIN_NOTICE = (
    "using the built-in refiner (dis-sam-compact, 2.8 M parameters, trained on generated and photo-like "
    "data with real objects); for the paper's quality pass --model dis-sam, --refiner with the DIS-SAM checkpoint (.pth) or your "
    "own trained model"
)


@dataclass
class Prediction:
    """The result for one box.

    Attributes:
        soft: float32 ``H x W`` refined probability map in [0, 1] (refiner d1, original size).
        mask: bool ``H x W`` binary mask (``soft > threshold`` or Otsu).
        coarse: bool ``H x W`` coarse mask that was fed to the refiner (SAM's, or the one given).
        box: float64 ``(4,)`` XYXY box after clipping to the image.
    """

    soft: np.ndarray
    mask: np.ndarray
    coarse: np.ndarray
    box: np.ndarray


class GrabCutStage:
    """Weight-free stage 1: OpenCV GrabCut seeded by the box. Lower quality than SAM; for when no SAM
    weights are available. Same interface as :class:`dissam.models.sam.SamStage` (``set_image``,
    ``coarse_masks``). Images larger than ``max_side`` (default 1024) are segmented on a downscaled
    copy: a 3 MP photograph takes about 20 s at full size on one core."""

    name = "grabcut"

    def __init__(self, iterations: int = 5, max_side: int | None = GRABCUT_MAX_SIDE):
        self.iterations = iterations
        self.max_side = max_side  # GrabCut runs on a copy this size at most (dissam.coarse.grabcut_mask)
        self._image: np.ndarray | None = None

    def set_image(self, image: ImageLike) -> None:
        self._image = read_image(image)

    def coarse_masks(self, boxes: np.ndarray, selection: str = "first") -> np.ndarray:
        from dissam.coarse import grabcut_mask

        if self._image is None:
            raise DisSamError("set_image must be called before predicting")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.stack([grabcut_mask(self._image, b, iters=self.iterations, max_side=self.max_side) > 127
                         for b in boxes])


class DisSamPredictor:
    """Box-prompted DIS-SAM segmentation.

    Args:
        sam_stage: stage 1 (a :class:`~dissam.models.sam.SamStage`, a :class:`GrabCutStage`, or
            ``None`` for refine-only use where every call passes ``coarse_mask``).
        refiner: a :class:`~dissam.refiner.Refiner` from :func:`dissam.load_refiner`, or a 5-channel
            :class:`~dissam.models.isnet.ISNetDIS` module (any width).
        size: refiner input size (default: the size the refiner was trained at; 1024 for the paper's
            model).
        mask_selection: which SAM mask feeds the refiner: ``"first"`` (the authors' choice:
            ``multimask_output=True``, index 0), ``"best"`` (highest predicted IoU) or ``"single"``.
        threshold: probability threshold for the binary mask (``"otsu"`` for Otsu on the 8-bit map,
            as the authors' demo does).
        device: ``"cpu"``, ``"cuda"``, ... (``None``: the refiner's current device).
        dtype: refiner compute dtype; ``torch.bfloat16``/``torch.float16`` run under autocast (the same
            as ``precision="bf16"``/``"fp16"``; ``precision`` wins when both are given).
        refiner_batch_size: boxes per refiner call (memory bound at 1024²).
        backend: ``"torch"`` (default), ``"onnx"`` (ONNX Runtime on graphs exported once and cached
            next to the weights; needs ``dissam[onnx]``) or ``"auto"`` (onnx on a CPU when installed),
            for the refiner and SAM's image encoder.
        precision: ``"fp32"`` (default), ``"bf16"``/``"fp16"`` (torch autocast) or ``"int8"`` (onnx:
            SAM's encoder in dynamic int8). Lossy precisions are opt-in: docs/benchmarks.md has their
            measured cost. See :mod:`dissam.runtime.runners`.
        edit_threshold: ``"auto"`` (default): the refiner's own calibration
            (:attr:`~dissam.refiner.Refiner.edit_threshold`: the built-in model keeps its full-resolution
            coarse mask except where it confidently edits it; the paper's model records none and is
            used as it is); ``None``: the raw refined map; a float in [0, 1): that threshold
            (:func:`dissam.refiner.merge_edits`).
    """

    def __init__(self, sam_stage: Any | None, refiner: Refiner | nn.Module, *, size: int | None = None,
                 mask_selection: str = "first", threshold: float | str = 0.5,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                 refiner_batch_size: int = 4, backend: str | None = None, precision: str | None = None,
                 edit_threshold: float | str | None = "auto"):
        from dissam.runtime.runners import resolve_runtime
        from dissam.utils import resolve_device

        if not isinstance(refiner, Refiner):
            refiner = Refiner.from_module(refiner)
        if refiner.in_ch != 5:
            raise DisSamError(
                f"the refiner takes {refiner.in_ch} input channels; DIS-SAM needs the 5-channel refiner "
                "([R, G, B, SAM mask, box map]). For the 3-channel IS-Net use `dissam benchmark --method isnet`."
            )
        if mask_selection not in MASK_SELECTIONS:
            raise ValueError(f"mask_selection must be one of {', '.join(MASK_SELECTIONS)}, not {mask_selection!r}")
        self.device = resolve_device(device) if device is not None else refiner.device
        self.sam_stage = sam_stage
        self.refiner = refiner.to(self.device).eval()
        self.size = int(size) if size is not None else refiner.input_size
        self.mask_selection = mask_selection
        self.threshold = threshold
        if edit_threshold == "auto":
            edit_threshold = refiner.edit_threshold
        if edit_threshold is not None and not 0.0 <= float(edit_threshold) < 1.0:
            raise DisSamError(f"edit_threshold must be 'auto', None or in [0, 1), got {edit_threshold!r}")
        self.edit_threshold = None if edit_threshold is None else float(edit_threshold)
        self.refiner_batch_size = max(1, int(refiner_batch_size))
        dtype_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype)
        self.backend, self.precision = resolve_runtime(self.device, backend, precision or dtype_name)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)
        self._refiner_runner = None
        if (self.backend, self.precision) != ("torch", "fp32") and hasattr(sam_stage, "encoder_runner"):
            from dissam.runtime.runners import make_sam_encoder_runner

            sam_stage.encoder_runner = make_sam_encoder_runner(sam_stage, self.backend, self.precision)
        self._image: np.ndarray | None = None
        self._sam_ready = False
        self.text_stage: Any | None = None  # SAM 3 detector for predict_text, loaded on first use
        self.text_image: np.ndarray | None = None  # the image the text stage has encoded
        self.stage1_source: str | os.PathLike | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, sam: str | os.PathLike | None = None, refiner: str | os.PathLike | None = None,
                        device: str | None = None, coarse: str = "sam", *, model: str | None = None,
                        stage1: str | None = None,
                        **kwargs) -> DisSamPredictor:
        """Build from weight sources.

        Args:
            sam: SAM source for :func:`dissam.load_sam` (official ``sam_vit_*.pth``, HF folder, hub id
                or registry name such as ``sam-vit-l``). Required with ``coarse="sam"``: there is no
                silent fallback.
            refiner: refiner checkpoint (official ``.pth``, dissam ``.safetensors``, Hub folder or id, or
                registry name such as ``dis-sam``); ``None`` uses the built-in demonstration model
                shipped with the package (with a logged notice).
            coarse: stage 1: ``"sam"``; ``"grabcut"`` (weight-free, lower quality; what the CLI uses
                when no ``--sam`` is given, and says so); ``"none"`` (refine-only: every ``predict``
                passes ``coarse_mask``).
            stage1: the stage-1 family for ``sam``: ``"sam"``, ``"sam-hq"``, ``"sam2"``, ``"sam3"``,
                ``"grabcut"`` or ``"auto"`` (from the folder's ``config.json``); see
                :func:`dissam.stages.load_stage1`. ``None`` keeps the ``coarse`` behaviour. With
                ``"sam3"``, :meth:`predict_text` is available.
            model: a preset naming both (``"dis-sam"``: SAM ViT-L + the DIS-SAM refiner, the paper's
                pair; ``"demo"``: the bundled U²-Netp (``u2netp-auto``) + the built-in refiner; see ``dissam.hub.PRESETS``); an
                explicit ``sam`` / ``refiner`` overrides its half.
            **kwargs: :class:`DisSamPredictor` options (``size`` defaults to the size the refiner was
                trained at).
        """
        from dissam.checkpoints import load_refiner
        from dissam.utils import resolve_device

        if model is not None:
            from dissam.hub import preset_sources

            preset_sam, preset_refiner = preset_sources(model)
            if preset_sam is None and sam is None and coarse == "sam" and stage1 in (None, "sam", "auto"):
                stage1 = "u2netp-auto"  # the preset names no SAM: the offline default, the bundled U²-Netp
            sam = preset_sam if sam is None else sam
            refiner = preset_refiner if refiner is None else refiner
        if coarse not in STAGE1_CHOICES:
            raise ValueError(f"coarse must be one of {', '.join(STAGE1_CHOICES)}, not {coarse!r}")
        if coarse == "sam" and sam is None and stage1 in (None, "sam", "auto"):
            raise DisSamError(
                "no SAM source given: pass sam='sam_vit_l_0b3195.pth' (or a Hugging Face SAM id, or a "
                "registry name such as 'sam-vit-l') for the paper's pipeline, coarse='grabcut' for the "
                "weight-free stage 1, or coarse='none' to refine masks you pass to predict()"
            )
        dev = resolve_device(device)
        if refiner is None:
            if not BUILTIN_REFINER.is_file():
                raise DisSamError(
                    "no refiner given and the built-in model is not installed with this copy of dissam; "
                    "pass --refiner PATH (the DIS-SAM checkpoint or a model trained with `dissam train`)"
                )
            log.warning(BUILTIN_NOTICE)
            refiner = BUILTIN_REFINER
        ref = load_refiner(refiner, device=dev)
        if kwargs.get("size") is None:
            kwargs["size"] = ref.input_size
        if stage1 is not None:
            from dissam.stages import load_stage1

            predictor = cls(load_stage1(stage1, sam, dev), ref, device=dev, **kwargs)
            predictor.stage1_source = sam
            return predictor
        stage: Any
        if coarse == "grabcut":
            stage = GrabCutStage()
        elif coarse == "none":
            stage = None
        else:
            from dissam.models.sam import load_sam

            stage = load_sam(sam, device=dev)
        return cls(stage, ref, device=dev, **kwargs)

    # ------------------------------------------------------------------ image state
    def set_image(self, image: ImageLike) -> DisSamPredictor:
        """Set the image (path, PIL image or ``HxWx3`` uint8 array; grayscale, RGBA, 16-bit and
        EXIF-rotated inputs are handled). The SAM embedding is computed lazily, once, on the first
        ``predict`` that needs it."""
        self._image = read_image(image)
        self._sam_ready = False
        return self

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            raise DisSamError("call set_image(image) before predict()")
        return self._image

    def reset_image(self) -> None:
        self._image, self._sam_ready = None, False

    # ------------------------------------------------------------------ kept state (for servers)
    def ensure_embedding(self) -> bool:
        """Run stage 1's image encoder for the current image now unless already done (``predict``
        would do it lazily); returns True if it ran. Lets a caller time the embedding separately."""
        if self.sam_stage is None or self._sam_ready:
            return False
        self.sam_stage.set_image(self.image)
        self._sam_ready = True
        return True

    def get_image_state(self) -> dict:
        """The current image and stage 1's per-image state (its embedding), as a dict to hand back
        to :meth:`set_image_state` later: a server that switches between images keeps one per image
        instead of re-encoding. Holds references, not copies (``set_image`` replaces, never mutates)."""
        stage = {} if self.sam_stage is None else {
            k: v for k, v in vars(self.sam_stage).items() if not isinstance(v, nn.Module) and k != "encoder_calls"
        }
        return {"image": self._image, "sam_ready": self._sam_ready, "stage": stage}

    def set_image_state(self, state: dict) -> None:
        """Restore what :meth:`get_image_state` returned (same predictor)."""
        self._image, self._sam_ready = state["image"], state["sam_ready"]
        if self.sam_stage is not None:
            vars(self.sam_stage).update(state["stage"])

    # ------------------------------------------------------------------ prediction
    def coarse_masks(self, boxes: np.ndarray) -> np.ndarray:
        """Stage 1 for ``N x 4`` validated boxes: ``N x H x W`` bool (one embedding, one decoder call)."""
        if self.sam_stage is None:
            raise DisSamError("this predictor has no stage 1 (SAM); pass coarse_mask=... to refine a given mask")
        self.ensure_embedding()
        return np.asarray(self.sam_stage.coarse_masks(boxes, selection=self.mask_selection), dtype=bool)

    @property
    def refiner_runner(self):
        """The refiner's backend (:mod:`dissam.runtime.runners`), made on first use: an ONNX export
        happens at most once per weights (cached)."""
        if self._refiner_runner is None:
            from dissam.runtime.runners import make_refiner_runner

            self._refiner_runner = make_refiner_runner(self.refiner, self.backend, self.precision)
        return self._refiner_runner

    def refine(self, coarse: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: ``N x H x W`` coarse masks and ``N x 4`` boxes -> ``N x H x W`` float32 soft maps
        (merged with the coarse masks when ``edit_threshold`` is set: :func:`dissam.refiner.merge_edits`)."""
        from dissam.transforms import clean_inputs, postprocess, resize_image

        h, w = self.image.shape[:2]
        out = np.empty((len(boxes), h, w), dtype=np.float32)
        im_u8 = resize_image(self.image, self.size)  # once for all chunks of boxes
        for start in range(0, len(boxes), self.refiner_batch_size):
            sl = slice(start, start + self.refiner_batch_size)
            x = clean_inputs(self.image, coarse[sl], boxes[sl], self.size, im_u8=im_u8)
            d1 = self.refiner_runner(x)
            out[sl] = postprocess(d1, (h, w)).cpu().numpy()
        if self.edit_threshold:
            from dissam.refiner import merge_edits

            out = merge_edits(out, np.asarray(coarse, dtype=bool), self.edit_threshold)
        return out

    def binarize(self, soft: np.ndarray, threshold: float | str | None = None) -> np.ndarray:
        """``soft`` (``H x W`` or ``N x H x W`` float in [0, 1]) -> bool, by ``threshold`` (default: the
        predictor's) or Otsu."""
        threshold = self.threshold if threshold is None else threshold
        if threshold == "otsu":
            import cv2

            maps = soft.reshape(-1, *soft.shape[-2:])
            out = []
            for m in maps:
                u8 = np.clip(m * 255.0, 0, 255).astype(np.uint8)
                _, b = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                out.append(b > 0)
            return np.stack(out).reshape(soft.shape)
        return soft > float(threshold)

    def predict(self, box: Sequence[float] | np.ndarray | None = None, *, boxes: np.ndarray | None = None,
                coarse_mask: ImageLike | np.ndarray | None = None,
                box_format: BoxFormat = "xyxy") -> Prediction | list[Prediction]:
        """Segment the object in ``box`` (one ``(4,)`` box -> :class:`Prediction`) or in each of
        ``boxes`` (``N x 4`` -> list of :class:`Prediction`, one batched pass).

        ``coarse_mask`` (``H x W`` or ``N x H x W``; bool, 0/1 or 0..255, or an image path) skips stage 1
        and refines the given mask(s) instead (refine-only mode).
        """
        if (box is None) == (boxes is None):
            raise DisSamError("pass exactly one of box=(x0, y0, x1, y1) or boxes=N x 4")
        single = box is not None
        h, w = self.image.shape[:2]
        bx = validate_boxes(box if single else boxes, (h, w), box_format)
        if coarse_mask is None:
            coarse = self.coarse_masks(bx)
        else:
            cm = np.asarray(coarse_mask) if isinstance(coarse_mask, np.ndarray) else read_mask(coarse_mask)
            if cm.ndim == 2:
                cm = np.broadcast_to(cm, (len(bx), *cm.shape))
            if cm.shape != (len(bx), h, w):
                raise DisSamError(f"coarse_mask has shape {cm.shape}; expected ({h}, {w}) or ({len(bx)}, {h}, {w})")
            coarse = cm > (127 if cm.dtype == np.uint8 and cm.max() > 1 else 0)
        soft = self.refine(coarse, bx)
        binary = self.binarize(soft)
        preds = [Prediction(soft[i], binary[i], coarse[i], bx[i]) for i in range(len(bx))]
        return preds[0] if single else preds

    # ------------------------------------------------------------------ text prompts
    def get_text_stage(self):
        """The SAM 3 text stage: ``self.text_stage`` if set, else loaded once from the SAM 3 weights
        this predictor's stage 1 came from."""
        from dissam.text_prompts import require_text_stage

        if self.text_stage is None and getattr(self.sam_stage, "name", "") == "sam3" and self.stage1_source:
            from dissam.stages.sam3 import load_sam3_text

            self.text_stage = load_sam3_text(self.stage1_source, self.device)
        require_text_stage(self.text_stage)
        return self.text_stage

    def predict_text(self, text: str, score_threshold: float = 0.5, max_instances: int | None = 10,
                     allow_empty: bool = False):
        """Every instance of ``text`` (SAM 3) in the current image, each refined: a list of
        :class:`dissam.text_prompts.TextPrediction` (best score first). Raises
        :class:`dissam.stages.sam3.NoMatchError` when nothing scores ``>= score_threshold``."""
        from dissam.text_prompts import predict_text

        return predict_text(self, text, score_threshold, max_instances, allow_empty)
