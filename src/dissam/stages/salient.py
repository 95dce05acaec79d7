"""Salient-object networks run inside the box: U²-Net, IS-Net, BiRefNet, RMBG as a stage 1.

These networks (the models of rembg and BiRefNet's users) segment whatever is salient in the image
they see, with no prompt. Shown only the crop of a box, "the salient object of the crop" is a good
guess for "the object in the box", so each becomes a box-prompted stage 1 that runs in seconds on a
CPU. What each network expects (input side, normalisation, which output, logits or not, min-max) is
a :class:`~dissam.stages.salient_models.SalientModel`; this module is the one stage that runs any of
them. Per box:

1. **crop**: the box grown by ``margin`` (a share of the box's width and height, 0.15 by default,
   on each side), floored and ceiled to whole pixels and clipped at the image border:
   ``x0' = max(0, floor(x0 - m_x))``, ``x1' = min(W, ceil(x1 + m_x) + 1)`` (exclusive) with
   ``m_x = margin * (x1 - x0 + 1)``, the same for ``y``; at least one pixel;
2. **input**: the crop resized to ``S x S`` (no aspect kept; area interpolation when shrinking,
   bilinear when growing), scaled (``/ 255`` or by its maximum), ``(x - mean) / std`` per channel,
   ``1 x 3 x S x S`` float32;
3. **run**: ONNX Runtime on an ``.onnx`` file, or, for IS-Net, the authors' ``.pth`` state dict in
   dissam's own ``ISNetDIS(in_ch=3)`` (torch), with no conversion;
4. **map**: the chosen output, through a sigmoid if it is logits, min-max normalised if the model's
   own code does it, resized back to the crop (bilinear) and pasted into an ``H x W`` map that is 0
   (background) outside the crop;
5. **mask**: ``map >= threshold`` (0.5), zeroed outside the box (``clip_to_box``), then only the
   8-connected components of at least ``min_component`` (0.1) of the largest one's area are kept:
   specks of salient background in the margin go, a second large part of the object stays.
6. **clicks** (:meth:`SalientStage.prompt_masks`): points are hard seeds, as for GrabCut and U²-Netp:
   discs of :func:`dissam.points.seed_radius` pixels (1 % of the image's longer side) marked sure
   foreground (label 1) or sure background (label 0). Steps 1-5 run on the working box
   (:func:`dissam.points.working_box`: the box grown to hold every positive click, or the clicks'
   own box without one), step 5 also keeps every component a positive click touches, and
   :func:`dissam.seeds.correct_with_seeds` then applies each click to the region it is on (a
   negative click removes the part it is on, a positive one adds the part it is on). The network is
   not re-run per click with any click input: it takes none.

Coordinates: boxes are XYXY pixels of the original (EXIF-rotated) image, ``(x1, y1)`` inclusive;
masks are ``N x H x W`` bool at the original size. After :meth:`SalientStage.coarse_masks`,
``last_maps`` holds one :class:`CropMap` per box (the crop window and its probability map at crop
resolution): what a prompt that refines a box's mask (clicks as seeds) works on, with no second run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dissam.checkpoints import infer_refiner_config, load_state_dict_strict, read_state_dict
from dissam.errors import CheckpointError, DisSamError
from dissam.hub.registry import find_entry
from dissam.hub.sources import missing_path_error
from dissam.hub.store import fetch
from dissam.models.isnet import ISNetDIS
from dissam.points import Prompt
from dissam.seeds import correct_with_seeds, positive_components
from dissam.stages.base import ImageKeepingStage, PromptMasks, seeded_prompts
from dissam.stages.salient_models import SALIENT_MODELS, SalientModel

__all__ = ["CropMap", "SalientStage", "crop_window", "preprocess", "load_stage", "TORCH_SUFFIXES"]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
"""Weights files read as a state dict (IS-Net's official ``.pth``); anything else is ONNX."""


@dataclass(frozen=True)
class CropMap:
    """One box's probability map before thresholding.

    Attributes:
        window: ``(x0, y0, x1, y1)`` of the crop in image pixels, ``x1``/``y1`` exclusive.
        prob: ``h x w`` float32 in [0, 1] (``h = y1 - y0``, ``w = x1 - x0``); the image map is this
            inside ``window`` and 0 elsewhere.
    """

    window: tuple[int, int, int, int]
    prob: np.ndarray

    def full(self, hw: tuple[int, int]) -> np.ndarray:
        """The ``H x W`` float32 map (0 outside the window)."""
        out = np.zeros(hw, dtype=np.float32)
        x0, y0, x1, y1 = self.window
        out[y0:y1, x0:x1] = self.prob
        return out


def crop_window(box, hw: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """The crop ``(x0, y0, x1, y1)`` (exclusive ends) of the XYXY-inclusive ``box`` grown by ``margin``
    of its width/height on each side, clipped to the ``(H, W)`` image, at least one pixel (a box
    outside the image gets the nearest border pixel)."""
    h, w = hw
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    mx, my = margin * (x1 - x0 + 1), margin * (y1 - y0 + 1)
    cx0 = min(max(0, int(np.floor(x0 - mx))), w - 1)
    cy0 = min(max(0, int(np.floor(y0 - my))), h - 1)
    cx1 = min(w, int(np.ceil(x1 + mx)) + 1)
    cy1 = min(h, int(np.ceil(y1 + my)) + 1)
    return cx0, cy0, max(cx1, cx0 + 1), max(cy1, cy0 + 1)


def preprocess(crop: np.ndarray, model: SalientModel) -> np.ndarray:
    """``h x w x 3`` uint8 RGB crop -> ``1 x 3 x S x S`` float32 input of ``model`` (step 2)."""
    size = model.input_size
    h, w = crop.shape[:2]
    shrink = h > size or w > size
    x = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = x.astype(np.float32)
    x /= max(float(x.max()), 1e-6) if model.scaling == "max" else 255.0
    x = (x - np.asarray(model.mean, np.float32)) / np.asarray(model.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def postprocess(output: np.ndarray, model: SalientModel, crop_hw: tuple[int, int]) -> np.ndarray:
    """The network's map (``1 x 1 x S x S``, ``1 x S x S`` or ``S x S``) -> ``h x w`` float32 in [0, 1]
    at the crop's size (step 4)."""
    m = np.asarray(output, dtype=np.float32).reshape(output.shape[-2:])
    if model.activation == "sigmoid":
        m = 0.5 * (1.0 + np.tanh(0.5 * m))  # the sigmoid, without exp's overflow for large logits
    if model.minmax:
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi - lo > 1e-8 else np.zeros_like(m)
    m = cv2.resize(m, (crop_hw[1], crop_hw[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(m, 0.0, 1.0)


def onnxruntime_module(what: str):
    """``onnxruntime``, or a :class:`DisSamError` that says how to install it."""
    try:
        import onnxruntime  # a dependency of dissam; imported here so that the registry stays light
    except ImportError as exc:
        raise DisSamError(
            f"--stage1 {what} runs on ONNX Runtime, a dependency of dissam that is not installed here: "
            "pip install onnxruntime (or pip install 'dissam[onnx]')"
        ) from exc
    return onnxruntime


class _OnnxNetwork:
    """An ONNX file on ONNX Runtime's CPU provider: ``x -> [outputs]``."""

    def __init__(self, path: Path, model: SalientModel, threads: int | None):
        ort = onnxruntime_module(model.name)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"cannot load the {model.label} ONNX file {path}: {exc}") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        if len(shape) != 4 or shape[1] != 3 or any(d != model.input_size for d in fixed) \
                or model.output_index >= len(outputs):
            raise CheckpointError(
                f"{path} does not hold {model.label}: input {[i.shape for i in inputs]}, {len(outputs)} output(s); "
                f"expected one input [N, 3, {model.input_size}, {model.input_size}] and output {model.output_index}")
        self.input_name = inputs[0].name
        self.output_name = outputs[model.output_index].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


class _IsNetTorch:
    """The authors' IS-Net state dict (``isnet-general-use.pth``) in ``ISNetDIS(in_ch=3)``; its ``d1``."""

    def __init__(self, path: Path, model: SalientModel, device):
        import torch  # only IS-Net .pth files need torch; the ONNX path stays without it

        sd = read_state_dict(path)
        config = infer_refiner_config(sd)
        if config.arch != "isnet" or config.in_ch != 3:
            raise CheckpointError(f"{path} is a {config.arch} network with {config.in_ch} input channels, not the "
                                  f"3-channel IS-Net that --stage1 {model.name} runs (the DIS-SAM refiner goes to "
                                  "--refiner)")
        net = ISNetDIS(3, config.out_ch, config.width)
        load_state_dict_strict(net, sd, str(path))
        self.device = torch.device(device or "cpu")
        self.net = net.to(self.device).eval()
        self._torch = torch

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            sides, _ = self.net(torch.from_numpy(x).to(self.device))
        return sides[0].float().cpu().numpy()  # d1: already a sigmoid


class SalientStage(ImageKeepingStage):
    """Stage 1: a salient-object network on each box's crop (see the module docstring).

    Args:
        model: the network's conventions (a :data:`~dissam.stages.salient_models.SALIENT_MODELS`
            value, or one of your own).
        path: its weights: an ``.onnx`` file, or for IS-Net also the authors' ``.pth``.
        margin: the crop is the box grown by this share of its width/height on each side.
        threshold: probability threshold of the map.
        min_component: keep components of at least this share of the largest one's area (0: all).
        clip_to_box: zero the mask outside the box (the box bounds the object by definition).
        threads: ONNX Runtime intra-op threads (``None``: its default).
        device: where a torch network runs (``.pth`` weights); ONNX files run on the CPU.
    """

    def __init__(self, model: SalientModel, path: str | os.PathLike, *, margin: float = 0.15,
                 threshold: float = 0.5, min_component: float = 0.1, clip_to_box: bool = True,
                 threads: int | None = None, device=None):
        if margin < 0 or not 0 < threshold < 1 or not 0 <= min_component <= 1:
            raise DisSamError(f"bad {model.label} settings: margin={margin} (>= 0), threshold={threshold} "
                              f"(in (0, 1)), min_component={min_component} (in [0, 1])")
        self.model = model
        self.name = model.name
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise CheckpointError(f"{model.label} weights file not found: {self.path}")
        if self.path.suffix.lower() in TORCH_SUFFIXES:
            if model.torch_arch != "isnet":
                raise CheckpointError(f"--stage1 {model.name} runs from its ONNX file only, not {self.path.name} "
                                      "(only IS-Net's .pth files run directly)")
            self.network = _IsNetTorch(self.path, model, device)
        else:
            self.network = _OnnxNetwork(self.path, model, threads)
        self.margin, self.threshold = float(margin), float(threshold)
        self.min_component, self.clip_to_box = float(min_component), bool(clip_to_box)
        self.last_maps: list[CropMap] = []

    @property
    def source(self) -> str:
        """The weights file (what the app's page names)."""
        return str(self.path)

    def crop_map(self, box) -> CropMap:
        """Steps 1-4 for one box: its crop window and probability map."""
        image = self._require_image()
        window = crop_window(box, image.shape[:2], self.margin)
        x0, y0, x1, y1 = window
        crop = image[y0:y1, x0:x1]
        out = self.network(preprocess(crop, self.model))
        return CropMap(window, postprocess(out, self.model, crop.shape[:2]))

    def soft_map(self, box) -> np.ndarray:
        """``H x W`` float32 in [0, 1]: the box's probability map pasted into the image (0 outside the
        crop)."""
        return self.crop_map(box).full(self._require_image().shape[:2])

    def _mask(self, box, seeds: np.ndarray | None = None) -> np.ndarray:
        """Step 5 for one box (its :class:`CropMap` is appended to ``last_maps``); with ``seeds``
        (``H x W`` int8, :func:`dissam.points.seed_labels`) the components positive clicks touch stay."""
        cm = self.crop_map(box)
        self.last_maps.append(cm)
        mask = cm.full(self._require_image().shape[:2]) >= self.threshold
        if self.clip_to_box:
            x0, y0, x1, y1 = (int(round(float(v))) for v in box)
            keep = np.zeros_like(mask)
            keep[max(0, y0):max(0, y1 + 1), max(0, x0):max(0, x1 + 1)] = True
            mask &= keep
        return self._largest_components(mask, seeds)

    def _largest_components(self, mask: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
        """``mask``'s 8-connected components of at least ``min_component`` of the largest one's area,
        and those a positive seed touches (a click on a small part keeps it)."""
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if n <= 2:
            return mask
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept = 1 + np.flatnonzero(areas >= self.min_component * areas.max())
        if seeds is not None:
            kept = np.union1d(kept, positive_components(labels, seeds))
        return np.isin(labels, kept)

    def _begin(self, boxes) -> tuple[np.ndarray, tuple[int, int]]:
        """``N x 4`` float64 boxes and the image size, with ``last_maps`` emptied for this call."""
        image = self._require_image()
        self.last_maps = []
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), image.shape[:2]

    def coarse_masks(self, boxes: np.ndarray, selection: str = "first") -> np.ndarray:
        """``N x 4`` XYXY boxes -> ``N x H x W`` bool masks (``selection`` is ignored: one output)."""
        boxes, (h, w) = self._begin(boxes)
        if len(boxes) == 0:
            return np.zeros((0, h, w), dtype=bool)
        return np.stack([self._mask(b) for b in boxes])

    def prompt_masks(self, prompts: Sequence[Prompt], selection: str | Sequence[str] = "first") -> PromptMasks:
        """One mask per :class:`~dissam.points.Prompt` (:class:`~dissam.stages.base.PointStage`): a box
        alone as :meth:`coarse_masks`; with clicks, step 6 of the module docstring. No low-resolution
        logits (``None``; a ``mask_input`` is refused); ``selection`` is ignored."""
        image = self._require_image()
        self.last_maps = []
        masks = []
        for p, seeds, box, radius in seeded_prompts(prompts, image.shape[:2], self.seed_radius, self.name):
            mask = self._mask(box, seeds)
            if seeds is not None:
                mask = correct_with_seeds(image, mask, box, seeds, p.point_coords, p.point_labels, radius)
            masks.append(mask)
        return PromptMasks(np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool), [None] * len(masks))


def resolve_weights(source: str | os.PathLike | None, model: SalientModel) -> Path:
    """The local weights file of ``source``: an existing file, or a registry name of salient weights
    (``isnet-general-use``: downloaded into the cache on first use and verified; offline, an
    :class:`~dissam.errors.OfflineError` says how to place it by hand). IS-Net also takes the
    ``isnet-general-use-pth`` entry (the authors' ``.pth``, placed by hand)."""
    if source is None:
        raise DisSamError(f"--stage1 {model.name} needs weights: pass --sam {model.weights} (downloaded on first use) "
                          "or the path of its file")
    value = os.fspath(source)
    path = Path(value).expanduser()
    if path.is_dir():
        raise CheckpointError(f"--stage1 {model.name} takes a weights file (.onnx, or IS-Net's .pth), not the "
                              f"folder {path}")
    if path.exists():
        return path
    entry = find_entry(value)
    if entry is None:
        raise missing_path_error(value, f"--stage1 {model.name} weights",
                                 f"pass --sam {model.weights} to download them, or the path of the .onnx file")
    isnet_pth = model.torch_arch == "isnet" and entry.check == "refiner:isnet"
    other = {m.weights for m in SALIENT_MODELS.values()} - {model.weights}
    if not (entry.role == "salient" or isnet_pth) or entry.name in other:
        raise DisSamError(f"{entry.name} ({entry.description}) is not weights for --stage1 {model.name}: "
                          f"pass --sam {model.weights}, or leave --stage1 out to run the stage its weights belong to")
    return fetch(entry)


def load_stage(source: str | os.PathLike | None, device=None, *, model: str, **options) -> SalientStage:
    """The registry's loader of the salient-object stage 1s (``model``: a
    :data:`~dissam.stages.salient_models.SALIENT_MODELS` name); ``source`` is a file or a registry name."""
    desc = SALIENT_MODELS[model]
    return SalientStage(desc, resolve_weights(source, desc), device=device, **options)
