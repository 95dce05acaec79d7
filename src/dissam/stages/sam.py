"""The SAM stage of DIS-SAM: box prompt -> coarse mask, on Hugging Face ``transformers``' ``SamModel``.

* :func:`load_sam` builds a :class:`SamStage` from an official Meta ``sam_vit_*.pth`` (converted by
  our own key map, :mod:`dissam.checkpoints.sam`, sizes inferred from the tensors), a local
  Hugging Face folder (``SamModel`` or ``SamHQModel``), or a hub id.
* :class:`SamStage` mirrors ``segment_anything.SamPredictor``: ``set_image`` once (the image
  embedding is kept), then ``predict`` / ``predict_batch`` / ``coarse_masks`` / ``prompt_masks`` many
  times, with boxes, points (``point_coords`` ``P x 2`` ``(x, y)`` pixels, ``point_labels`` 1 object /
  0 background, transformed like boxes) and the previous low-resolution logits (``mask_input``). The
  numpy layer validates and converts; :meth:`SamStage.predict_torch` is the batched torch layer.

Pre- and post-processing are done here (PIL/numpy/torch), exactly as the official predictor does
them, not by ``SamProcessor``: longest side resized to 1024 with PIL bilinear
(``int(old * 1024 / max(H, W) + 0.5)``), normalised with the SAM pixel mean/std, zero-padded at the
bottom and right to 1024x1024; boxes scaled by ``new/old`` per axis; low-resolution logits
upsampled to 1024 (bilinear, ``align_corners=False``), cropped to the resized image, upsampled to the
original size, thresholded at logit > 0.

Coordinates: boxes are XYXY pixels of the original image, ``(x1, y1)`` inclusive (see
:mod:`dissam.boxes`). Sizes are ``(H, W)``.

Size: over ~450 lines because :class:`SamStage` keeps the official predictor's three layers (torch,
numpy, prompts) in one class, as ``SamPredictor`` does, and :func:`load_sam` is imported from here by
every caller; the checks that need no model are in :mod:`dissam.stages.sam_info`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dissam.checkpoints.sam import build_sam_from_state_dict
from dissam.checkpoints.state_dict import read_state_dict, tensor_versions
from dissam.choices import MASK_SELECTIONS
from dissam.errors import CheckpointError, DisSamError
from dissam.hub.cache import hub_local_only
from dissam.hub.sources import OFFLINE_NOTE, hub_error, is_hub_id, missing_path_error
from dissam.hub.store import resolve_sam_source
from dissam.io import ImageLike, read_image
from dissam.points import Prompt
from dissam.runtime.runners import make_sam_decoder_runner, make_sam_encoder_runner, resolve_runtime
from dissam.stages.base import PromptMasks
from dissam.stages.prompting import decode_prompts, prepare_batch, single_prompt
from dissam.stages.sam_info import SamInfo, check_hq, folder_info, official_info
from dissam.utils import resolve_device

__all__ = ["SamStage", "SamImageState", "SamInfo", "load_sam", "load_stage", "PIXEL_MEAN", "PIXEL_STD",
           "MASK_SELECTIONS"]

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
MASK_THRESHOLD = 0.0
Selection = Literal["first", "best", "single"]

# official file names (https://dl.fbaipublicfiles.com/segment_anything/<name>) and HF ids per size
OFFICIAL_FILES = {
    "vit_b": ("sam_vit_b_01ec64.pth", "facebook/sam-vit-base"),
    "vit_l": ("sam_vit_l_0b3195.pth", "facebook/sam-vit-large"),
    "vit_h": ("sam_vit_h_4b8939.pth", "facebook/sam-vit-huge"),
}
OFFICIAL_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


def preprocess_shape(old_h: int, old_w: int, long_side: int = 1024) -> tuple[int, int]:
    """``(H', W')`` of the resized image: the official ``ResizeLongestSide.get_preprocess_shape``."""
    scale = long_side * 1.0 / max(old_h, old_w)
    return int(old_h * scale + 0.5), int(old_w * scale + 0.5)


def preprocess_image(image: np.ndarray, size: int = 1024) -> tuple[torch.Tensor, tuple[int, int]]:
    """``H x W x 3`` uint8 RGB -> ``(1, 3, size, size)`` float32 model input and the resized ``(H', W')``.

    PIL bilinear resize of the longest side to ``size``, ``(x - mean) / std``, zero padding at the
    bottom and right (after normalisation, as the official ``Sam.preprocess``)."""
    h, w = image.shape[:2]
    nh, nw = preprocess_shape(h, w, size)
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    x = (resized - np.asarray(PIXEL_MEAN, np.float32)) / np.asarray(PIXEL_STD, np.float32)
    out = np.zeros((size, size, 3), np.float32)
    out[:nh, :nw] = x
    return torch.from_numpy(out).permute(2, 0, 1)[None].contiguous(), (nh, nw)


def _is_hq_config(config: Any) -> bool:
    return getattr(config, "model_type", "") == "sam_hq"


@dataclass(frozen=True)
class SamImageState:
    """What :meth:`SamStage.set_image` computed for one image (references to its tensors).

    Attributes:
        embedding: ``(1, 256, 64, 64)`` float32 image embedding.
        intermediate: HQ-SAM's early ViT features (a list of ``(1, 64, 64, C_vit)``), ``None`` for SAM.
        original_size: ``(H, W)`` of the image.
        input_size: ``(H', W')`` of the resized image inside the square input.
    """

    embedding: torch.Tensor
    intermediate: list[torch.Tensor] | None
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class SamStage:
    """Box-prompted SAM with the ``SamPredictor`` interface.

    Attributes:
        model: the ``transformers`` ``SamModel`` / ``SamHQModel`` (eval mode, on ``device``).
        device: ``torch.device`` of the model.
        encoder_calls: number of image-encoder runs so far (one per :meth:`set_image`).
        original_size: ``(H, W)`` of the current image, or ``None``.
        input_size: ``(H', W')`` of the resized image inside the 1024x1024 input, or ``None``.
        image_embedding: ``(1, 256, 64, 64)`` float32 tensor of the current image, or ``None``.
        source: what the model was loaded from.
    """

    def __init__(
        self, model: torch.nn.Module | None, device: str | torch.device = "cpu", source: str = "model", *,
        loader: Callable[[], torch.nn.Module] | None = None, info: SamInfo | None = None,
    ) -> None:
        self.device = resolve_device(str(device) if isinstance(device, torch.device) else device)
        self.source = source
        if model is None and (loader is None or info is None):
            raise DisSamError("SamStage needs a model, or a loader of one and its SamInfo")
        self._loader = loader
        self._model: torch.nn.Module | None = None
        self._loaded_versions: dict | None = None
        if model is not None:
            self._set_model(model)
        self.info = info if info is not None else SamInfo.from_config(model.config)
        self.is_hq = self.info.model_type == "sam_hq"
        self.image_size = self.info.image_size
        self.encoder_calls = 0
        # the image encoder's backend (dissam.runtime.runners, set by use_runtime): pixels ->
        # (embedding, HQ-SAM intermediate embeddings or None); None runs the torch module in fp32
        self.encoder_runner: Any | None = None
        # the prompt decoder's ONNX Runtime runner for box prompts (use_runtime("onnx")), or None
        self.decoder_runner: Any | None = None
        self.reset_image()

    def _set_model(self, model: torch.nn.Module) -> None:
        self._model = model.to(self.device).eval()
        for p in self._model.parameters():
            p.requires_grad_(False)

    @property
    def model(self) -> torch.nn.Module:
        """The ``transformers`` model, built from the weights file on first use when the stage was
        loaded from one: a stage whose encoder and decoder run in ONNX Runtime from cached graphs never
        builds it (nor imports ``transformers``)."""
        if self._model is None:
            with torch.inference_mode(False):  # first use may come inside inference_mode: build normal tensors
                self._set_model(self._loader())
            self._loaded_versions = tensor_versions(self._model)
        return self._model

    @property
    def weights_are_source(self) -> bool:
        """Whether the weights are exactly those of the file the stage was loaded from (the model not
        built yet, or built and unchanged): graphs exported from that file then apply."""
        if self._loader is None:
            return False
        return self._model is None or tensor_versions(self._model) == self._loaded_versions

    def use_runtime(self, backend: str, precision: str) -> None:
        """Run the image encoder on ``backend`` (``torch``, ``onnx`` or ``auto``) at ``precision``
        (``fp32``, ``bf16``/``fp16`` autocast, ``int8`` on onnx); see :mod:`dissam.runtime.runners`.
        torch fp32 is the plain module call, the faithful path. ``onnx`` also runs the prompt decoder
        for box prompts in ONNX Runtime (fp32); a model built only to export the graphs is dropped
        afterwards (it is built again if a prompt that the graphs do not cover needs it)."""
        backend, precision = resolve_runtime(self.device, backend, precision)
        built = self._model is not None
        self.encoder_runner = (None if (backend, precision) == ("torch", "fp32")
                               else make_sam_encoder_runner(self, backend, precision))
        self.decoder_runner = make_sam_decoder_runner(self) if backend == "onnx" else None
        if not built and self._loader is not None:
            self._model = self._loaded_versions = None  # built for the export only: free its memory

    @property
    def name(self) -> str:
        """Stage-1 kind (:mod:`dissam.stages`): ``"sam"`` or ``"sam-hq"``."""
        return "sam-hq" if self.is_hq else "sam"

    # ----------------------------------------------------------------- image
    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.image_embedding: torch.Tensor | None = None
        self._intermediate: list[torch.Tensor] | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @property
    def is_image_set(self) -> bool:
        return self.image_embedding is not None

    def get_image_state(self) -> SamImageState | None:
        """The current image's embedding and sizes (``None`` when no image is set)."""
        if self.image_embedding is None:
            return None
        return SamImageState(self.image_embedding, self._intermediate, self.original_size, self.input_size)

    def set_image_state(self, state: SamImageState | None) -> None:
        """Make the image of ``state`` (from :meth:`get_image_state`) current, without encoding it again."""
        if state is None:
            self.reset_image()
            return
        self.image_embedding, self._intermediate = state.embedding, state.intermediate
        self.original_size, self.input_size = state.original_size, state.input_size

    def set_image(self, image: ImageLike) -> SamStage:
        """Compute and keep the image embedding of ``image`` (path, PIL image or array; gray, RGBA
        and 16-bit are converted by :func:`dissam.io.read_image`). Runs the image encoder once."""
        arr = read_image(image)
        pixels, input_size = preprocess_image(arr, self.image_size)
        if self.encoder_runner is not None:
            self.image_embedding, self._intermediate = self.encoder_runner(pixels)
        else:
            with torch.inference_mode():
                out = self.model.vision_encoder(pixel_values=pixels.to(self.device))
            self.image_embedding = out.last_hidden_state
            self._intermediate = list(out.intermediate_embeddings) if self.is_hq else None
        self.encoder_calls += 1
        self.original_size = (int(arr.shape[0]), int(arr.shape[1]))
        self.input_size = input_size
        return self

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise DisSamError("no image is set: call set_image(image) before predict / coarse_masks")

    # ----------------------------------------------------------------- boxes
    def transform_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image XYXY boxes ``(N, 4)`` -> boxes in the 1024 input frame (official
        ``ResizeLongestSide.apply_boxes``: x * W'/W, y * H'/H)."""
        return self.transform_coords(np.asarray(boxes, np.float64).reshape(-1, 2, 2)).reshape(-1, 4)

    def transform_coords(self, coords: np.ndarray) -> np.ndarray:
        """Original-image ``(..., 2)`` ``(x, y)`` points -> points in the 1024 input frame (official
        ``ResizeLongestSide.apply_coords``: x * W'/W, y * H'/H, the boxes' rule)."""
        h, w = self.original_size
        nh, nw = self.input_size
        out = np.asarray(coords, np.float64).copy()
        out[..., 0] = out[..., 0] * (nw / w)
        out[..., 1] = out[..., 1] * (nh / h)
        return out

    # ----------------------------------------------------------------- torch layer
    def predict_torch(
        self, boxes: torch.Tensor | None = None, multimask_output: bool = True, *,
        point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder for ``N`` prompts of the current image (``SamPredictor.predict_torch``).

        Args:
            boxes: ``(N, 4)`` float XYXY boxes already in the 1024 input frame, or ``None``.
            multimask_output: three masks per prompt (mask tokens 1..3) or one (token 0).
            point_coords: ``(N, P, 2)`` float ``(x, y)`` points in the 1024 input frame, or ``None``.
            point_labels: ``(N, P)`` int labels (1 object, 0 background), with ``point_coords``.
            mask_input: ``(N, 1, 256, 256)`` float low-resolution logits of previous predictions, or
                ``None``.
        Returns:
            ``low_res_logits`` ``(N, C, 256, 256)`` and ``iou_predictions`` ``(N, C)``, C = 3 or 1.

        The prompt encoder gets the points, labels, box and mask exactly as the official predictor
        passes them (points without a box get SAM's padding point). ``N`` prompts are one decoder call;
        with ``mask_input``, one call per prompt (``transformers`` takes a dense mask prompt per image,
        not per prompt).
        """
        self._require_image()
        if boxes is None and point_coords is None:
            raise DisSamError("predict_torch needs boxes, points or both")
        if self.decoder_runner is not None and multimask_output and point_coords is None and mask_input is None:
            # the exported decoder graph takes boxes only; clicks and mask prompts build the torch decoder
            return self.decoder_runner(self.image_embedding, self._intermediate, boxes)
        kwargs: dict[str, Any] = {}
        if self.is_hq:
            kwargs = {"intermediate_embeddings": self._intermediate, "hq_token_only": False}

        def decode(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            def take(t, dtype):
                return None if t is None else t[sl].to(self.device, dtype)

            with torch.inference_mode():
                points, labels = take(point_coords, torch.float32), take(point_labels, torch.int64)
                box_t = take(boxes, torch.float32)
                out = self.model(
                    image_embeddings=self.image_embedding,
                    input_points=None if points is None else points[None],
                    input_labels=None if labels is None else labels[None],
                    input_boxes=None if box_t is None else box_t[None],
                    input_masks=take(mask_input, torch.float32),
                    multimask_output=multimask_output,
                    **kwargs,
                )
            return out.pred_masks[0], out.iou_scores[0]

        if mask_input is None:
            return decode(slice(None))
        parts = [decode(slice(i, i + 1)) for i in range(len(mask_input))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def postprocess_masks(self, low_res: torch.Tensor) -> torch.Tensor:
        """``(N, C, 256, 256)`` logits -> ``(N, C, H, W)`` logits at the original size (bilinear to
        1024, crop to the resized image, bilinear to ``original_size``; ``align_corners=False``)."""
        nh, nw = self.input_size
        with torch.inference_mode():
            x = F.interpolate(
                low_res, (self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
            x = x[..., :nh, :nw]
            return F.interpolate(x, self.original_size, mode="bilinear", align_corners=False)

    # ----------------------------------------------------------------- numpy layer
    def _empty(self, multimask_output: bool, return_logits: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, (h, w) = (3 if multimask_output else 1), self.original_size
        dtype = np.float32 if return_logits else bool
        return np.zeros((0, c, h, w), dtype), np.zeros((0, c), np.float32), np.zeros((0, c, 256, 256), np.float32)

    def _finish(self, low_res: torch.Tensor, iou: torch.Tensor, return_logits: bool):
        masks = self.postprocess_masks(low_res)
        if not return_logits:
            masks = masks > MASK_THRESHOLD
        return masks.cpu().numpy(), iou.float().cpu().numpy(), low_res.float().cpu().numpy()

    def predict_batch(
        self, boxes=None, multimask_output: bool = True, return_logits: bool = False, *,
        point_coords=None, point_labels=None, mask_input=None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for ``N`` prompts of the current image with a single decoder call.

        Args:
            boxes: ``(N, 4)`` (or ``(4,)``) XYXY pixels of the original image; clipped to the image,
                inverted/empty/outside boxes raise :class:`~dissam.errors.BoxError`. ``None``: points only.
            multimask_output: 3 masks per prompt (True) or SAM's single-output token (False).
            return_logits: return float32 logits instead of ``logit > 0`` booleans.
            point_coords: ``(N, P, 2)`` ``(x, y)`` pixels of the original image (the same ``P`` for every
                prompt), or ``None``.
            point_labels: ``(N, P)``: 1 = object, 0 = background.
            mask_input: ``(N, 1, 256, 256)`` low-resolution logits of previous predictions, or ``None``.
        Returns:
            ``masks`` ``(N, C, H, W)`` bool (or float32 logits), ``iou_predictions`` ``(N, C)`` float32,
            ``low_res_logits`` ``(N, C, 256, 256)`` float32.
        """
        self._require_image()
        n, box_t, pts_t, labels_t, mask_t = prepare_batch(self, boxes, point_coords, point_labels, mask_input,
                                                          (256, 256))
        if n == 0:  # nothing to decode: empty arrays of the documented shapes
            return self._empty(multimask_output, return_logits)
        low_res, iou = self.predict_torch(box_t, multimask_output, point_coords=pts_t, point_labels=labels_t,
                                          mask_input=mask_t)
        return self._finish(low_res, iou, return_logits)

    def predict(
        self, box=None, multimask_output: bool = True, return_logits: bool = False, *,
        point_coords=None, point_labels=None, mask_input=None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``SamPredictor.predict``: one object's prompt, a box and/or points and/or a previous mask.

        Args:
            box: ``(4,)`` XYXY pixels of the original image, or ``None``.
            point_coords: ``P x 2`` ``(x, y)`` pixels of the original image, or ``None``.
            point_labels: ``(P,)``: 1 = object, 0 = background.
            mask_input: ``1 x 256 x 256`` low-resolution logits from a previous call (its third return
                value, one mask of it), the official way to iterate.
        Returns:
            ``masks`` ``(C, H, W)`` bool (or float32 logits), ``iou_predictions`` ``(C,)``,
            ``low_res_logits`` ``(C, 256, 256)``; C = 3 with ``multimask_output`` else 1.
        """
        self._require_image()
        boxes, coords, labels, masks_in = single_prompt(box, point_coords, point_labels, mask_input)
        masks, iou, low = self.predict_batch(boxes, multimask_output, return_logits, point_coords=coords,
                                             point_labels=labels, mask_input=masks_in)
        return masks[0], iou[0], low[0]

    def coarse_masks(self, boxes, selection: Selection = "first") -> np.ndarray:
        """One coarse mask per box: ``(N, H, W)`` bool at the original size.

        ``selection``:
            * ``"first"`` (DIS-SAM default, the authors' choice): ``multimask_output=True``, mask 0 of
              the three (decoder mask token 1), regardless of the predicted IoU;
            * ``"best"``: ``multimask_output=True``, the mask with the highest predicted IoU;
            * ``"single"``: ``multimask_output=False`` (SAM's single-output token 0).
        """
        if selection not in MASK_SELECTIONS:
            raise DisSamError(
                f"unknown mask selection {selection!r}: use one of {', '.join(MASK_SELECTIONS)}"
            )
        masks, iou, _ = self.predict_batch(boxes, multimask_output=selection != "single")
        if selection == "best":
            idx = iou.argmax(axis=1)
        else:
            idx = np.zeros(len(masks), dtype=np.int64)
        return masks[np.arange(len(masks)), idx]

    def prompt_masks(self, prompts: Sequence[Prompt], selection: str | Sequence[str] = "first") -> PromptMasks:
        """One coarse mask per :class:`~dissam.points.Prompt` (box and/or points and/or ``mask_input``;
        :class:`~dissam.stages.base.PointStage`), with the chosen mask's ``1 x 256 x 256`` logits.

        Prompts with the same kind of prompt (box or not, number of points, mask or not, one or three
        outputs) share one decoder call."""
        self._require_image()

        def decode(boxes, multimask, coords, labels, masks):
            return self.predict_batch(boxes, multimask, point_coords=coords, point_labels=labels, mask_input=masks)

        return decode_prompts(decode, prompts, selection, self.original_size)

    # ----------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the (converted) model as a Hugging Face folder (``config.json`` +
        ``model.safetensors``) that :func:`load_sam` reads back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder))
        return folder

    def __repr__(self) -> str:
        kind = "SamHQModel" if self.is_hq else "SamModel"
        return (
            f"SamStage({kind}, hidden={self.info.hidden_size}, depth={self.info.depth}, "
            f"global={list(self.info.global_attn)}, device={self.device}, source={self.source!r})"
        )


# --------------------------------------------------------------------- loading
def _download_hint(source: str) -> str:
    name = str(source).lower()
    size = "vit_h" if "huge" in name or "vit_h" in name else "vit_b" if "base" in name or "vit_b" in name else "vit_l"
    fname, repo = OFFICIAL_FILES[size]
    hub_id = str(source) if is_hub_id(source) else repo
    local = "models/" + hub_id.split("/")[-1]
    return (
        f"Download it once on a machine with internet, then pass the local copy:\n"
        f"  hf download {hub_id} --local-dir {local}   ->  load_sam('{local}')\n"
        "  (huggingface_hub < 1.0 names the command `huggingface-cli download`)\n"
        f"or the official checkpoint {OFFICIAL_URL}{fname} (put it e.g. in models/{fname}  ->  "
        f"load_sam('models/{fname}')).\n" + OFFLINE_NOTE
    )


def _from_pretrained(source: str, hq: bool | None, **kwargs) -> torch.nn.Module:
    # transformers is imported where a model is built (seconds): cached ONNX graphs need none
    from transformers import AutoConfig, SamHQModel, SamModel

    config = AutoConfig.from_pretrained(source, **kwargs)
    model_type = getattr(config, "model_type", "")
    if model_type not in ("sam", "sam_hq"):
        raise CheckpointError(
            f"{source} holds a {model_type!r} model, not SAM (model_type 'sam' or 'sam_hq')"
        )
    check_hq(model_type == "sam_hq", hq, source)
    cls = SamHQModel if model_type == "sam_hq" else SamModel
    return cls.from_pretrained(source, dtype=torch.float32, **kwargs).eval()


def load_sam(
    source: str | os.PathLike, device: str | torch.device | None = "cpu", hq: bool | None = None
) -> SamStage:
    """Load the SAM stage.

    Args:
        source: one of
            * an official Meta checkpoint file (``sam_vit_l_0b3195.pth``; any ``.pth``/``.pt``/
              ``.safetensors`` plain state dict with official keys): converted by our key map, sizes
              inferred from the tensors, loaded with ``weights_only=True`` and strict key checks;
            * a local Hugging Face folder (``config.json`` + weights) of a ``SamModel`` or
              ``SamHQModel`` (detected from ``model_type``), e.g. one written by
              :meth:`SamStage.save_pretrained`;
            * a hub id (``facebook/sam-vit-large``, an HQ-SAM id) loaded with ``from_pretrained``
              (uses the hub cache; ``HF_HUB_OFFLINE=1`` uses only the cache).
            * a registry name (``sam-vit-l``, ``sam-vit-l-hf``, ``sam-hq-vit-l``; ``dissam models list``):
              fetched into the cache on first use (:mod:`dissam.hub`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``None``/``"auto"``.
        hq: ``None`` accepts either model; ``True`` requires HQ-SAM; ``False`` requires plain SAM.

    Raises:
        CheckpointError: unreadable file, not a SAM checkpoint, or keys/shapes that do not match; a
            path that does not exist.
        OfflineError: a hub id that is neither cached nor downloadable (says what to download).
    """
    src = os.fspath(resolve_sam_source(source))  # registry names (sam-vit-l, ...) -> cached file/folder
    path = Path(src).expanduser()
    if path.is_file():
        check_hq(False, hq, src)
        return SamStage(None, device, source=str(path), info=official_info(path),
                        loader=lambda: build_sam_from_state_dict(read_state_dict(path), str(path)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} is a folder without config.json: give a Hugging Face SAM folder (config.json + "
                "model.safetensors, e.g. from `hf download facebook/sam-vit-large --local-dir DIR`) "
                "or the official .pth file itself"
            )
        info = folder_info(path, hq)

        def load_folder() -> torch.nn.Module:
            try:
                return _from_pretrained(str(path), hq, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"cannot load the Hugging Face SAM folder {path}: {exc}") from exc

        return SamStage(None, device, source=str(path), info=info, loader=load_folder)
    if not is_hub_id(src):
        raise missing_path_error(src, "SAM checkpoint not found", _download_hint(src))
    try:
        model = _from_pretrained(src, hq, local_files_only=hub_local_only())
    except CheckpointError:
        raise
    except Exception as exc:  # hub errors: offline, not cached, unknown repo, HTTP failures
        raise hub_error("SAM", src, exc, _download_hint(src)) from exc
    return SamStage(model, device, source=src)


def load_stage(source: str | os.PathLike, device=None, *, hq: bool | None = None) -> SamStage:
    """The registry's loader of stages ``sam`` (``hq=None``: SAM or HQ-SAM, as the weights say) and
    ``sam-hq`` (``hq=True``)."""
    return load_sam(source, device=device, hq=hq)
