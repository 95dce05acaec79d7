"""Video files in and out, streamed frame by frame with PyAV (the FFmpeg libraries, bundled in the
``av`` wheel: no system FFmpeg needed). Install with ``pip install 'dissam[video]'``.

Reading decodes one frame at a time (``H x W x 3`` uint8 RGB); nothing keeps the whole clip in
memory. Writing takes an iterator of frames:

* the **alpha video** (``*_alpha.mp4``): the refined soft map as an 8-bit grey picture, H.264
  (``libx264``, ``yuv420p``, CRF 12; even sizes are padded by one pixel row/column);
* the **cut-out video** (``*_cutout.webm``): the RGB frames with the soft map as alpha, VP9
  (``libvpx-vp9``, ``yuva420p``), which browsers and FFmpeg play with transparency.

Frame indices count decoded frames from 0 in presentation order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dissam.errors import DisSamError, ImageReadError


class VideoReadError(ImageReadError):
    """A video file is missing, unreadable, or has no video stream."""


def require_av():
    """Import PyAV, or say how to install it."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DisSamError("video needs PyAV: pip install 'dissam[video]' (or pip install av)") from exc
    return av


@dataclass
class VideoInfo:
    """``frames`` (decoded count), ``fps`` (float), ``width``, ``height`` (pixels)."""

    frames: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike):
    av = require_av()
    p = Path(path)
    if not p.is_file():
        raise VideoReadError(f"video not found: {p}")
    try:
        container = av.open(str(p))
    except Exception as exc:  # av raises its own error classes per FFmpeg error code
        raise VideoReadError(f"cannot read {p} as a video ({type(exc).__name__}: {exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{p} has no video stream")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, rate and size. The count is the decoded count (containers' own counts can be
    missing or wrong), so this decodes the clip once without keeping frames."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
        except Exception as exc:
            raise VideoReadError(f"{path}: decoding failed after {n} frame(s) ({type(exc).__name__}: {exc})") from exc
        if n == 0:
            raise VideoReadError(f"{path} has a video stream but no decodable frame")
        return VideoInfo(n, float(rate), int(stream.codec_context.width), int(stream.codec_context.height))
    finally:
        container.close()


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, H x W x 3 uint8 RGB)`` for frames ``start <= index < stop``, decoding forward
    from the beginning (frames before ``start`` are decoded and dropped: exact, codec-independent)."""
    container = _open(path)
    try:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if stop is not None and i >= stop:
                break
            if i >= start:
                yield i, frame.to_ndarray(format="rgb24")
    except VideoReadError:
        raise
    except Exception as exc:
        raise VideoReadError(f"{path}: decoding failed ({type(exc).__name__}: {exc})") from exc
    finally:
        container.close()


def _even(a: np.ndarray) -> np.ndarray:
    """Pad an image to even height and width (edge replication): 4:2:0 chroma needs even sizes."""
    h, w = a.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        pad = ((0, ph), (0, pw)) + (((0, 0),) if a.ndim == 3 else ())
        a = np.pad(a, pad, mode="edge")
    return a


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, kind: str) -> int:
    """Encode ``frames`` to ``path`` through a temporary file and a rename; returns the frame count.

    Args:
        frames: ``H x W`` uint8 (``kind="alpha"``) or ``H x W x 4`` uint8 RGBA (``kind="cutout"``).
        fps: frames per second (the source clip's rate).
        kind: ``"alpha"`` (H.264 grey in ``.mp4``) or ``"cutout"`` (VP9 with alpha in ``.webm``).
    """
    from fractions import Fraction

    av = require_av()
    if kind not in ("alpha", "cutout"):
        raise ValueError(f"kind must be 'alpha' or 'cutout', not {kind!r}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")
    rate = Fraction(fps).limit_denominator(1001)
    n = 0
    container = av.open(str(tmp), mode="w")
    try:
        if kind == "alpha":
            stream = container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "12", "preset": "veryfast"}
        else:
            stream = container.add_stream("libvpx-vp9", rate=rate)
            stream.pix_fmt = "yuva420p"
            stream.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        for arr in frames:
            arr = _even(np.ascontiguousarray(arr))
            if n == 0:
                stream.height, stream.width = arr.shape[:2]
            if kind == "alpha":
                frame = av.VideoFrame.from_ndarray(np.repeat(arr[..., None], 3, axis=2), format="rgb24")
            else:
                frame = av.VideoFrame.from_ndarray(arr, format="rgba")
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    os.replace(tmp, p)
    return n


def write_test_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> int:
    """Write RGB ``H x W x 3`` uint8 frames as a near-lossless H.264 ``.mp4`` (``yuv444p``, CRF 0):
    for generated clips and tests."""
    from fractions import Fraction

    av = require_av()
    n = 0
    container = av.open(str(path), mode="w")
    try:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0", "preset": "veryfast"}
        for arr in frames:
            if n == 0:
                stream.height, stream.width = arr.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return n
