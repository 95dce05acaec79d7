"""Backgrounds and object textures for the synthetic data (:mod:`dissam.data.synthetic`): gradients,
noise, stripes, checkers, clutter and public-domain photographs. Images are ``H x W x 3`` float32
(0..255) until the sample is composited and rounded."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from dissam.errors import DatasetError

# skimage.data images whose docstrings state public domain or CC0 (checked for scikit-image 0.25).
PHOTO_NAMES = ("astronaut", "camera", "chelsea", "coffee", "brick", "grass", "gravel", "hubble_deep_field")


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
