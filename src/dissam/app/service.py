"""The app's work, without HTTP: uploads in, masks and cut-outs out, one predictor.

:class:`SegmentationService` owns the one :class:`~dissam.predictor.DisSamPredictor`. Its model work
(:meth:`~SegmentationService.add_image`, :meth:`~SegmentationService.predict`) is called from **one
thread only** (the server's worker); :meth:`~SegmentationService.hold` and
:meth:`~SegmentationService.release` may be called from any thread (a lock guards the kept images).
Images are identified by the SHA-256 of their bytes (``image_id``). For each kept image it keeps the
decoded image and the predictor's per-image state, including the SAM embedding once computed: a new
box on a known image costs the SAM decoder and the refiner only.

Which images are kept: every image a queued or running request holds (:meth:`hold`: a request owns
its image until it finishes), the last ``Limits.held_uploads`` uploads that no predict has used yet
(so a client's upload-then-predict finds its image), and, besides those, the most recently used
images up to ``Limits.cached_images`` in all. An image is evicted only when nothing holds it.

Coordinates: boxes are XYXY pixels of the decoded image (EXIF orientation applied), ``(x1, y1)``
inclusive, as everywhere in dissam.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from dissam.boxes import validate_boxes
from dissam.errors import DisSamError, ImageReadError
from dissam.image_formats import TooManyPixels, UnsupportedFormat, open_image, peek_size
from dissam.io import read_image
from dissam.points import Prompt
from dissam.predictor import BUILTIN_REFINER
from dissam.predictor_points import as_prompts
from dissam.stages.registry import stage_specs
from dissam.visualize import cutout, overlay


class RequestError(DisSamError):
    """A request the app refuses; ``status`` is the HTTP status the server answers with."""

    status = 400


class UploadTooLarge(RequestError):
    status = 413


class UnknownImage(RequestError):
    status = 404


class Busy(RequestError):
    status = 503


class CostTooHigh(RequestError):
    """Pixels x boxes over ``Limits.max_cost``."""

    status = 413


class RequestTimeout(RequestError):
    status = 408


class Abandoned(RequestError):
    """The client went away: the request was stopped (never sent: there is no one to answer)."""

    status = 499


@dataclass
class Limits:
    """What one request may ask for.

    Attributes:
        max_upload_bytes: largest request body (the upload with its form fields).
        max_pixels: largest decoded image, width x height (decompression bombs stop here, before
            any pixel is decoded).
        max_boxes: boxes per request (objects: a box, clicks or both).
        max_points: clicks (point prompts) per request, all objects together.
        max_cost: the most pixels x boxes one predict request may cost (its time and memory grow with
            both: a soft map, a mask, a cut-out and PNGs at full size per box); over it the answer is
            413 with the numbers. The default, 64 million, is 5 boxes on a 12 MP photograph or 1 box
            on a 40 MP one.
        queue_size: requests waiting behind the one that runs; more are answered 503 (busy).
        cached_images: images whose decoded pixels and SAM embedding are kept (more while queued or
            running requests hold theirs).
        held_uploads: the most recent uploads kept for their first predict whatever else arrives.
        body_timeout_s: a request body must arrive within this many seconds (else 408): a client
            that trickles its upload cannot hold a connection and its buffer for ever.
        max_receiving: request bodies received at the same time; more are answered 503 at once.
    """

    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 40_000_000
    max_boxes: int = 16
    max_points: int = 64
    max_cost: int = 64_000_000
    queue_size: int = 8
    cached_images: int = 4
    held_uploads: int = 4
    body_timeout_s: float = 60.0
    max_receiving: int = 16


THRESHOLD_MODES = ("soft", "binary", "otsu")


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode uploaded bytes as an ``H x W x 3`` uint8 RGB image (:func:`dissam.io.read_image`:
    EXIF orientation, 16-bit, CMYK, palette, RGBA...). Only the allow-listed formats of
    :mod:`dissam.image_formats` are decoded (recognised from the first bytes; the app ignores
    ``DISSAM_IMAGE_FORMATS``), and the pixel count is checked from the header, before decoding, so a
    small file that would expand to gigabytes is refused cheaply."""
    if not data:
        raise ImageReadError("the upload is empty: choose an image file")
    try:
        img = open_image(data, max_pixels=max_pixels, name="the upload", extra_formats=())
        return read_image(img)
    except TooManyPixels as exc:
        raise pixels_refused(exc.size, max_pixels) from exc
    except UnsupportedFormat as exc:
        raise ImageReadError(f"the upload is not an image this server can read: {exc}") from exc


def pixels_refused(size: tuple[int, int] | None, max_pixels: int) -> RequestError:
    """The app's answer to an image over ``max_pixels`` (``size`` is ``(width, height)`` if known)."""
    if size is None:
        return RequestError(f"image refused: it declares too many pixels; the limit is {max_pixels / 1e6:g} megapixels")
    w, h = size
    return RequestError(f"image refused: {w}x{h} is {w * h / 1e6:.1f} megapixels; the limit is "
                        f"{max_pixels / 1e6:g} megapixels (a decompression bomb, or a picture to downscale first)")


def upload_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` from the upload's header alone (before EXIF rotation; nothing decoded),
    with :func:`decode_upload`'s errors for unsupported formats and too many pixels."""
    if not data:
        raise ImageReadError("the upload is empty: choose an image file")
    try:
        _, w, h = peek_size(data, max_pixels=max_pixels, name="the upload")
    except TooManyPixels as exc:
        raise pixels_refused(exc.size, max_pixels) from exc
    except UnsupportedFormat as exc:
        raise ImageReadError(f"the upload is not an image this server can read: {exc}") from exc
    return w, h


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``H x W`` (gray), ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA) array
    (OpenCV at low compression: a 12 MP result encodes in a fraction of PIL's time)."""
    a = np.ascontiguousarray(arr)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR if a.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV fails only on unsupported layouts
        raise DisSamError(f"cannot encode an array of shape {arr.shape} as PNG")
    return buf.tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def describe_models(predictor, sam: str | None = None, refiner: str | None = None) -> dict:
    """What the page and ``/api/info`` show about the loaded models: stage 1's label and licence
    from the stage registry, the refiner's source."""
    stage = predictor.sam_stage
    spec = stage_specs().get(getattr(stage, "name", "grabcut" if stage is None else ""))
    # what was loaded, not what was asked for (a --model preset names both halves)
    builtin_refiner = Path(predictor.refiner.source).resolve() == BUILTIN_REFINER.resolve()
    refiner = refiner or predictor.refiner.source
    weight_free = spec is not None and not spec.needs_weights
    notes = []
    if weight_free:
        kind = "bundled" if spec.bundled else "weight-free"
        notes.append(f"stage 1 is the {kind} {spec.label} (no --sam given)")
    if builtin_refiner:
        notes.append("the refiner is the built-in compact model")
    return {
        "sam": f"{spec.label} ({kind})" if weight_free else str(sam or getattr(stage, "source", "SAM")),
        "stage1": spec.name if spec is not None else getattr(stage, "name", "unknown"),
        "stage1_label": spec.label if spec is not None else getattr(stage, "name", "unknown"),
        "stage1_license": spec.license if spec is not None else "",
        "refiner": "built-in dis-sam-compact" if builtin_refiner else str(refiner),
        "refiner_size": int(predictor.size),
        "device": str(predictor.device),
        "builtin": bool(weight_free or builtin_refiner),
        "notice": ("Running on the built-in models: " + "; ".join(notes) + ". They are for trying the tool "
                   "offline and far from the paper's quality: start with --model dis-sam (or --sam and --refiner) for that.")
        if notes else "",
    }


class SegmentationService:
    """Uploads, kept image states and predictions for the app.

    Model work (:meth:`add_image`, :meth:`add_example`, :meth:`predict`) from one thread only;
    :meth:`hold`, :meth:`release` and :meth:`info` from any.

    Args:
        predictor: the one predictor of the process.
        limits: request limits (:class:`Limits`).
        models: the :func:`describe_models` dict shown by the page.
        examples: example name -> image file, chosen by the server (clients send a name, never a path).
    """

    def __init__(self, predictor, limits: Limits | None = None, models: dict | None = None,
                 examples: dict[str, Path] | None = None):
        self.predictor = predictor
        self.limits = limits or Limits()
        self.models = models or describe_models(predictor)
        self.examples = dict(examples or {})
        self._lock = threading.Lock()  # guards the three below
        self._states: OrderedDict[str, dict] = OrderedDict()  # image_id -> predictor image state (LRU order)
        self._pins: dict[str, int] = {}  # image_id -> queued or running requests holding it
        self._leases: OrderedDict[str, None] = OrderedDict()  # uploads awaiting their first predict
        self._current: str | None = None
        self.embeddings_computed = 0

    def info(self) -> dict:
        return {"models": self.models, "limits": asdict(self.limits), "examples": sorted(self.examples)}

    # ------------------------------------------------------------------ which images are kept
    def hold(self, image_id: str) -> tuple[int, int]:
        """Keep ``image_id`` until :meth:`release` (a request owns its image from the moment it is
        admitted until it finishes); returns ``(width, height)`` of the decoded image. Raises
        :class:`UnknownImage` (404) if the image is not kept (any more)."""
        with self._lock:
            state = self._states.get(image_id)
            if state is None:
                raise UnknownImage(f"image {image_id[:12]}... is not (or no longer) on the server: upload it again")
            self._pins[image_id] = self._pins.get(image_id, 0) + 1
            self._leases.pop(image_id, None)  # the upload's first predict has come
            self._states.move_to_end(image_id)
            return int(state.image.shape[1]), int(state.image.shape[0])

    def release(self, image_id: str) -> None:
        """Undo one :meth:`hold` (after the request finished, or was dropped from the queue)."""
        with self._lock:
            n = self._pins.get(image_id, 0) - 1
            if n > 0:
                self._pins[image_id] = n
            else:
                self._pins.pop(image_id, None)
            self._evict()

    def kept(self) -> dict:
        """What is kept now: ``images`` (ids, least recently used first), ``held`` (id -> holders)
        and ``uploads`` (uploads awaiting their first predict)."""
        with self._lock:
            return {"images": list(self._states), "held": dict(self._pins), "uploads": list(self._leases)}

    def _evict(self) -> None:
        """Drop least recently used images nothing holds until at most ``cached_images`` are kept
        (call with the lock held)."""
        cap = max(1, self.limits.cached_images)
        for image_id in list(self._states):
            if len(self._states) <= cap:
                return
            if image_id in self._pins or image_id in self._leases or image_id == self._current:
                continue
            del self._states[image_id]

    # ------------------------------------------------------------------ images
    def add_image(self, data: bytes, preview: bool = True, *, hold: bool = False, lease: bool = False,
                  image_id: str | None = None) -> dict:
        """Register uploaded bytes; decoding is skipped if the same bytes are kept. Returns
        ``image_id``, ``width``, ``height``, ``decode_ms`` and, with ``preview``, ``preview`` (the
        decoded image as a base64 JPEG: what the boxes' pixel coordinates refer to).

        ``hold``: also :meth:`hold` the image (the caller releases it). ``lease``: keep it for its
        first predict (the last ``Limits.held_uploads`` uploads are kept so)."""
        image_id = image_id or hashlib.sha256(data).hexdigest()
        t0 = time.perf_counter()
        with self._lock:  # a kept image is protected at once: a release() on another thread may evict
            state = self._states.get(image_id)
            known = state is not None
            if known:
                self._protect(image_id, hold, lease)
        if not known:
            image = decode_upload(data, self.limits.max_pixels)
            self._save_current()
            self.predictor.set_image(image)
            state = self.predictor.get_image_state()
            with self._lock:
                self._current = image_id
                self._states[image_id] = state
                self._protect(image_id, hold, lease)
        image = state.image
        out = {"image_id": image_id, "width": int(image.shape[1]), "height": int(image.shape[0]),
               "decode_ms": round((time.perf_counter() - t0) * 1e3, 1), "cached": known}
        if preview:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            out["preview"] = "data:image/jpeg;base64," + _b64(buf.tobytes())
        return out

    def _protect(self, image_id: str, hold: bool, lease: bool) -> None:
        """Mark a kept image used now, held and/or leased; then evict (call with the lock held)."""
        self._states.move_to_end(image_id)
        if hold:
            self._pins[image_id] = self._pins.get(image_id, 0) + 1
        if lease:
            self._leases[image_id] = None
            self._leases.move_to_end(image_id)
            while len(self._leases) > max(0, self.limits.held_uploads):
                self._leases.popitem(last=False)
        self._evict()

    def add_example(self, name: str, preview: bool = True, *, lease: bool = False) -> dict:
        if name not in self.examples:
            raise RequestError(f"unknown example {name!r}; available: {', '.join(sorted(self.examples)) or 'none'}")
        return {**self.add_image(self.examples[name].read_bytes(), preview, lease=lease), "name": name}

    def _save_current(self) -> None:
        with self._lock:
            if self._current is not None and self._current in self._states:
                self._states[self._current] = self.predictor.get_image_state()

    def _activate(self, image_id: str) -> None:
        """Make ``image_id`` the predictor's image (restoring its kept embedding)."""
        with self._lock:
            state = self._states.get(image_id)
        if state is None:
            raise UnknownImage(f"image {image_id[:12]}... is not (or no longer) on the server: upload it again")
        if image_id != self._current:
            self._save_current()
            self.predictor.set_image_state(state)
            with self._lock:
                self._current = image_id
        with self._lock:
            if image_id in self._states:
                self._states.move_to_end(image_id)

    # ------------------------------------------------------------------ prediction
    def predict(self, image_id: str, boxes, threshold: str = "soft", value: float = 0.5,
                fg_estimation: bool = True, outputs: tuple[str, ...] = ("mask", "soft", "coarse", "overlay", "cutout"),
                cancel: threading.Event | None = None, prompts: list[Prompt] | None = None) -> dict:
        """Segment ``boxes`` (``N x 4`` XYXY pixels of the decoded image) on a kept image, or, with
        ``prompts`` (one :class:`~dissam.points.Prompt` per object: a box and/or clicks; ``boxes`` is
        then ignored), the objects they give.

        With clicks, stage 1 runs its point path on the kept image state (for SAM-like stages the
        prompt encoder and mask decoder on the kept embedding; for the weight-free stages the clicks
        as seeds) and the refiner gets the corrected coarse mask with :func:`dissam.points.refiner_box`;
        each result's ``box`` is then that box and ``points`` echoes the clicks.

        ``threshold``: ``"soft"`` (mask ``soft > 0.5``, cut-out alpha = the soft map), ``"binary"``
        (mask ``soft > value``, alpha = mask) or ``"otsu"`` (Otsu's threshold, alpha = mask).
        Returns per box the clipped ``box`` and base64 PNGs (``mask`` 0/255, ``soft`` 8-bit,
        ``coarse`` 0/255, ``overlay`` RGB, ``cutout`` RGBA), and ``timings`` in milliseconds.

        ``cancel``: when set (the client went away) the work stops at the next step (after the
        embedding, the masks, each refiner batch, each box's outputs) with :class:`Abandoned`.
        """
        def check_cancel(step: str) -> None:
            if cancel is not None and cancel.is_set():
                raise Abandoned(f"the client went away; stopped {step}")

        if threshold not in THRESHOLD_MODES:
            raise RequestError(f"threshold must be one of {', '.join(THRESHOLD_MODES)}, not {threshold!r}")
        if threshold == "binary" and not 0.0 < float(value) < 1.0:
            raise RequestError(f"the binary threshold must lie strictly between 0 and 1, not {value}")
        t_start = time.perf_counter()
        check_cancel("before it started")
        self._activate(image_id)
        p = self.predictor
        h, w = p.image.shape[:2]
        if prompts is not None:
            if not 0 < len(prompts) <= self.limits.max_boxes:
                raise RequestError(f"give 1 to {self.limits.max_boxes} objects (a box, clicks or both) per request")
            prompts = as_prompts(prompts, (h, w))
        else:
            arr = np.asarray(boxes, dtype=np.float64) if not isinstance(boxes, np.ndarray) else boxes
            if arr.size == 0:
                raise RequestError("draw at least one box")
            if arr.reshape(-1).size // 4 > self.limits.max_boxes:
                raise RequestError(f"at most {self.limits.max_boxes} boxes per request")
            bx = validate_boxes(arr, (h, w))
        timings: dict[str, float] = {}

        def lap(name: str, t0: float) -> float:
            t1 = time.perf_counter()
            timings[name] = round((t1 - t0) * 1e3, 1)
            return t1

        t = time.perf_counter()
        ran = p.ensure_embedding()
        self.embeddings_computed += int(ran)
        t = lap("embedding_ms", t)
        check_cancel("after the image embedding")
        if prompts is None:
            coarse = p.coarse_masks(bx)
        else:  # stage 1's point path on the kept state; the refiner's boxes follow the corrected masks
            coarse = p.prompt_masks(prompts).masks
            bx = p.refiner_boxes(prompts, coarse)
        t = lap("decoder_ms", t)
        # the refiner in its own batches (what DisSamPredictor.refine does in one call), so that an
        # abandoned request stops between them
        batch = max(1, int(getattr(p, "refiner_batch_size", len(bx))))
        parts = []
        for start in range(0, len(bx), batch):
            check_cancel(f"after {start} of {len(bx)} boxes")
            parts.append(p.refine(coarse[start:start + batch], bx[start:start + batch]))
        soft = np.concatenate(parts)
        t = lap("refiner_ms", t)
        masks = p.binarize(soft, "otsu" if threshold == "otsu" else (float(value) if threshold == "binary" else 0.5))
        t = lap("threshold_ms", t)
        results, fg_ms = [], 0.0
        encode_ms = 0.0
        for i in range(len(bx)):
            check_cancel(f"after the outputs of {i} of {len(bx)} boxes")
            item: dict = {"box": [float(v) for v in bx[i]]}
            if prompts is not None:
                clicks = prompts[i]
                item["points"] = [] if not clicks.has_points else [
                    [float(x), float(y), int(lab)] for (x, y), lab in zip(clicks.point_coords, clicks.point_labels)]
            pngs: dict[str, np.ndarray] = {}
            if "mask" in outputs:
                pngs["mask"] = masks[i].astype(np.uint8) * 255
            if "soft" in outputs:
                pngs["soft"] = np.clip(np.rint(soft[i] * 255.0), 0, 255).astype(np.uint8)
            if "coarse" in outputs:
                pngs["coarse"] = coarse[i].astype(np.uint8) * 255
            if "overlay" in outputs:
                pngs["overlay"] = overlay(p.image, [masks[i]], [bx[i]])
            if "cutout" in outputs:
                tf = time.perf_counter()
                pngs["cutout"] = cutout(p.image, soft[i] if threshold == "soft" else masks[i], estimate_fg=fg_estimation)
                fg_ms += time.perf_counter() - tf
            te = time.perf_counter()
            for k, v in pngs.items():
                item[k] = _b64(encode_png(v))
            encode_ms += time.perf_counter() - te
            item["foreground_pixels"] = int(masks[i].sum())
            results.append(item)
        timings["cutout_ms"] = round(fg_ms * 1e3, 1)
        timings["encode_ms"] = round(encode_ms * 1e3, 1)
        timings["total_ms"] = round((time.perf_counter() - t_start) * 1e3, 1)
        return {"image_id": image_id, "width": int(w), "height": int(h), "threshold": threshold,
                "embedding_cached": not ran, "timings": timings, "results": results}
