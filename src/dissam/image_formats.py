"""Which image files dissam decodes: one input policy for the CLI, the app and the Python API.

Pillow recognises about forty formats, and ``Image.open`` hands a file to whichever plugin claims its
first bytes; some of those plugins run external programs (EPS runs Ghostscript) or are rarely
exercised decoders. dissam therefore decodes only an explicit **allow-list**, decided from the
file's first bytes *before* any Pillow plugin sees it, and then lets only that one plugin open it
(``Image.open(..., formats=[name])``):

=========  =================================================  ==========================
format     recognised by its header                           notes
=========  =================================================  ==========================
PNG        ``89 50 4E 47 0D 0A 1A 0A``                        APNG: the first frame
JPEG       ``FF D8 FF``                                       MPO: the first picture
TIFF       ``II*\\0``, ``MM\\0*`` (BigTIFF: ``II+\\0``, ``MM\\0+``)  the first page
WebP       ``RIFF....WEBP``                                   animated: the first frame
BMP        ``BM``
GIF        ``GIF87a``, ``GIF89a``                             the first frame
=========  =================================================  ==========================

Anything else is an :class:`~dissam.errors.ImageReadError` saying "unsupported format" (and naming the
format when its header is a well-known one: EPS, PDF, JPEG 2000, QOI, DDS, ...).

Opt-in for files, never for the app: the environment variable ``DISSAM_IMAGE_FORMATS`` adds Pillow
format names (comma-separated, e.g. ``DISSAM_IMAGE_FORMATS=PPM,TGA``) or ``all`` (every format Pillow
knows, EPS included). It applies to image *files* read by the command line and the Python API
(:func:`dissam.io.read_image`); ``dissam app`` ignores it and always uses the allow-list. Numpy arrays
and PIL images passed from Python are not files and are taken as they are.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

from PIL import Image

from dissam.errors import ImageReadError

ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF")
"""Pillow format names dissam decodes by default, in the order they are listed to users."""

FORMATS_ENV = "DISSAM_IMAGE_FORMATS"
"""Environment variable: extra Pillow formats (comma-separated) or ``all``; files only, never the app."""

ALLOWED_TEXT = "PNG, JPEG, TIFF, WebP, BMP and GIF (first frame)"

_SIGNATURES: tuple[tuple[str, int, bytes], ...] = (  # (format, offset, bytes)
    ("PNG", 0, b"\x89PNG\r\n\x1a\n"),
    ("JPEG", 0, b"\xff\xd8\xff"),
    ("TIFF", 0, b"II*\x00"),
    ("TIFF", 0, b"MM\x00*"),
    ("TIFF", 0, b"II+\x00"),
    ("TIFF", 0, b"MM\x00+"),
    ("GIF", 0, b"GIF87a"),
    ("GIF", 0, b"GIF89a"),
    ("BMP", 0, b"BM"),
)

# well-known headers of formats outside the allow-list, only to name them in the error message
_OTHER_SIGNATURES: tuple[tuple[str, int, bytes], ...] = (
    ("EPS (PostScript)", 0, b"%!PS"),
    ("EPS (PostScript)", 0, b"\xc5\xd0\xd3\xc6"),
    ("PDF", 0, b"%PDF"),
    ("JPEG 2000", 0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),
    ("JPEG 2000", 0, b"\xffO\xffQ"),
    ("QOI", 0, b"qoif"),
    ("DDS", 0, b"DDS "),
    ("Photoshop PSD", 0, b"8BPS"),
    ("ICO", 0, b"\x00\x00\x01\x00"),
    ("ICNS", 0, b"icns"),
    ("SGI", 0, b"\x01\xda"),
    ("FITS", 0, b"SIMPLE"),
    ("IM", 0, b"Image type"),
    ("XBM", 0, b"#define"),
    ("XPM", 0, b"/* XPM */"),
    ("MSP", 0, b"DanM"),
    ("MSP", 0, b"LinS"),
    ("HEIF/AVIF", 4, b"ftyp"),
    ("SVG/XML", 0, b"<?xml"),
    ("SVG", 0, b"<svg"),
    ("HTML", 0, b"<!DOCTYPE"),
    ("ZIP archive", 0, b"PK\x03\x04"),
)

HEADER_BYTES = 16
"""How many leading bytes :func:`sniff_format` needs."""


class UnsupportedFormat(ImageReadError):
    """The file's header is not one of the allowed formats."""


class TooManyPixels(ImageReadError):
    """The header declares more pixels than allowed (``size`` is ``(width, height)`` or ``None``
    when Pillow's own bomb check refused it first; ``limit`` is the pixel limit)."""

    def __init__(self, message: str, size: tuple[int, int] | None, limit: int):
        super().__init__(message)
        self.size, self.limit = size, limit


def sniff_format(header: bytes) -> str | None:
    """The allow-listed Pillow format name whose signature ``header`` (the file's first bytes, at
    least :data:`HEADER_BYTES` of them when the file has that many) starts with, else ``None``."""
    if len(header) >= 12 and header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "WEBP"
    for name, offset, sig in _SIGNATURES:
        if header[offset:offset + len(sig)] == sig:
            return name
    return None


def describe_header(header: bytes) -> str:
    """A short name for a header outside the allow-list ("EPS (PostScript)", "PDF"...), or ``""``."""
    for name, offset, sig in _OTHER_SIGNATURES:
        if header[offset:offset + len(sig)] == sig:
            return name
    return ""


def extra_formats_from_env() -> tuple[str, ...] | str:
    """``DISSAM_IMAGE_FORMATS`` as a tuple of upper-case Pillow format names, or ``"all"``."""
    raw = os.environ.get(FORMATS_ENV, "").strip()
    if raw.lower() in ("all", "any", "*"):
        return "all"
    return tuple(x.strip().upper() for x in raw.split(",") if x.strip())


def unsupported_message(header: bytes, name: str = "the file") -> str:
    known = describe_header(header)
    what = f"{name} is {known}, which" if known else f"{name} is in a format that"
    return (f"unsupported format: {what} dissam does not decode. It reads {ALLOWED_TEXT}; convert the "
            f"file to one of those")


def open_image(source, *, max_pixels: int, name: str = "the file",
               extra_formats: Sequence[str] | str = ()) -> Image.Image:
    """Open and decode an image file under the input policy.

    Args:
        source: a path or the file's bytes.
        max_pixels: the largest width x height accepted; checked from the header, before decoding.
        name: how messages refer to the file (its path, or "the upload").
        extra_formats: Pillow format names allowed besides :data:`ALLOWED_FORMATS`, or ``"all"``
            (the caller decides: the CLI passes :func:`extra_formats_from_env`, the app nothing).
    Returns:
        the loaded ``PIL.Image`` (first frame), size checked.
    Raises:
        ImageReadError: unsupported format, too many pixels, or a damaged file; the message names
        ``name``. Any exception a decoder raises on a damaged file becomes this error.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(source))
        header = bytes(source[:HEADER_BYTES])
    else:
        fp = open(source, "rb")  # noqa: SIM115 - closed below, or kept by the lazily loading image
        header = fp.read(HEADER_BYTES)
        fp.seek(0)
    try:
        if not header:
            raise ImageReadError(f"{name} is empty: choose an image file")
        fmt = sniff_format(header)
        if fmt is not None:
            formats: list[str] | None = [fmt]
        elif extra_formats == "all":
            formats = None
        elif extra_formats:
            formats = [f.upper() for f in extra_formats]
        else:
            raise UnsupportedFormat(unsupported_message(header, name))
        img = _open_within(fp, formats, header, max_pixels, name)
    except BaseException:
        fp.close()
        raise
    fp.close()  # the pixels are loaded: the file is no longer needed
    return img


def peek_size(data: bytes, *, max_pixels: int, name: str = "the upload") -> tuple[str, int, int]:
    """``(format, width, height)`` of allow-listed image bytes from the header only (nothing decoded);
    the same errors as :func:`open_image` for an unsupported format or too many pixels."""
    header = bytes(data[:HEADER_BYTES])
    if not header:
        raise ImageReadError(f"{name} is empty: choose an image file")
    fmt = sniff_format(header)
    if fmt is None:
        raise UnsupportedFormat(unsupported_message(header, name))
    img = _open_header(io.BytesIO(data), [fmt], header, max_pixels, name)
    return fmt, int(img.width), int(img.height)


def _open_header(fp, formats, header: bytes, max_pixels: int, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # the size is checked below, before any pixel is decoded, with a message of our own; a
            # plugin's warnings about a damaged file (corrupt EXIF...) end as an error or not at all
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            img = Image.open(fp, formats=formats)
    except Image.DecompressionBombError as exc:
        raise too_many_pixels(name, None, max_pixels) from exc
    except Exception as exc:  # any failure of a plugin on untrusted bytes is the file's fault
        if sniff_format(header) is None:  # an opted-in format list that does not know this file
            raise UnsupportedFormat(unsupported_message(header, name)) from exc
        raise ImageReadError(f"{name} is not an image dissam can read ({_short(exc)}); it may be "
                             "damaged or truncated") from exc
    if img.width * img.height > max_pixels:
        raise too_many_pixels(name, img.size, max_pixels)
    return img


def _open_within(fp, formats, header: bytes, max_pixels: int, name: str) -> Image.Image:
    img = _open_header(fp, formats, header, max_pixels, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            img.load()
    except Image.DecompressionBombError as exc:
        raise too_many_pixels(name, img.size, max_pixels) from exc
    except Exception as exc:  # a decoder's error on a damaged file (OSError, SyntaxError, struct.error...)
        raise ImageReadError(f"{name} is damaged or truncated ({_short(exc)})") from exc
    return img


def too_many_pixels(name: str, size: tuple[int, int] | None, limit: int) -> TooManyPixels:
    dims = f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.1f} megapixels" if size else "too many pixels"
    return TooManyPixels(f"refused to decode {name}: it declares {dims}, more than the limit of "
                          f"{limit / 1e6:g} megapixels (a decompression bomb, or a picture to downscale first)",
                         size, limit)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."
