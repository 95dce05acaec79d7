"""Synthetic DIS-like training data: fine-structured objects with an exact soft ground truth.

Every object is drawn as a *binary* shape on a canvas ``SUPERSAMPLE`` times finer than the image,
then reduced by block averaging: the coverage of each image pixel (``k / SUPERSAMPLE**2``) is both
the alpha used to composite the object onto the background and, rounded to 8 bits, the ground
truth. Image and GT are therefore consistent to the 8-bit rounding. A filled rectangle with integer
corners gives exactly 255 inside and 0 outside.

Object kinds (see ``KINDS``): ``tree`` (branches thinning down to 1 px and below), ``fence``
(a frame with a rotated mesh, many holes), ``text`` (PIL's scalable default font), ``blob``
(smooth body with holes), ``wheel`` (rings, 1-px spokes, spiral filigree), ``insect`` (a blob
body with thin curved wires). Distractor objects are composited *behind* the target and are not
in its GT, so the box prompt decides which object is meant.

Determinism: sample ``i`` of seed ``s`` uses ``numpy.random.default_rng(s * 1_000_003 + i)``
only, so it does not depend on the number of samples, the worker count or the order.
Images are ``HxWx3`` uint8 RGB, GT ``HxW`` uint8, boxes XYXY inclusive pixels (``dissam.boxes``).
"""

from __future__ import annotations

import functools
import io
import json
import os
import string
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dissam.boxes import box_from_mask
from dissam.errors import DatasetError
from dissam.io import write_png
from dissam.utils import atomic_write_bytes

SUPERSAMPLE = 4
"""Linear supersampling factor: GT levels are multiples of 1/16 before 8-bit rounding."""

SEED_STRIDE = 1_000_003
JPEG_QUALITY = 92
MASK_SOURCES = ("degrade", "grabcut", "none")

# skimage.data images whose docstrings state public domain or CC0 (checked for scikit-image 0.25).
PHOTO_NAMES = ("astronaut", "camera", "chelsea", "coffee", "brick", "grass", "gravel", "hubble_deep_field")


def sample_rng(index: int, seed: int) -> np.random.Generator:
    """The only random source of sample ``index``: ``default_rng(seed * 1_000_003 + index)``."""
    return np.random.default_rng(int(seed) * SEED_STRIDE + int(index))


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


# --------------------------------------------------------------------------------------------
# appearance


def _smooth_noise(h: int, w: int, rng: np.random.Generator, cells: float) -> np.ndarray:
    gh, gw = max(2, int(h / cells) + 2), max(2, int(w / cells) + 2)
    g = rng.random((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """Public-domain / CC0 ``skimage.data`` photos as RGB uint8 (empty if scikit-image is missing)."""
    try:
        import skimage.data as skd
    except Exception:  # pragma: no cover - optional
        return ()
    out = []
    for name in PHOTO_NAMES:
        try:
            im = np.asarray(getattr(skd, name)())
        except Exception:  # pragma: no cover - a missing bundled file
            continue
        if im.dtype != np.uint8:
            im = (im > 0).astype(np.uint8) * 255 if im.dtype == bool else np.clip(im, 0, 255).astype(np.uint8)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, 2)
        out.append(np.ascontiguousarray(im[..., :3]))
    return tuple(out)


BACKGROUNDS = ("gradient", "noise", "stripes", "checker", "clutter", "photo")


def background(
    h: int, w: int, rng: np.random.Generator, use_photos: bool = True, kind: str | None = None
) -> np.ndarray:
    """A procedural (or photo) background ``(h, w, 3)`` float32 in [0, 255].

    ``kind`` forces one of ``BACKGROUNDS`` (the random draw still happens, so the rest of the
    sample's random stream is unchanged); ``"photo"`` falls back to ``"clutter"`` without photos.
    """
    kinds = list(BACKGROUNDS[:-1])
    photos = _photos() if use_photos else ()
    if photos:
        kinds.append("photo")
    drawn = kinds[int(rng.integers(len(kinds)))]
    if kind is None:
        kind = drawn
    elif kind not in BACKGROUNDS:
        raise DatasetError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")
    elif kind == "photo" and not photos:
        kind = "clutter"
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    proj = (np.cos(a) * xx + np.sin(a) * yy) / max(h, w)
    c1, c2 = _color(rng), _color(rng)
    if kind == "gradient":
        t = (proj - proj.min()) / max(1e-6, float(np.ptp(proj)))
        bg = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "noise":
        t = sum(_smooth_noise(h, w, rng, cells) * wt for cells, wt in ((64, 0.6), (16, 0.3), (4, 0.1)))
        bg = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "stripes":
        t = 0.5 + 0.5 * np.sin(proj * max(h, w) * 2 * np.pi / rng.uniform(6, 60))
        bg = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "checker":
        cell = rng.uniform(8, 64)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
        bg = c1 * (1 - t[..., None]) + c2 * t[..., None]
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.5, 2))
    elif kind == "clutter":
        bg = np.empty((h, w, 3), np.float32)
        bg[:] = c1
        for _ in range(int(rng.integers(15, 40))):
            col = tuple(float(v) for v in _color(rng))
            p = (int(rng.integers(w)), int(rng.integers(h)))
            if rng.random() < 0.5:
                cv2.circle(bg, p, int(rng.integers(4, max(5, min(h, w) // 4))), col, -1)
            else:
                q = (int(rng.integers(w)), int(rng.integers(h)))
                cv2.line(bg, p, q, col, int(rng.integers(1, 12)))
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(1.5, 6))
    else:
        im = photos[int(rng.integers(len(photos)))]
        ph, pw = im.shape[:2]
        scale = max(h / ph, w / pw) * rng.uniform(1.0, 1.6)
        im = cv2.resize(
            im, (max(w, int(pw * scale + 0.5)), max(h, int(ph * scale + 0.5))), interpolation=cv2.INTER_LINEAR
        )
        y0, x0 = int(rng.integers(im.shape[0] - h + 1)), int(rng.integers(im.shape[1] - w + 1))
        bg = im[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        if rng.random() < 0.5:
            bg = bg[:, ::-1]
        bg = bg * rng.uniform(0.7, 1.2) + rng.uniform(-30, 30, 3).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.float32)


def object_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Object colour field ``(h, w, 3)`` float32: a base colour with a shading gradient and mottling."""
    base = _color(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    shade = (np.cos(a) * xx + np.sin(a) * yy) / max(h, w, 1)
    shade = (shade - shade.mean()) * rng.uniform(0, 80)
    mott = (_smooth_noise(h, w, rng, rng.uniform(6, 30)) - 0.5) * rng.uniform(0, 60)
    return np.clip(base + (shade + mott)[..., None], 0, 255)


# --------------------------------------------------------------------------------------------
# samples


def _pick_kind(rng: np.random.Generator) -> str:
    names = list(KIND_WEIGHTS)
    p = np.array([KIND_WEIGHTS[k] for k in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _resolve_size(size, size_range, rng) -> tuple[int, int]:
    if size is None:
        lo, hi = int(size_range[0]), int(size_range[1])
        if not 32 <= lo <= hi:
            raise DatasetError(f"size_range must satisfy 32 <= min <= max, got {size_range}")
        return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    if min(h, w) < 32:
        raise DatasetError(f"sample size must be at least 32 px, got {(h, w)}")
    return h, w


def _composite(img: np.ndarray, cov: np.ndarray, tex: np.ndarray, x0: int, y0: int) -> None:
    h, w = cov.shape
    a = cov[..., None]
    reg = img[y0 : y0 + h, x0 : x0 + w]
    reg *= 1 - a
    reg += tex * a


def generate_sample(
    index: int,
    seed: int = 0,
    size: int | tuple[int, int] | None = None,
    *,
    size_range: tuple[int, int] = (320, 512),
    kind: str | None = None,
    background_kind: str | None = None,
    use_photos: bool = True,
    max_targets: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``index`` of ``seed``.

    Args:
        size: ``None`` (height and width drawn independently from ``size_range``), an int (square)
            or ``(H, W)``.
        kind: force the target's kind (one of ``KINDS``); default random.
        background_kind: force the background (one of ``BACKGROUNDS``); default random.
        use_photos: allow the bundled public-domain/CC0 ``skimage.data`` photos as backgrounds.
        max_targets: with ``> 1``, the ground truth holds 1 to ``max_targets`` separate objects
            (side by side in equal slots along the longer side, never touching) under one box, as
            DIS-5K's multi-component masks do; enrichment (``dissam.data.enrich``) splits them.
            ``1`` (the default) draws exactly what earlier versions drew.
    Returns:
        ``image`` ``HxWx3`` uint8 RGB, ``gt`` ``HxW`` uint8 (coverage * 255 of the target only) and
        ``box`` int64 ``[x0, y0, x1, y1]`` = ``box_from_mask(gt > 0)`` (inclusive pixels).
        The image is returned before JPEG encoding.
    """
    if max_targets < 1:
        raise DatasetError(f"max_targets must be >= 1, got {max_targets}")
    rng = sample_rng(index, seed)
    h, w = _resolve_size(size, size_range, rng)
    if kind is None:
        kind = _pick_kind(rng)
    elif kind not in KINDS:
        raise DatasetError(f"unknown object kind {kind!r}; choose one of {sorted(KINDS)}")
    img = background(h, w, rng, use_photos, background_kind)
    for _ in range(int(rng.integers(1, 4))):  # distractors behind the target
        dh = int(h * rng.uniform(0.15, 0.45))
        dw = int(w * rng.uniform(0.15, 0.45))
        dy, dx = int(rng.integers(0, h - dh + 1)), int(rng.integers(0, w - dw + 1))
        cov = render_object(_pick_kind(rng), dh, dw, rng)
        _composite(img, cov, object_texture(dh, dw, rng), dx, dy)
    n_targets = 1 if max_targets == 1 else int(rng.integers(1, max_targets + 1))
    n_targets = max(1, min(n_targets, max(h, w) // 32))  # slots of at least 32 px
    gt = np.zeros((h, w), np.uint8)
    if n_targets == 1:
        th = max(24, int(h * rng.uniform(0.45, 0.9)))
        tw = max(24, int(w * rng.uniform(0.45, 0.9)))
        ty, tx = int(rng.integers(1, h - th)), int(rng.integers(1, w - tw))
        cov = render_object(kind, th, tw, rng)
        _composite(img, cov, object_texture(th, tw, rng), tx, ty)
        gt[ty : ty + th, tx : tx + tw] = coverage_to_u8(cov)
    else:
        along_w = w >= h
        slot = (w if along_w else h) // n_targets
        for t in range(n_targets):
            k = kind if t == 0 else _pick_kind(rng)
            # slot-local extent; the 2 px margins keep neighbouring objects apart
            a = max(16, int((slot - 4) * rng.uniform(0.6, 1.0)))  # slot >= 32, so a <= slot - 4
            b = max(24, int((h if along_w else w) * rng.uniform(0.45, 0.9)))
            a0 = t * slot + 2 + int(rng.integers(0, max(1, slot - 4 - a + 1)))
            b0 = int(rng.integers(1, (h if along_w else w) - b))
            ty, tx, th, tw = (b0, a0, b, a) if along_w else (a0, b0, a, b)
            cov = render_object(k, th, tw, rng)
            _composite(img, cov, object_texture(th, tw, rng), tx, ty)
            region = gt[ty : ty + th, tx : tx + tw]
            np.maximum(region, coverage_to_u8(cov), out=region)
    sigma = rng.uniform(0, 4)
    img += rng.normal(0, 1, img.shape).astype(np.float32) * np.float32(sigma)
    box = box_from_mask(gt, 0)
    if box is None:  # pragma: no cover - every drawer draws something
        raise DatasetError(f"sample {index} (seed {seed}) rendered an empty target")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), gt, box.astype(np.int64)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an ``HxWx3`` uint8 RGB image (fixed settings, so deterministic for one libjpeg)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0, optimize=False)
    return buf.getvalue()


def sample_stem(index: int) -> str:
    """File stem of sample ``index``: ``synth_000042``."""
    return f"synth_{index:06d}"


def _write_one(job: tuple) -> tuple[str, list[int]]:
    index, seed, size_range, out, masks, max_targets = job
    image, gt, box = generate_sample(index, seed, size_range=size_range, max_targets=max_targets)
    stem = sample_stem(index)
    out = Path(out)
    atomic_write_bytes(out / "im" / f"{stem}.jpg", encode_jpeg(image))
    write_png(out / "gt" / f"{stem}.png", gt)
    if masks == "degrade":
        from dissam.coarse import degrade_mask

        write_png(out / "mask" / f"{stem}.png", degrade_mask(gt, seed * SEED_STRIDE + index))
    elif masks == "grabcut":
        from dissam.coarse import grabcut_mask

        write_png(out / "mask" / f"{stem}.png", grabcut_mask(image, box))
    return stem, [int(v) for v in box]


def generate_dataset(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    size_range: tuple[int, int] = (320, 512),
    masks: str | None = None,
    workers: int = 1,
    progress: bool = True,
    max_targets: int = 1,
) -> dict[str, list[int]]:
    """Write samples ``0 .. n-1`` in the DIS-5K layout and return the boxes.

    Files: ``out_dir/im/<stem>.jpg``, ``out_dir/gt/<stem>.png`` (8-bit soft GT),
    ``out_dir/boxes.json`` ``{stem: [x0, y0, x1, y1]}`` (inclusive pixels of ``gt > 0``), and with
    ``masks`` ``"degrade"`` or ``"grabcut"`` also ``out_dir/mask/<stem>.png`` ({0, 255}, see
    ``dissam.coarse``). Output bytes depend only on ``(seed, index, size_range, masks, max_targets)``;
    ``max_targets`` is :func:`generate_sample`'s.
    """
    if n < 0:
        raise DatasetError(f"n must be >= 0, got {n}")
    if masks == "none":
        masks = None
    if masks is not None and masks not in MASK_SOURCES:
        raise DatasetError(f"unknown mask source {masks!r}; choose one of {', '.join(MASK_SOURCES)}")
    lo, hi = int(size_range[0]), int(size_range[1])
    if not 32 <= lo <= hi:
        raise DatasetError(f"size range must satisfy 32 <= min <= max, got {size_range}")
    out = Path(out_dir)
    (out / "im").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    if max_targets < 1:
        raise DatasetError(f"max_targets must be >= 1, got {max_targets}")
    jobs = [(i, int(seed), (lo, hi), str(out), masks, int(max_targets)) for i in range(n)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="synth", unit="img")
    boxes: dict[str, list[int]] = {}
    try:
        if workers > 1 and n > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(workers) as pool:
                for stem, box in pool.imap(_write_one, jobs, chunksize=4):
                    boxes[stem] = box
                    if bar:
                        bar.update(1)
        else:
            for job in jobs:
                stem, box = _write_one(job)
                boxes[stem] = box
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    path = out / "boxes.json"
    boxes = dict(sorted(boxes.items()))
    rows = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in boxes.items())
    atomic_write_bytes(path, ("{\n" + rows + "\n}\n").encode())
    return boxes
