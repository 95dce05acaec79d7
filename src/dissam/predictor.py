"""The two-stage DIS-SAM predictor: an image and boxes in, hair-fine masks out.

Mirrors ``segment_anything.SamPredictor``: ``set_image`` once (stage 1's image embedding is computed
once and kept), then ``predict`` for one box or ``N`` boxes, or with point prompts (clicks on the
object, label 1, and on what is not, label 0; :mod:`dissam.predictor_points`) for one object or, with
``prompts=``, for several. For ``N`` boxes there is one image
embedding, one batched stage-1 call and one batched refiner call (in chunks of
``refiner_batch_size``).

Inference follows the paper's benchmark pipeline with one deliberate change from the authors' demo:
the box map is drawn from the **user's** box (:func:`dissam.transforms.clean_inputs`), not from the
SAM mask. The refiner sees ``[R, G, B, coarse mask, box map]`` at ``size x size`` (1024 for the
paper's model); its side output d1 is resized back to the original image (bilinear).

Coordinates: boxes are XYXY pixels of the original (EXIF-corrected) image, ``(x1, y1)`` inclusive.

Size: one class, the public facade, over ~450 lines because its methods are the documented API
(boxes, clicks, text, image states, runtimes); their work lives in :mod:`dissam.predictor_points`,
:mod:`dissam.predictor_text`, :mod:`dissam.zoom`, the stages and the runtime runners.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from dissam.boxes import BoxFormat, validate_boxes
from dissam.choices import MASK_SELECTIONS, POINT_SELECTIONS
from dissam.errors import DisSamError, NoMatchError, PointError
from dissam.hub.loading import load_refiner
from dissam.hub.registry import get_preset
from dissam.io import ImageLike, read_image, read_mask
from dissam.points import Prompt, make_prompt
from dissam.prediction import Prediction, TextPrediction
from dissam.predictor_points import as_prompts, predict_prompts
from dissam.predictor_points import prompt_masks as _prompt_masks
from dissam.predictor_points import refiner_boxes as _refiner_boxes
from dissam.predictor_text import load_text_stage, predict_text, text_stage_of
from dissam.refiner import Refiner, merge_edits
from dissam.runtime.runners import default_backend, make_refiner_runner, resolve_runtime
from dissam.stages.base import PointStage, PromptMasks, Stage1, TextStage
from dissam.stages.grabcut import GrabCutStage
from dissam.stages.registry import (
    REFINE_ONLY,
    check_runtime,
    get_spec,
    load_stage1,
    log_offline_default,
    resolve_stage,
    stage_specs,
)
from dissam.transforms import clean_inputs, postprocess, resize_image
from dissam.utils import resolve_device
from dissam.zoom import check_margin, refine_zoomed

__all__ = ["DisSamPredictor", "Prediction", "TextPrediction", "GrabCutStage", "NoMatchError", "BUILTIN_REFINER"]

log = logging.getLogger(__name__)

BUILTIN_REFINER = Path(__file__).parent / "weights" / "dis-sam-compact.safetensors"
BUILTIN_NOTICE = (
    "using the built-in refiner (dis-sam-compact, 2.8 M parameters, trained on generated and photo-like "
    "data with real objects); for the paper's quality pass --model dis-sam, --refiner with the DIS-SAM checkpoint (.pth) or your "
    "own trained model"
)
_COARSE_TO_STAGE1 = {"sam": None, "grabcut": "grabcut", "none": REFINE_ONLY}


@dataclass(frozen=True)
class ImageState:
    """The predictor's per-image state (:meth:`DisSamPredictor.get_image_state`).

    Attributes:
        image: ``H x W x 3`` uint8 RGB (a reference: ``set_image`` replaces, never mutates).
        encoded: whether stage 1 has encoded it (``stage`` then holds what it computed).
        stage: stage 1's own state (:meth:`~dissam.stages.base.Stage1.get_image_state`).
    """

    image: np.ndarray | None
    encoded: bool
    stage: Any


class DisSamPredictor:
    """Box-prompted DIS-SAM segmentation.

    Args:
        sam_stage: stage 1 (any :class:`~dissam.stages.base.Stage1`: SAM, SAM 2.1, U²-Netp, GrabCut...),
            or ``None`` for refine-only use where every call passes ``coarse_mask``.
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
        backend: ``"torch"``, ``"onnx"`` (ONNX Runtime on graphs exported once per weights file and
            cached; needs ``onnx``, part of ``dissam[onnx]``) or ``"auto"`` (onnx on a CPU when
            installed), for the refiner and stage 1's networks where it has a choice (SAM and HQ-SAM:
            image encoder and box decoder; SAM 2.1 and SAM 3 run on torch, U²-Netp on ONNX Runtime and
            GrabCut on OpenCV whatever is asked). ``None`` (default): on a CPU at fp32, ONNX Runtime for
            the networks read from a weights file (the fastest lossless path there; the choice is logged
            once) and torch for networks built in Python; torch elsewhere
            (:func:`dissam.runtime.runners.default_backend`; ``DISSAM_BACKEND`` changes it).
        precision: ``"fp32"`` (default), ``"bf16"``/``"fp16"`` (torch autocast) or ``"int8"`` (onnx:
            SAM's encoder in dynamic int8). Lossy precisions are opt-in.
        edit_threshold: ``"auto"`` (default): the refiner's own calibration
            (:attr:`~dissam.refiner.Refiner.edit_threshold`: the built-in model keeps its full-resolution
            coarse mask except where it confidently edits it; the paper's model records none and is
            used as it is); ``None``: the raw refined map; a float in [0, 1): that threshold
            (:func:`dissam.refiner.merge_edits`).
        text_stage: a text-prompted stage (SAM 3's detector) for :meth:`predict_text`.
        stage1_source: where stage 1's weights came from (with SAM 3, :meth:`predict_text` loads the
            detector from the same weights on first use).
        zoom: ``None`` (default, the paper's path: the refiner sees the whole image) or a margin: each
            box is refined on a crop of the box widened by ``zoom`` x its size on each side, at the
            refiner's resolution, and pasted back (:mod:`dissam.zoom`; for small objects in big images).
        point_selection: which SAM-like mask feeds the refiner for a prompt with clicks or a
            ``mask_input``: ``"auto"`` (SAM's advice: the best of three for one click alone, the
            single output otherwise; :func:`dissam.points.resolve_selection`) or one of
            ``mask_selection``'s values. Box-only prompts keep ``mask_selection``.
    """

    def __init__(self, sam_stage: Stage1 | None, refiner: Refiner | nn.Module, *, size: int | None = None,
                 mask_selection: str = "first", threshold: float | str = 0.5,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                 refiner_batch_size: int = 4, backend: str | None = None, precision: str | None = None,
                 edit_threshold: float | str | None = "auto", text_stage: TextStage | None = None,
                 stage1_source: str | os.PathLike | None = None, zoom: float | None = None,
                 point_selection: str = "auto"):
        self.zoom = None if zoom is None else check_margin(zoom)
        if not isinstance(refiner, Refiner):
            refiner = Refiner.from_module(refiner)
        if refiner.in_ch != 5:
            raise DisSamError(
                f"the refiner takes {refiner.in_ch} input channels; DIS-SAM needs the 5-channel refiner "
                "([R, G, B, SAM mask, box map]). For the 3-channel IS-Net use `dissam benchmark --method isnet`."
            )
        if mask_selection not in MASK_SELECTIONS:
            raise ValueError(f"mask_selection must be one of {', '.join(MASK_SELECTIONS)}, not {mask_selection!r}")
        if point_selection not in POINT_SELECTIONS:
            raise ValueError(f"point_selection must be one of {', '.join(POINT_SELECTIONS)}, not {point_selection!r}")
        self.point_selection = point_selection
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
        precision = precision or dtype_name
        default = default_backend(self.device, precision) if backend is None else None
        # the default needs a weights file: the export is cached for it and reused by later runs
        refiner_backend = backend or (default if self.refiner.weights_are_source else "torch")
        self.backend, self.precision = resolve_runtime(self.device, refiner_backend, precision)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)
        self._refiner_runner = None
        stage_backend = backend
        if sam_stage is not None and default == "onnx" and _stage_runs_on(sam_stage, "onnx") and \
                getattr(sam_stage, "weights_are_source", False):
            stage_backend = "onnx"
        if sam_stage is not None:
            self._configure_stage_runtime(stage_backend, precision)
        if default == "onnx" and "onnx" in (self.backend, stage_backend):
            _log_default_once(self.backend, stage_backend if sam_stage is not None else None)
        self._image: np.ndarray | None = None
        self._encoded = False
        self._text_stage = text_stage
        self._text_image: np.ndarray | None = None  # the image the text stage has encoded
        self.stage1_source = stage1_source

    def _configure_stage_runtime(self, backend: str | None, precision: str | None) -> None:
        """Stage 1's image encoder on the requested backend/precision (``"auto"`` is resolved by each
        network for itself); a pair the stage cannot run is a :class:`DisSamError`."""
        if (backend or "torch", precision or "fp32") == ("torch", "fp32"):
            return
        spec = stage_specs().get(getattr(self.sam_stage, "name", ""))
        if spec is not None:
            check_runtime(spec, backend, precision)
        if hasattr(self.sam_stage, "use_runtime"):
            self.sam_stage.use_runtime(backend or "torch", precision or "fp32")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, sam: str | os.PathLike | None = None, refiner: str | os.PathLike | None = None,
                        device: str | None = None, coarse: str | None = None, *, model: str | None = None,
                        stage1: str | None = None, text_model: str | os.PathLike | None = None,
                        **kwargs) -> DisSamPredictor:
        """Build from weight sources.

        Args:
            sam: stage-1 weights: a registry name (``sam-vit-l``), an official ``sam_vit_*.pth``, a
                Hugging Face folder or hub id (SAM, HQ-SAM, SAM 2.1, SAM 3), or an ``.onnx`` file for
                ``stage1="u2netp"``. ``None``: a stage 1 that needs no weights.
            refiner: refiner checkpoint (official ``.pth``, dissam ``.safetensors``, Hub folder or id, or
                registry name such as ``dis-sam``); ``None`` uses the built-in model shipped with the
                package (with a logged notice).
            stage1: which stage 1 (:func:`dissam.stages.stage_names`: ``"sam"``, ``"sam-hq"``,
                ``"sam2"``, ``"sam3"``, ``"u2netp-auto"``, ``"grabcut"``, ...); ``None`` or ``"auto"``:
                read off ``sam`` (a folder's ``config.json``, a file's suffix, a hub id's name), and with
                no ``sam`` the offline default, the bundled U²-Netp (``u2netp-auto``; GrabCut where ONNX
                Runtime is missing), with a logged notice; ``"none"``: no stage 1 (refine-only: every
                ``predict`` passes ``coarse_mask``).
            model: a preset naming stage 1, its weights and the refiner (``"dis-sam"``: SAM ViT-L + the
                DIS-SAM refiner, the paper's pair; ``"demo"``: the bundled U²-Netp + the built-in
                refiner; ``dissam.hub.PRESETS``); an explicit ``sam`` / ``refiner`` / ``stage1``
                overrides its part.
            text_model: SAM 3 weights for :meth:`predict_text` (a folder or hub id; the detector and its
                tokenizer). With ``stage1="sam3"`` the detector is otherwise loaded from ``sam``.
            coarse: deprecated spelling of ``stage1`` (``"sam"``: auto, ``"grabcut"``, ``"none"``).
            **kwargs: :class:`DisSamPredictor` options (``size`` defaults to the size the refiner was
                trained at; ``backend`` and ``precision`` apply to stage 1 too).
        """
        if coarse is not None:
            if coarse not in _COARSE_TO_STAGE1:
                raise ValueError(f"coarse must be one of {', '.join(_COARSE_TO_STAGE1)}, not {coarse!r}")
            warnings.warn("from_pretrained(coarse=...) is deprecated: use stage1= ('grabcut', 'none', 'auto')",
                          DeprecationWarning, stacklevel=2)
            if stage1 is None:
                stage1 = _COARSE_TO_STAGE1[coarse]
        if model is not None:
            preset = get_preset(model)
            if stage1 in (None, "auto") and sam is None:
                stage1 = preset.stage1
            sam = preset.sam if sam is None else sam
            refiner = preset.refiner if refiner is None else refiner
        kind = resolve_stage(stage1, sam)
        if stage1 in (None, "auto") and sam is None:
            log_offline_default(kind)
        dev = resolve_device(device)
        ref = _load_refiner_or_builtin(refiner, dev)
        if kwargs.get("size") is None:
            kwargs["size"] = ref.input_size
        stage = None
        if kind != REFINE_ONLY:
            # the pair is checked before any weights load; the constructor then configures it
            check_runtime(get_spec(kind), kwargs.get("backend"), kwargs.get("precision"))
            stage = load_stage1(kind, sam, dev)
        text_stage = load_text_stage(text_model, dev) if text_model is not None else None
        return cls(stage, ref, device=dev, text_stage=text_stage, stage1_source=sam, **kwargs)

    # ------------------------------------------------------------------ image state
    def set_image(self, image: ImageLike) -> DisSamPredictor:
        """Set the image (path, PIL image or ``HxWx3`` uint8 array; grayscale, RGBA, 16-bit and
        EXIF-rotated inputs are handled). Stage 1's embedding is computed lazily, once, on the first
        ``predict`` that needs it."""
        self._image = read_image(image)
        self._encoded = False
        return self

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            raise DisSamError("call set_image(image) before predict()")
        return self._image

    def reset_image(self) -> None:
        self._image, self._encoded = None, False

    def ensure_embedding(self) -> bool:
        """Run stage 1's image encoder for the current image now unless already done (``predict``
        would do it lazily); returns True if it ran. Lets a caller time the embedding separately."""
        if self.sam_stage is None or self._encoded:
            return False
        self.sam_stage.set_image(self.image)
        self._encoded = True
        return True

    def get_image_state(self) -> ImageState:
        """The current image and stage 1's per-image state (its embedding), to hand back to
        :meth:`set_image_state` later: a server that switches between images keeps one per image
        instead of re-encoding. Holds references, not copies."""
        stage = None
        if self._encoded and self.sam_stage is not None and hasattr(self.sam_stage, "get_image_state"):
            stage = self.sam_stage.get_image_state()
        return ImageState(self._image, self._encoded and stage is not None, stage)

    def set_image_state(self, state: ImageState) -> None:
        """Restore what :meth:`get_image_state` returned (same predictor)."""
        self._image, self._encoded = state.image, state.encoded
        if state.encoded:
            self.sam_stage.set_image_state(state.stage)

    # ------------------------------------------------------------------ prediction
    def coarse_masks(self, boxes: np.ndarray) -> np.ndarray:
        """Stage 1 for ``N x 4`` validated boxes: ``N x H x W`` bool (one embedding, one decoder call)."""
        if self.sam_stage is None:
            raise DisSamError("this predictor has no stage 1; pass coarse_mask=... to refine a given mask")
        self.ensure_embedding()
        return np.asarray(self.sam_stage.coarse_masks(boxes, selection=self.mask_selection), dtype=bool)

    @property
    def accepts_points(self) -> bool:
        """Whether stage 1 takes point prompts (:class:`~dissam.stages.base.PointStage`)."""
        return isinstance(self.sam_stage, PointStage)

    def prompt_masks(self, prompts: Sequence[Prompt | dict], box_format: BoxFormat = "xyxy") -> PromptMasks:
        """Stage 1 for one :class:`~dissam.points.Prompt` (or dict) per object on the kept embedding:
        coarse masks and, from SAM-like stages, each chosen mask's low-resolution logits (the next
        click's ``mask_input``). With :meth:`refiner_boxes` and :meth:`refine` this is :meth:`predict`
        in steps, for a caller that times the decoder and the refiner apart (the app)."""
        return _prompt_masks(self, as_prompts(prompts, self.image.shape[:2], box_format))

    def refiner_boxes(self, prompts: Sequence[Prompt | dict], coarse: np.ndarray,
                      box_format: BoxFormat = "xyxy") -> np.ndarray:
        """``N x 4`` boxes the refiner is given with the corrected ``N x H x W`` coarse masks
        (:func:`dissam.points.refiner_box`)."""
        hw = self.image.shape[:2]
        return _refiner_boxes(as_prompts(prompts, hw, box_format), np.asarray(coarse, bool), hw)

    @property
    def refiner_runner(self):
        """The refiner's backend (:mod:`dissam.runtime.runners`), made on first use: an ONNX export
        happens at most once per weights (cached)."""
        if self._refiner_runner is None:
            self._refiner_runner = make_refiner_runner(self.refiner, self.backend, self.precision)
        return self._refiner_runner

    def refine(self, coarse: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: ``N x H x W`` coarse masks and ``N x 4`` boxes -> ``N x H x W`` float32 soft maps
        (merged with the coarse masks when ``edit_threshold`` is set: :func:`dissam.refiner.merge_edits`)."""
        h, w = self.image.shape[:2]
        if self.zoom is not None:
            out = refine_zoomed(self.refiner_runner, self.image, coarse, boxes, self.size, self.zoom)
            return merge_edits(out, np.asarray(coarse, dtype=bool), self.edit_threshold) if self.edit_threshold else out
        out = np.empty((len(boxes), h, w), dtype=np.float32)
        im_u8 = resize_image(self.image, self.size)  # once for all chunks of boxes
        for start in range(0, len(boxes), self.refiner_batch_size):
            sl = slice(start, start + self.refiner_batch_size)
            x = clean_inputs(self.image, coarse[sl], boxes[sl], self.size, im_u8=im_u8)
            d1 = self.refiner_runner(x)
            out[sl] = postprocess(d1, (h, w)).cpu().numpy()
        if self.edit_threshold:
            out = merge_edits(out, np.asarray(coarse, dtype=bool), self.edit_threshold)
        return out

    def binarize(self, soft: np.ndarray, threshold: float | str | None = None) -> np.ndarray:
        """``soft`` (``H x W`` or ``N x H x W`` float in [0, 1]) -> bool, by ``threshold`` (default: the
        predictor's) or Otsu."""
        threshold = self.threshold if threshold is None else threshold
        if threshold == "otsu":
            maps = soft.reshape(-1, *soft.shape[-2:])
            out = []
            for m in maps:
                u8 = np.clip(m * 255.0, 0, 255).astype(np.uint8)
                _, b = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                out.append(b > 0)
            return np.stack(out).reshape(soft.shape)
        return soft > float(threshold)

    def predict(self, box: Sequence[float] | np.ndarray | None = None, *, boxes: np.ndarray | None = None,
                coarse_mask: ImageLike | np.ndarray | None = None, box_format: BoxFormat = "xyxy",
                point_coords=None, point_labels=None, mask_input=None,
                prompts: Sequence[Prompt | dict] | None = None) -> Prediction | list[Prediction]:
        """Segment one object or several.

        * ``box`` (``(4,)`` XYXY pixels) -> :class:`Prediction`; ``boxes`` (``N x 4``) -> a list, one
          batched pass. ``coarse_mask`` (``H x W`` or ``N x H x W``; bool, 0/1 or 0..255, or an image
          path) skips stage 1 and refines the given mask(s) instead (refine-only mode).
        * Points, SAM's conventions: ``point_coords`` (``P x 2`` ``(x, y)`` pixels) and ``point_labels``
          (``(P,)``, 1 = object, 0 = background), with or without ``box``, and optionally
          ``mask_input`` (``1 x h x w``, the ``low_res_logits`` of this object's previous
          :class:`Prediction`) -> :class:`Prediction`.
        * Several objects with their own points: ``prompts`` = a list of :class:`~dissam.points.Prompt`
          (or dicts with keys ``box``, ``point_coords``, ``point_labels``, ``mask_input``) -> a list.

        With points the refiner sees the corrected coarse mask and the box; without a box, the
        corrected mask's tight box (:func:`dissam.points.refiner_box`).
        """
        has_points = point_coords is not None or point_labels is not None or mask_input is not None
        if prompts is not None or has_points:
            if boxes is not None or (prompts is not None and (box is not None or has_points)):
                raise DisSamError("pass one object's box / point_coords / point_labels / mask_input, or boxes=N x 4, "
                                  "or prompts=[...] (one per object), not a mix")
            if coarse_mask is not None:
                raise PointError("point prompts correct stage 1's mask; with coarse_mask there is no stage 1 to "
                                 "correct (refine a given mask with a box alone)")
            if prompts is not None:
                return predict_prompts(self, prompts, box_format)
            return predict_prompts(self, [make_prompt(box, point_coords, point_labels, mask_input)], box_format)[0]
        if (box is None) == (boxes is None):
            raise DisSamError("pass exactly one of box=(x0, y0, x1, y1), boxes=N x 4, point_coords + point_labels "
                              "(with or without box) or prompts=[...]")
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
    @property
    def text_stage(self) -> TextStage | None:
        """The text-prompted stage (SAM 3's detector) if one is set or was loaded."""
        return self._text_stage

    def set_text_stage(self, stage: TextStage | None) -> None:
        """Use ``stage`` (anything with ``set_image`` and ``find``: :class:`~dissam.stages.base.TextStage`)
        for :meth:`predict_text`."""
        if stage is not None and not isinstance(stage, TextStage):
            raise DisSamError(f"a text stage needs set_image() and find(); {type(stage).__name__} has not both")
        self._text_stage, self._text_image = stage, None

    def get_text_stage(self) -> TextStage:
        """The text stage: the one set, else SAM 3's detector loaded once from the weights stage 1 (SAM
        3) came from. Raises :class:`DisSamError` when there is none."""
        return text_stage_of(self)

    def predict_text(self, text: str, score_threshold: float = 0.5, max_instances: int | None = 10,
                     allow_empty: bool = False) -> list[TextPrediction]:
        """Every instance of ``text`` (SAM 3) in the current image, each refined (best score first).

        SAM 3's detector finds the instances; each instance's box and coarse mask go to the refiner
        exactly as a user's box and a SAM mask would (all instances of one image in one batched pass).

        Args:
            text: a short noun phrase ("bicycle", "red car").
            score_threshold: keep instances whose SAM 3 score is at least this.
            max_instances: keep at most this many (highest scores first); ``None`` keeps all.
            allow_empty: return ``[]`` instead of raising when nothing matches.
        Raises:
            NoMatchError: no instance reaches ``score_threshold`` (and ``allow_empty`` is False).
        """
        return predict_text(self, text, score_threshold, max_instances, allow_empty)


def _stage_runs_on(stage: Stage1, backend: str) -> bool:
    """Whether stage 1 ``stage`` can run its networks on ``backend`` (the registry says)."""
    spec = stage_specs().get(getattr(stage, "name", ""))
    return spec is not None and spec.backends is not None and backend in spec.backends and hasattr(stage, "use_runtime")


_DEFAULT_LOGGED: set[tuple] = set()


def _log_default_once(refiner_backend: str, stage_backend: str | None) -> None:
    """Say once per process which networks the default runs on ONNX Runtime."""
    parts = (["the refiner"] if refiner_backend == "onnx" else []) + \
        (["SAM's image encoder and box decoder"] if stage_backend == "onnx" else [])
    if tuple(parts) in _DEFAULT_LOGGED:
        return
    _DEFAULT_LOGGED.add(tuple(parts))
    log.info("CPU default: %s on ONNX Runtime fp32 (the fastest lossless path here; graphs exported once per "
             "weights file and cached); --backend torch runs PyTorch", " and ".join(parts))


def _load_refiner_or_builtin(refiner: str | os.PathLike | None, device) -> Refiner:
    if refiner is None:
        if not BUILTIN_REFINER.is_file():
            raise DisSamError(
                "no refiner given and the built-in model is not installed with this copy of dissam; "
                "pass --refiner PATH (the DIS-SAM checkpoint or a model trained with `dissam train`)"
            )
        log.warning(BUILTIN_NOTICE)
        refiner = BUILTIN_REFINER
    return load_refiner(refiner, device=device)

