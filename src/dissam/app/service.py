"""The app's work, without HTTP: uploads in, masks and cut-outs out, one predictor.

:class:`SegmentationService` owns the one :class:`~dissam.predictor.DisSamPredictor` and is called
from **one thread only** (the server's worker), so it needs no locks. Images are identified by the
SHA-256 of their bytes (``image_id``). For each of the last ``Limits.cached_images`` images it keeps
the decoded image and the predictor's per-image state, including the SAM embedding once computed:
a new box on a known image costs the SAM decoder and the refiner only.

Coordinates: boxes are XYXY pixels of the decoded image (EXIF orientation applied), ``(x1, y1)``
inclusive, as everywhere in dissam.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from dissam.errors import DisSamError, ImageReadError
from dissam.predictor import BUILTIN_REFINER
from dissam.stages.registry import stage_specs


class RequestError(DisSamError):
    """A request the app refuses; ``status`` is the HTTP status the server answers with."""

    status = 400


class UploadTooLarge(RequestError):
    status = 413


class UnknownImage(RequestError):
    status = 404


class Busy(RequestError):
    status = 503


@dataclass
class Limits:
    """What one request may ask for.

    Attributes:
        max_upload_bytes: largest request body (the upload with its form fields).
        max_pixels: largest decoded image, width x height (decompression bombs stop here, before
            any pixel is decoded).
        max_boxes: boxes per request.
        queue_size: requests waiting behind the one that runs; more are answered 503 (busy).
        cached_images: images whose decoded pixels and SAM embedding are kept.
    """

    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 40_000_000
    max_boxes: int = 16
    queue_size: int = 8
    cached_images: int = 4


THRESHOLD_MODES = ("soft", "binary", "otsu")


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode uploaded bytes as an ``H x W x 3`` uint8 RGB image (:func:`dissam.io.read_image`:
    EXIF orientation, 16-bit, CMYK, palette, RGBA...). The pixel count is checked from the header,
    before decoding, so a small file that would expand to gigabytes is refused cheaply."""
    from PIL import Image, UnidentifiedImageError

    from dissam.io import read_image

    if not data:
        raise ImageReadError("the upload is empty: choose an image file")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise RequestError(f"image refused: it declares too many pixels ({exc}); the limit is "
                           f"{max_pixels / 1e6:g} megapixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError("the upload is not an image this server can read (PNG, JPEG, TIFF, WebP, BMP...)") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise RequestError(f"image refused: {w}x{h} is {w * h / 1e6:.1f} megapixels; the limit is "
                           f"{max_pixels / 1e6:g} megapixels (a decompression bomb, or a picture to downscale first)")
    try:
        img.load()
        return read_image(img)
    except Image.DecompressionBombError as exc:
        raise RequestError(f"image refused: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"the image is damaged or truncated: {exc}") from exc


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
    """Uploads, kept image states and predictions for the app (call from one thread only).

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
        self._states: OrderedDict[str, dict] = OrderedDict()  # image_id -> predictor image state
        self._current: str | None = None
        self.embeddings_computed = 0

    def info(self) -> dict:
        return {"models": self.models, "limits": asdict(self.limits), "examples": sorted(self.examples)}

    # ------------------------------------------------------------------ images
    def add_image(self, data: bytes, preview: bool = True) -> dict:
        """Register uploaded bytes; decoding is skipped if the same bytes were seen. Returns
        ``image_id``, ``width``, ``height``, ``decode_ms`` and, with ``preview``, ``preview`` (the
        decoded image as a base64 PNG: what the boxes' pixel coordinates refer to)."""
        image_id = hashlib.sha256(data).hexdigest()
        t0 = time.perf_counter()
        known = image_id in self._states
        if not known:
            image = decode_upload(data, self.limits.max_pixels)
            self._save_current()
            self.predictor.set_image(image)
            self._current = image_id
            self._states[image_id] = self.predictor.get_image_state()
            self._evict()
        image = self._states[image_id].image
        out = {"image_id": image_id, "width": int(image.shape[1]), "height": int(image.shape[0]),
               "decode_ms": round((time.perf_counter() - t0) * 1e3, 1), "cached": known}
        if preview:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            out["preview"] = "data:image/jpeg;base64," + _b64(buf.tobytes())
        return out

    def add_example(self, name: str, preview: bool = True) -> dict:
        if name not in self.examples:
            raise RequestError(f"unknown example {name!r}; available: {', '.join(sorted(self.examples)) or 'none'}")
        return {**self.add_image(self.examples[name].read_bytes(), preview), "name": name}

    def _save_current(self) -> None:
        if self._current is not None and self._current in self._states:
            self._states[self._current] = self.predictor.get_image_state()

    def _activate(self, image_id: str) -> bool:
        """Make ``image_id`` the predictor's image (restoring its kept embedding)."""
        if image_id not in self._states:
            raise UnknownImage(f"image {image_id[:12]}... is not (or no longer) on the server: upload it again")
        if image_id != self._current:
            self._save_current()
            self.predictor.set_image_state(self._states[image_id])
            self._current = image_id
        self._states.move_to_end(image_id)
        return True

    def _evict(self) -> None:
        while len(self._states) > max(1, self.limits.cached_images):
            oldest = next(iter(self._states))
            if oldest == self._current:
                self._states.move_to_end(oldest)
                continue
            del self._states[oldest]

    # ------------------------------------------------------------------ prediction
    def predict(self, image_id: str, boxes, threshold: str = "soft", value: float = 0.5,
                fg_estimation: bool = True, outputs: tuple[str, ...] = ("mask", "soft", "coarse", "overlay", "cutout"),
                ) -> dict:
        """Segment ``boxes`` (``N x 4`` XYXY pixels of the decoded image) on a registered image.

        ``threshold``: ``"soft"`` (mask ``soft > 0.5``, cut-out alpha = the soft map), ``"binary"``
        (mask ``soft > value``, alpha = mask) or ``"otsu"`` (Otsu's threshold, alpha = mask).
        Returns per box the clipped ``box`` and base64 PNGs (``mask`` 0/255, ``soft`` 8-bit,
        ``coarse`` 0/255, ``overlay`` RGB, ``cutout`` RGBA), and ``timings`` in milliseconds.
        """
        from dissam.boxes import validate_boxes
        from dissam.visualize import cutout, overlay

        if threshold not in THRESHOLD_MODES:
            raise RequestError(f"threshold must be one of {', '.join(THRESHOLD_MODES)}, not {threshold!r}")
        if threshold == "binary" and not 0.0 < float(value) < 1.0:
            raise RequestError(f"the binary threshold must lie strictly between 0 and 1, not {value}")
        t_start = time.perf_counter()
        self._activate(image_id)
        p = self.predictor
        h, w = p.image.shape[:2]
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
        coarse = p.coarse_masks(bx)
        t = lap("decoder_ms", t)
        soft = p.refine(coarse, bx)
        t = lap("refiner_ms", t)
        masks = p.binarize(soft, "otsu" if threshold == "otsu" else (float(value) if threshold == "binary" else 0.5))
        t = lap("threshold_ms", t)
        results, fg_ms = [], 0.0
        encode_ms = 0.0
        for i in range(len(bx)):
            item: dict = {"box": [float(v) for v in bx[i]]}
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
