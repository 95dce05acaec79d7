"""Stage 1 for video: propagate one object through a clip, one coarse mask per frame.

Two kinds, one interface (``start(frame, index, box=..., mask=...)``, then ``step(frame, index)``,
each returning an ``H x W`` bool coarse mask):

* :class:`SamVideoTracker`: SAM 2.1 (``Sam2VideoModel``) or the SAM 3 tracker
  (``Sam3TrackerVideoModel``) in transformers' *streaming* mode: frames are given one at a time
  and the model's memory bank (the last ``num_maskmem`` frames' memories and up to
  ``max_object_pointers_in_encoder`` object pointers, plus the prompted frame) carries the object.
  transformers' session keeps every streamed frame and every frame's outputs; :meth:`_prune`
  drops what the model can no longer read (older than the memory window), so memory stays bounded
  on long clips.
* :class:`StageTracker`: any image stage 1 (SAM, HQ-SAM, SAM 2.1 image, SAM 3 tracker image,
  GrabCut) re-prompted on every frame with the previous frame's mask box, grown by a margin. No
  memory, so it does not recover an object that leaves its box; it needs no video model.

Coordinates: boxes are XYXY pixels, ``(x1, y1)`` inclusive; frames ``H x W x 3`` uint8 RGB.
"""

from __future__ import annotations

import importlib
import os
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from dissam.boxes import box_from_mask, validate_boxes
from dissam.errors import DisSamError
from dissam.stages.hf import load_hf_model, session_class
from dissam.stages.registry import get_spec, load_stage1, read_model_type, resolve_stage
from dissam.stages.sam2 import NORMALISATION, model_input_size, square_input
from dissam.utils import resolve_device


class Tracker(Protocol):
    name: str

    def start(self, frame: np.ndarray, index: int, box=None, mask: np.ndarray | None = None,
              reverse: bool = False) -> np.ndarray:
        """Prompt on ``frame`` (number ``index``) with a box or a mask; returns its coarse mask."""

    def step(self, frame: np.ndarray, index: int) -> np.ndarray:
        """The next frame (``index`` one after, or one before when ``reverse``): its coarse mask."""


class SamVideoTracker:
    """SAM 2.1 / SAM 3 video propagation in streaming mode (one object).

    Args:
        model: ``Sam2VideoModel`` or ``Sam3TrackerVideoModel``.
        device: where the model runs; the session's state is kept there too.
        prune: forget frames outside the memory window (default); ``False`` keeps transformers'
            behaviour (state grows with every frame), for measuring the difference.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", source: str = "model",
                 prune: bool = True):
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        model_type = model.config.model_type
        if model_type not in ("sam2_video", "sam3_tracker_video"):
            raise DisSamError(f"SamVideoTracker takes a SAM 2 / SAM 3 video model, not {model_type!r}")
        self.name = "sam3" if model_type.startswith("sam3") else "sam2"
        self.mean, self.std = NORMALISATION[model_type]
        self.size = model_input_size(model.config)
        cfg = model.config
        # frames further back than this are never read again (memories and object pointers)
        self.window = max(int(cfg.num_maskmem), int(cfg.max_object_pointers_in_encoder)) + 1
        self.source = source
        self.prune = bool(prune)
        self.session = None
        self.reverse = False
        self._hw: tuple[int, int] | None = None

    def start(self, frame, index, box=None, mask=None, reverse=False):
        if (box is None) == (mask is None):
            raise DisSamError("start the tracker with exactly one of box= or mask=")
        h, w = frame.shape[:2]
        self._hw = (h, w)
        self.reverse = bool(reverse)
        session_cls = session_class(self.model)
        self.session = session_cls(video_height=h, video_width=w, inference_device=self.device,
                                   inference_state_device=self.device, video_storage_device=self.device,
                                   dtype=torch.float32)
        obj_idx = self.session.obj_id_to_idx(1)
        s = self.size
        if box is not None:
            b = validate_boxes(box, (h, w))[0]
            coords = torch.tensor([[b[0] * s / w, b[1] * s / h], [b[2] * s / w, b[3] * s / h]], dtype=torch.float32)
            self.session.add_point_inputs(obj_idx, int(index), {
                "point_coords": coords.reshape(1, 1, 2, 2),
                "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32),  # box corners
            })
        else:
            m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
            m = (F.interpolate(m, (s, s), mode="bilinear", align_corners=False, antialias=True) >= 0.5).float()
            self.session.add_mask_inputs(obj_idx, int(index), m)
        self.session.obj_with_new_inputs = [1]
        return self._run(frame, index)

    def step(self, frame, index):
        if self.session is None:
            raise DisSamError("start the tracker on a prompted frame before step()")
        return self._run(frame, index)

    def _run(self, frame: np.ndarray, index: int) -> np.ndarray:
        if frame.shape[:2] != self._hw:
            raise DisSamError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the clip is {self._hw[1]}x{self._hw[0]}")
        x = square_input(frame, self.size, self.mean, self.std).to(self.device)
        with torch.inference_mode():
            out = self.model(self.session, frame=x, frame_idx=int(index), reverse=self.reverse)
            logits = F.interpolate(out.pred_masks[:1].float(), self._hw, mode="bilinear", align_corners=False)
        if self.prune:
            self._prune(int(index))
        return (logits[0, 0] > 0).cpu().numpy()

    def _prune(self, index: int) -> None:
        """Forget streamed frames and non-prompted outputs outside the memory window."""
        sess = self.session
        far = (lambda i: i > index + self.window) if self.reverse else (lambda i: i < index - self.window)
        if sess.processed_frames:
            for i in [i for i in sess.processed_frames if i != index]:
                del sess.processed_frames[i]  # the pixels are needed only while the frame is encoded
        for outputs in sess.output_dict_per_obj.values():
            nc = outputs["non_cond_frame_outputs"]
            for i in [i for i in nc if far(i)]:
                del nc[i]
        for tracked in sess.frames_tracked_per_obj.values():
            for i in [i for i in tracked if far(i)]:
                del tracked[i]

    def state_bytes(self) -> int:
        """Bytes of tensors the session holds (streamed pixels and per-frame outputs)."""
        sess, total = self.session, 0

        def add(v):
            nonlocal total
            if isinstance(v, torch.Tensor):
                total += v.numel() * v.element_size()
            elif isinstance(v, dict):
                for x in v.values():
                    add(x)

        add(dict(sess.processed_frames or {}))
        for o in sess.output_dict_per_obj.values():
            add(o)
        return total

    def state_frames(self) -> int:
        """Frames whose outputs the session holds now (for memory measurements)."""
        return sum(len(o["non_cond_frame_outputs"]) + len(o["cond_frame_outputs"])
                   for o in self.session.output_dict_per_obj.values())


class StageTracker:
    """Any image stage 1, re-prompted per frame with the previous mask's box grown by ``margin``
    (a fraction of the box side, at least 4 px). When a frame's mask comes back empty, the last box
    is kept."""

    def __init__(self, stage, margin: float = 0.15, selection: str = "first"):
        self.stage = stage
        self.name = f"{getattr(stage, 'name', 'stage')}-per-frame"
        self.margin = float(margin)
        self.selection = selection
        self._box: np.ndarray | None = None

    def start(self, frame, index, box=None, mask=None, reverse=False):
        if (box is None) == (mask is None):
            raise DisSamError("start the tracker with exactly one of box= or mask=")
        h, w = frame.shape[:2]
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            self._box = self._grow(box_from_mask(mask), (h, w)) if mask.any() else np.array([0, 0, w - 1, h - 1], float)
            return mask
        self._box = validate_boxes(box, (h, w))[0]
        return self._segment(frame)

    def step(self, frame, index):
        if self._box is None:
            raise DisSamError("start the tracker on a prompted frame before step()")
        return self._segment(frame)

    def _segment(self, frame: np.ndarray) -> np.ndarray:
        self.stage.set_image(frame)
        mask = np.asarray(self.stage.coarse_masks(self._box[None], selection=self.selection)[0], dtype=bool)
        if mask.any():
            self._box = self._grow(box_from_mask(mask), frame.shape[:2])
        return mask

    def _grow(self, box: np.ndarray, hw) -> np.ndarray:
        h, w = hw
        bw, bh = box[2] - box[0], box[3] - box[1]
        mx, my = max(4.0, self.margin * bw), max(4.0, self.margin * bh)
        return np.array([max(0, box[0] - mx), max(0, box[1] - my), min(w - 1, box[2] + mx), min(h - 1, box[3] + my)])


def _video_model(kind: str, source: str | os.PathLike, class_name: str, video_types: tuple[str, ...],
                 device, **runtime) -> SamVideoTracker | None:
    """A propagating tracker when ``source`` holds a video checkpoint (a hub id is taken to); ``None``
    for an image checkpoint, which the caller re-prompts per frame instead."""
    model_type = read_model_type(source)
    if model_type is not None and model_type not in video_types:
        return None
    if runtime.get("backend") not in (None, "torch", "auto") or runtime.get("precision") not in (None, "fp32"):
        raise DisSamError(f"the {kind} video tracker runs on torch fp32 only: leave out --backend/--precision")
    return SamVideoTracker(load_hf_model(source, class_name, video_types, kind), device, source=os.fspath(source))


def load_sam2_video(source: str | os.PathLike, device, **runtime) -> SamVideoTracker | None:
    """SAM 2.1's video tracker (``Sam2VideoModel``) from a ``sam2_video`` folder or a hub id
    (``facebook/sam2.1-hiera-*``); ``None`` for a SAM 2 image folder."""
    return _video_model("sam2", source, "Sam2VideoModel", ("sam2_video",), device, **runtime)


def load_sam3_video(source: str | os.PathLike, device, **runtime) -> SamVideoTracker | None:
    """SAM 3's video tracker (``Sam3TrackerVideoModel``) from a ``sam3_tracker_video`` / ``sam3_video``
    folder or a hub id (``facebook/sam3``); ``None`` for a SAM 3 image folder."""
    return _video_model("sam3", source, "Sam3TrackerVideoModel", ("sam3_tracker_video", "sam3_video"), device,
                        **runtime)


def load_tracker(kind: str | None, source: str | os.PathLike | None, device=None, *,
                 backend: str | None = None, precision: str | None = None) -> Tracker:
    """A video stage 1 for the registry's stage ``kind`` (``None``/``"auto"``: read off ``source``, and
    without a source the offline default).

    A stage whose registry entry names a video loader (``sam2``, ``sam3``) and a source holding a video
    checkpoint gives a :class:`SamVideoTracker` that propagates the object; every other stage (and a
    SAM 2 / SAM 3 *image* checkpoint) gives a :class:`StageTracker` re-prompted on every frame.
    """
    name = resolve_stage(kind, source)
    spec = get_spec(name)
    dev = resolve_device(device)
    if spec.video_loader is not None and source is not None:
        loader = getattr(importlib.import_module(spec.video_loader.partition(":")[0]),
                         spec.video_loader.partition(":")[2])
        tracker = loader(source, dev, backend=backend, precision=precision)
        if tracker is not None:
            return tracker
    return StageTracker(load_stage1(name, source, dev, backend=backend, precision=precision))
