"""Fine-structured objects for the synthetic data (:mod:`dissam.data.synthetic`), drawn with exact
soft coverage.

Every object is drawn as a *binary* shape on a canvas ``SUPERSAMPLE`` times finer than the image,
then block-averaged: the coverage of each pixel (``k / SUPERSAMPLE**2``) is both the compositing
alpha and, rounded to 8 bits, the ground truth. Kinds: :data:`KINDS`. Arrays are ``(h, w)``
float32 coverage in [0, 1]; canvases ``(h*s, w*s)`` uint8 {0, 1}.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 4
"""Linear supersampling factor: GT levels are multiples of 1/16 before 8-bit rounding."""


# --------------------------------------------------------------------------------------------
# coverage rendering


def coverage(canvas: np.ndarray, s: int = SUPERSAMPLE) -> np.ndarray:
    """Block-average a binary ``(h*s, w*s)`` canvas (values 0/1) to float32 coverage ``(h, w)`` in [0, 1]."""
    h, w = canvas.shape[0] // s, canvas.shape[1] // s
    c = canvas[: h * s, : w * s].reshape(h, s, w, s)
    return c.sum(axis=(1, 3), dtype=np.uint16).astype(np.float32) / float(s * s)


def coverage_to_u8(cov: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] -> 8-bit GT (round half to even of ``cov * 255``)."""
    return np.rint(np.clip(cov, 0.0, 1.0) * 255.0).astype(np.uint8)


def composite(img: np.ndarray, cov: np.ndarray, tex: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``tex`` (``h x w x 3``) into ``img`` (``H x W x 3`` float32, in place) with the
    coverage ``cov`` (``h x w``) as alpha, top-left corner at ``(x0, y0)`` (the object lies inside)."""
    h, w = cov.shape
    a = cov[..., None]
    reg = img[y0 : y0 + h, x0 : x0 + w]
    reg *= 1 - a
    reg += tex * a


def _pt(x: float, y: float, s: int) -> tuple[int, int]:
    return int(round(x * s)), int(round(y * s))


def _thick(px: float, s: int) -> int:
    """Line thickness in canvas pixels for a width of ``px`` image pixels (at least 1 canvas px)."""
    return max(1, int(round(px * s)))


def draw_rectangle(h: int, w: int, x0: int, y0: int, x1: int, y1: int, s: int = SUPERSAMPLE) -> np.ndarray:
    """Canvas ``(h*s, w*s)`` with the image-pixel rectangle ``[x0, x1) x [y0, y1)`` filled (test helper)."""
    c = np.zeros((h * s, w * s), np.uint8)
    c[y0 * s : y1 * s, x0 * s : x1 * s] = 1
    return c


# Each drawer fills shape pixels with 1 on a zero canvas of shape (h*s, w*s); h, w in image pixels.


def _draw_tree(c: np.ndarray, h: int, w: int, rng: np.random.Generator, s: int) -> None:
    base = max(2.0, min(h, w) * rng.uniform(0.04, 0.08))
    depth = int(rng.integers(5, 8))
    min_w = rng.choice([0.5, 0.75, 1.0, 1.25])

    def grow(x, y, ang, length, width, d):
        x2, y2 = x + np.cos(ang) * length, y - np.sin(ang) * length
        cv2.line(c, _pt(x, y, s), _pt(x2, y2, s), 1, _thick(width, s), cv2.LINE_8)
        if d == 0 or length < 3:
            if rng.random() < 0.3:
                r = rng.uniform(1.0, 3.0)
                cv2.circle(c, _pt(x2, y2, s), _thick(r, s), 1, -1, cv2.LINE_8)
            return
        for _ in range(int(rng.integers(2, 4))):
            grow(
                x2,
                y2,
                float(np.clip(ang + rng.uniform(-0.8, 0.8), 0.1 * np.pi, 0.9 * np.pi)),
                length * rng.uniform(0.55, 0.8),
                max(min_w, width * rng.uniform(0.5, 0.72)),
                d - 1,
            )

    grow(
        w / 2 + rng.uniform(-0.1, 0.1) * w,
        h - 1,
        np.pi / 2 + rng.uniform(-0.2, 0.2),
        h * rng.uniform(0.26, 0.34),
        base,
        depth,
    )


def _blob_polygon(cx, cy, rx, ry, rng, n=96, harmonics=4, rough=0.25):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 2 + harmonics):
        r += rough / k * rng.normal() * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.4, 1.6)
    return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], 1)


def _fill_poly(c, pts, s, value=1):
    cv2.fillPoly(c, [np.round(pts * s).astype(np.int32)], value, cv2.LINE_8)


def _draw_blob(c: np.ndarray, h: int, w: int, rng: np.random.Generator, s: int) -> None:
    _fill_poly(c, _blob_polygon(w / 2, h / 2, w * 0.4, h * 0.4, rng), s)
    for _ in range(int(rng.integers(0, 5))):  # holes, some tiny
        r = rng.uniform(1.0, max(1.0, 0.08 * min(h, w)))  # tiny distractors: 1 px holes
        pts = _blob_polygon(
            w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), r, r * rng.uniform(0.5, 1.5), rng, 32
        )
        _fill_poly(c, pts, s, 0)


def _draw_fence(c: np.ndarray, h: int, w: int, rng: np.random.Generator, s: int) -> None:
    inner = np.zeros_like(c)
    ellipse = rng.random() < 0.35
    border = max(1.0, min(h, w) * rng.uniform(0.01, 0.04))
    if ellipse:
        cv2.ellipse(inner, _pt(w / 2, h / 2, s), _pt(w / 2 - border, h / 2 - border, s), 0, 0, 360, 1, -1)
    else:
        inner[_thick(border, s) : -_thick(border, s), _thick(border, s) : -_thick(border, s)] = 1
    c[...] = 1
    if ellipse:
        c[...] = 0
        cv2.ellipse(c, _pt(w / 2, h / 2, s), _pt(w / 2, h / 2, s), 0, 0, 360, 1, -1)
    c[inner > 0] = 0
    mesh = np.zeros_like(c)
    pitch = rng.uniform(5, 18)
    lw = rng.choice([0.5, 1.0, 1.0, 1.5, 2.0, 3.0])
    angles = [rng.uniform(0, np.pi)]
    if rng.random() < 0.7:
        angles.append(angles[0] + rng.choice([np.pi / 2, np.pi / 3, rng.uniform(0.4, 1.2)]))
    diag = float(np.hypot(h, w))
    for a in angles:
        d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        for k in np.arange(-diag / 2, diag / 2, pitch):
            p = np.array([w / 2, h / 2]) + n * k
            cv2.line(mesh, _pt(*(p - d * diag), s), _pt(*(p + d * diag), s), 1, _thick(lw, s), cv2.LINE_8)
    c[(inner > 0) & (mesh > 0)] = 1


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_text(c: np.ndarray, h: int, w: int, rng: np.random.Generator, s: int) -> None:
    lines = int(rng.integers(1, 4))
    size = max(8, int(h / lines * rng.uniform(0.45, 0.8)))
    alphabet = string.ascii_letters + string.digits + "&@#%$?!"
    img = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(img)
    font = _font(size * s)
    stroke = int(rng.choice([0, 0, 0, 1])) * s
    for i in range(lines):
        n = max(2, int(w / (size * 0.55)))
        text = "".join(rng.choice(list(alphabet), n))
        x = rng.uniform(0, 0.05) * w * s
        while len(text) > 1 and x + font.getlength(text) + stroke > w * s:  # no letter cut by the box
            text = text[:-1]
        draw.text(
            (x, (i * h / lines) * s),
            text,
            fill=255,
            font=font,
            stroke_width=stroke,
            stroke_fill=255,
        )
    if rng.random() < 0.5:  # a thin frame or underline
        y = int(h * s - _thick(1.0, s) * 2)
        draw.line([(0, y), (w * s, y)], fill=255, width=_thick(rng.uniform(0.5, 2), s))
    c[np.asarray(img) >= 128] = 1


def _draw_wheel(c: np.ndarray, h: int, w: int, rng: np.random.Generator, s: int) -> None:
    cx, cy, rx, ry = w / 2, h / 2, w / 2 - 1, h / 2 - 1
    rim = max(1.0, min(rx, ry) * rng.uniform(0.03, 0.1))
    cv2.ellipse(c, _pt(cx, cy, s), _pt(rx - rim / 2, ry - rim / 2, s), 0, 0, 360, 1, _thick(rim, s))
    spokes = int(rng.integers(8, 36))
    sw = rng.choice([0.5, 0.75, 1.0, 1.5])
    for a in np.linspace(0, 2 * np.pi, spokes, endpoint=False) + rng.uniform(0, 1):
        cv2.line(
            c,
            _pt(cx, cy, s),
            _pt(cx + np.cos(a) * rx * 0.97, cy + np.sin(a) * ry * 0.97, s),
            1,
            _thick(sw, s),
        )
    hub = min(rx, ry) * rng.uniform(0.08, 0.2)
    cv2.ellipse(c, _pt(cx, cy, s), _pt(hub, hub, s), 0, 0, 360, 1, -1)
    if rng.random() < 0.6:  # spiral filigree
        t = np.linspace(0, rng.uniform(4, 10) * np.pi, 400)
        r = t / t[-1] * 0.8
        pts = np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], 1)
        cv2.polylines(c, [np.round(pts * s).astype(np.int32)], False, 1, _thick(rng.uniform(0.75, 2.5), s))
    for _ in range(int(rng.integers(0, 3))):  # inner rings
        k = rng.uniform(0.3, 0.85)
        cv2.ellipse(c, _pt(cx, cy, s), _pt(rx * k, ry * k, s), 0, 0, 360, 1, _thick(rng.uniform(0.5, 2), s))


def _draw_insect(c: np.ndarray, h: int, w: int, rng: np.random.Generator, s: int) -> None:
    _fill_poly(c, _blob_polygon(w / 2, h / 2, w * 0.22, h * 0.18, rng, rough=0.15), s)
    for _ in range(int(rng.integers(4, 10))):  # legs / antennae / wires
        a = rng.uniform(0, 2 * np.pi)
        x, y = w / 2 + np.cos(a) * w * 0.15, h / 2 + np.sin(a) * h * 0.12
        pts = [(x, y)]
        seg = int(rng.integers(2, 5))
        for _ in range(seg):
            a += rng.uniform(-0.7, 0.7)
            step = min(h, w) * rng.uniform(0.08, 0.18)
            x = float(np.clip(x + np.cos(a) * step, 1, w - 2))
            y = float(np.clip(y + np.sin(a) * step, 1, h - 2))
            pts.append((x, y))
        arr = np.round(np.array(pts) * s).astype(np.int32)
        cv2.polylines(c, [arr], False, 1, _thick(rng.choice([0.5, 0.75, 1.0, 1.5, 2.0]), s))


KINDS: dict[str, Callable[..., None]] = {
    "tree": _draw_tree,
    "fence": _draw_fence,
    "text": _draw_text,
    "blob": _draw_blob,
    "wheel": _draw_wheel,
    "insect": _draw_insect,
}
KIND_WEIGHTS = {"tree": 0.22, "fence": 0.18, "text": 0.15, "blob": 0.12, "wheel": 0.15, "insect": 0.18}


def render_object(kind: str, h: int, w: int, rng: np.random.Generator, s: int = SUPERSAMPLE) -> np.ndarray:
    """Coverage ``(h, w)`` float32 in [0, 1] of one object of ``kind`` filling an ``h x w`` box."""
    c = np.zeros((h * s, w * s), np.uint8)
    KINDS[kind](c, h, w, rng, s)
    return coverage(c, s)
