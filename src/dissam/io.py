"""Reading images and masks from any source the way the rest of dissam expects them.

Conventions (used everywhere in dissam):

* an **image** is an ``H x W x 3`` ``uint8`` RGB array, EXIF orientation already applied;
* a **mask** is an ``H x W`` ``uint8`` array (0..255), EXIF orientation applied.

Odd inputs are converted, never rejected silently: grayscale and palette images become RGB, the
alpha channel of RGBA/LA images is dropped (as ``PIL.Image.convert("RGB")`` does in the authors'
loader), 16-bit and 32-bit integer images are scaled to 8 bits, float images in ``[0, 1]`` are
scaled by 255. Unreadable files raise :class:`~dissam.errors.ImageReadError` naming the file.

Image *files* are decoded only in the formats of :mod:`dissam.image_formats` (PNG, JPEG, TIFF, WebP,
BMP, GIF's first frame), recognised from their first bytes before any decoder runs; the environment
variable ``DISSAM_IMAGE_FORMATS`` opts other Pillow formats in. PIL images and arrays are taken as
they are.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from dissam.errors import ImageReadError
from dissam.image_formats import (
    FORMATS_ENV,
    TooManyPixels,
    UnsupportedFormat,
    extra_formats_from_env,
    open_image,
)
from dissam.utils import atomic_output

ImageLike = str | os.PathLike | Image.Image | np.ndarray

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""File names a folder is searched for (the formats of :mod:`dissam.image_formats`)."""

MAX_IMAGE_PIXELS = int(os.environ.get("DISSAM_MAX_IMAGE_PIXELS", 2 * 89_478_485))
"""Largest image (width x height) dissam decodes: PIL's decompression-bomb limit (179 MP) by default;
``DISSAM_MAX_IMAGE_PIXELS`` lowers it (a server) or raises it (up to PIL's own limit)."""


def _bomb_error(p: Path, size: tuple[int, int] | None, limit: int) -> ImageReadError:
    dims = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "too many pixels"
    return ImageReadError(
        f"refused to decode image {p}: it declares {dims}, more than the limit of {limit:,} pixels "
        "(a decompression bomb, or a very large image). Set DISSAM_MAX_IMAGE_PIXELS to allow larger images."
    )


def _open(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open an image file under dissam's input policy (:mod:`dissam.image_formats`: the allow-list
    decided from the header, plus what ``DISSAM_IMAGE_FORMATS`` opts in), size checked first."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageReadError(f"expected an image file but got a folder: {p}")
    limit = max_pixels or MAX_IMAGE_PIXELS
    try:
        return open_image(p, max_pixels=limit, name="the file", extra_formats=extra_formats_from_env())
    except TooManyPixels as exc:
        raise _bomb_error(p, exc.size, limit) from exc
    except UnsupportedFormat as exc:
        raise ImageReadError(f"cannot read image {p}: {exc} (or set {FORMATS_ENV}=NAME,... or "
                             f"{FORMATS_ENV}=all to let Pillow decode other formats)") from exc
    except ImageReadError as exc:
        raise ImageReadError(f"cannot read image {p}: {exc}") from exc
    except OSError as exc:  # the file itself (permissions, I/O error)
        raise ImageReadError(f"cannot read image {p}: {exc}") from exc


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """PIL image (any mode) -> uint8 array, HxW or HxWx3 (alpha dropped)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _to_uint8(np.asarray(img))
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if img.mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array to uint8 (0..255)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64))
        if arr.size and arr.max() <= 1.0 and arr.min() >= 0.0:
            arr = arr * 255.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        a = arr.astype(np.int64)
        hi = int(a.max()) if a.size else 0
        if hi <= 255 and a.min() >= 0:
            return a.astype(np.uint8)
        # 16-bit data (also PIL's "I" mode for 16-bit PNGs): map 0..65535 onto 0..255
        return np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
    raise ImageReadError(f"unsupported image dtype {arr.dtype}")


def _as_array(src: ImageLike) -> np.ndarray:
    if isinstance(src, np.ndarray):
        return _to_uint8(src)
    if isinstance(src, Image.Image):
        return _pil_to_array(src)
    if isinstance(src, (str, os.PathLike)):
        return _pil_to_array(_open(src))
    raise ImageReadError(
        f"unsupported image source of type {type(src).__name__}: give a path, a PIL image or a numpy array"
    )


def read_image(src: ImageLike) -> np.ndarray:
    """Read ``src`` (path, PIL image or array) as an ``H x W x 3`` uint8 RGB array.

    EXIF orientation is applied; grayscale is replicated to three channels; alpha is dropped;
    16-bit data is scaled to 8 bits. Arrays may be ``HxW``, ``HxWx1``, ``HxWx3`` or ``HxWx4``.
    """
    arr = _as_array(src)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, :3]
    elif arr.ndim == 3 and arr.shape[2] == 2:  # LA
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    else:
        raise ImageReadError(f"expected an HxW or HxWxC image, got an array of shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageReadError(f"image is too small ({arr.shape[0]}x{arr.shape[1]} pixels)")
    return np.ascontiguousarray(arr)


def read_mask(src: ImageLike) -> np.ndarray:
    """Read a ground truth or coarse mask as an ``H x W`` uint8 array (0..255).

    Colour masks use their first (red) channel, exactly like the authors' loader, which converts
    to RGB and keeps channel 0. Boolean arrays map to {0, 255}.
    """
    arr = _as_array(src)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ImageReadError(f"expected an HxW mask, got an array of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """:func:`read_image` for the encoded bytes of an image file (read from any filesystem), under the
    same input policy, pixel limit and orientation rules as a file; ``name`` names the source in errors."""
    limit = MAX_IMAGE_PIXELS
    try:
        img = open_image(bytes(data), max_pixels=limit, name=name, extra_formats=extra_formats_from_env())
    except TooManyPixels as exc:
        raise _bomb_error(Path(name), exc.size, limit) from exc
    except UnsupportedFormat as exc:
        raise ImageReadError(f"cannot read image {name}: {exc} (or set {FORMATS_ENV}=NAME,... or "
                             f"{FORMATS_ENV}=all to let Pillow decode other formats)") from exc
    except ImageReadError as exc:
        raise ImageReadError(f"cannot read image {name}: {exc}") from exc
    return read_image(img)


def encode_png(arr: np.ndarray) -> bytes:
    """The PNG bytes :func:`write_png` writes for ``arr`` (byte for byte the same file)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write a uint8 ``HxW`` / ``HxWx3`` / ``HxWx4`` array as PNG atomically (temp file + rename)."""
    with atomic_output(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    f = Path(folder)
    return sorted(
        p
        for p in f.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
