"""Photo-like synthetic samples: generated DIS-like objects placed in real photographs and passed
through a simple camera model (``dissam synth --style photo``).

The default generator (:mod:`dissam.data.synthetic`) draws flat-coloured objects on procedural
textures. A refiner trained only on those is unsure on real photographs and washes their objects
out on real photographs. Here the same exactly-covered
objects get textures cut from real photographs, sit on a real photograph (sometimes defocused, with a
cast shadow), and the whole frame goes through lens blur, motion blur, white balance, gamma,
vignetting, sensor noise and JPEG. The ground truth stays the object's exact coverage. Given
*cut-outs* (photographs of real objects with an alpha channel, :func:`load_cutouts`), some targets and
distractors are real objects instead, and the ground truth is their alpha.

Photographs come from a *photo bank*: scikit-image's bundled public-domain / CC0 samples
(:data:`BANK_SKIMAGE`, never the photographs of the real-photo check, :data:`CHECK_PHOTOS`) plus any
image files or folders the caller names (the built-in model used Debian's ``lomiri-wallpapers-16.04``
photographs under CC-BY-4.0 and CC0, credited in the built-in weights' JSON). Images are ``H x W x 3``
float32 (0..255) until the sample is rounded; boxes are XYXY inclusive pixels.
"""

from __future__ import annotations

import functools
import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dissam.boxes import box_from_mask
from dissam.data.synthetic_objects import KIND_WEIGHTS, KINDS, composite, coverage_to_u8, render_object
from dissam.data.synthetic_scenes import object_texture
from dissam.errors import DatasetError

CHECK_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "stereo_motorcycle")
"""The photographs of the real-photo check (examples/real_photos.json): never in a photo bank."""

BANK_SKIMAGE = (
    "brick", "grass", "gravel", "coins", "hubble_deep_field", "immunohistochemistry", "retina", "text",
    "cell", "clock",
)  # fmt: skip
"""``skimage.data`` samples whose docstrings state CC0, public domain or no known restrictions."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
BANK_MAX_SIDE = 1600  # bank photos are stored downscaled to this longer side (crops are smaller still)

FRAMED_SHARE = 0.35  # targets cut by the image borders (close-ups)
CUTOUT_SHARE = 0.6  # with cut-outs given: the share of targets (and of distractors) that are cut-outs
CUTOUT_MIN_PIXELS = 1500  # smaller cut-outs (icons, letters) are skipped
CUTOUT_MIN_COLOURS = 500  # distinct 5-bit colours on the object: fewer is a flat drawing, not a photograph
CUTOUT_SPLITS = ("all", "train", "heldout")
CUTOUT_HELDOUT_EVERY = 5  # one cut-out file in five (by the CRC-32 of its name) is held out for evaluation
GREY_SHARE = 0.1  # black-and-white photographs

# Real photographs show mostly solid objects with some fine parts: the smooth body with holes is
# drawn more often here than in the default generator.
PHOTO_KIND_WEIGHTS = {**KIND_WEIGHTS, "blob": 3 * KIND_WEIGHTS["blob"]}


def _as_rgb_u8(im: np.ndarray) -> np.ndarray:
    im = np.asarray(im)
    if im.dtype == bool:
        im = im.astype(np.uint8) * 255
    elif im.dtype != np.uint8:
        im = np.clip(im, 0, 255).astype(np.uint8)
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, 2)
    return np.ascontiguousarray(im[..., :3])


def _downscale(im: np.ndarray, max_side: int) -> np.ndarray:
    s = max_side / max(im.shape[:2])
    if s >= 1:
        return im
    return cv2.resize(im, (max(1, round(im.shape[1] * s)), max(1, round(im.shape[0] * s))), interpolation=cv2.INTER_AREA)


def _bank_files(sources: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"photo bank source {p} does not exist (give image files or folders of them)")
    return files


@functools.lru_cache(maxsize=4)
def load_photo_bank(sources: tuple[str, ...] = (), skimage_names: tuple[str, ...] = BANK_SKIMAGE) -> tuple[np.ndarray, ...]:
    """The photographs to cut backgrounds and textures from, as RGB uint8 arrays.

    Args:
        sources: image files and folders (searched recursively) to add to the bank.
        skimage_names: ``skimage.data`` samples to include (none of :data:`CHECK_PHOTOS`).
    Returns:
        A tuple of ``(H, W, 3)`` uint8 arrays, longer side at most ``BANK_MAX_SIDE``, in a fixed order
        (scikit-image's in ``skimage_names`` order, then the files sorted by path).
    Raises:
        DatasetError: a source is missing or unreadable, a check photograph is named, or the bank
            ends up empty.
    """
    leaked = sorted(set(skimage_names) & set(CHECK_PHOTOS))
    if leaked:
        raise DatasetError(f"{', '.join(leaked)} belong to the real-photo check and cannot be training photographs")
    photos: list[np.ndarray] = []
    if skimage_names:
        try:
            import skimage.data as skd
        except ImportError:  # pragma: no cover - scikit-image is a dependency
            skd = None
        for name in skimage_names if skd is not None else ():
            try:
                photos.append(_downscale(_as_rgb_u8(getattr(skd, name)()), BANK_MAX_SIDE))
            except Exception as e:  # noqa: BLE001 - a sample missing from this scikit-image build
                raise DatasetError(f"skimage.data.{name} could not be loaded: {e}") from e
    for f in _bank_files(sources):
        try:
            with Image.open(f) as im:
                im.draft("RGB", (BANK_MAX_SIDE, BANK_MAX_SIDE))  # JPEG: decode at a reduced scale
                photos.append(_downscale(_as_rgb_u8(np.asarray(im.convert("RGB"))), BANK_MAX_SIDE))
        except (OSError, ValueError) as e:
            raise DatasetError(f"photo bank file {f} could not be read: {e}") from e
    if not photos:
        raise DatasetError("the photo bank is empty: name image files or folders, or keep the scikit-image samples")
    return tuple(photos)


def _cutout_from_rgba(rgba: np.ndarray) -> np.ndarray | None:
    """``rgba`` cropped to its alpha's bounding box, or None where it is no photograph of an object."""
    alpha = rgba[..., 3]
    solid = alpha > 127
    if solid.sum() < CUTOUT_MIN_PIXELS or solid.all():  # too small, or no cut-out at all (opaque)
        return None
    q = (rgba[..., :3][solid] // 8).astype(np.int32)
    if len(np.unique(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2])) < CUTOUT_MIN_COLOURS:
        return None
    ys, xs = np.nonzero(alpha)
    return np.ascontiguousarray(rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def cutout_part(name: str) -> str:
    """``"heldout"`` or ``"train"``: the part of the cut-outs a file belongs to, from its file name alone
    (so that it does not depend on where the files lie or on which others are there)."""
    return "heldout" if zlib.crc32(name.encode()) % CUTOUT_HELDOUT_EVERY == 0 else "train"


@functools.lru_cache(maxsize=4)
def load_cutouts(sources: tuple[str, ...], split: str = "all") -> tuple[np.ndarray, ...]:
    """Photographs of single objects with an alpha channel (cut-outs), to draw targets from.

    A cut-out is a real object's real appearance (highlights, reflections, fur, thin legs) with an
    exact mask; placed in a bank photograph it teaches what generated objects cannot.

    Args:
        sources: image files and folders (searched recursively) of RGBA images.
        split: ``"all"``, or only the ``"train"`` or ``"heldout"`` part (:func:`cutout_part`: one file
            in ``CUTOUT_HELDOUT_EVERY``), so that a model can be measured on objects it never saw.
    Returns:
        ``(h, w, 4)`` uint8 RGBA arrays cropped to the alpha's bounding box, longer side at most
        ``BANK_MAX_SIDE``, sorted by path. Images without transparency, with fewer than
        ``CUTOUT_MIN_PIXELS`` solid pixels, or with fewer than ``CUTOUT_MIN_COLOURS`` colours on the
        object (flat drawings) are skipped.
    Raises:
        DatasetError: a source is missing or unreadable, or no usable cut-out is found.
    """
    if split not in CUTOUT_SPLITS:
        raise DatasetError(f"unknown cut-out split {split!r}; choose one of {', '.join(CUTOUT_SPLITS)}")
    cuts: list[np.ndarray] = []
    files = [f for f in _bank_files(sources) if split == "all" or cutout_part(f.name) == split]
    for f in files:
        try:
            with Image.open(f) as im:
                if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
                    continue
                rgba = np.asarray(im.convert("RGBA"))
        except (OSError, ValueError) as e:
            raise DatasetError(f"cut-out file {f} could not be read: {e}") from e
        if max(rgba.shape[:2]) > BANK_MAX_SIDE:
            rgba = _downscale(rgba, BANK_MAX_SIDE)
        cut = _cutout_from_rgba(rgba)
        if cut is not None:
            cuts.append(cut)
    if not cuts:
        raise DatasetError(
            f"no usable cut-out among {len(files)} files ({split}): cut-outs are photographs of objects with an alpha "
            f"channel, at least {CUTOUT_MIN_PIXELS} solid pixels and {CUTOUT_MIN_COLOURS} colours"
        )
    return tuple(cuts)


# --------------------------------------------------------------------------------------------
# appearance


def photo_crop(
    bank: Sequence[np.ndarray], h: int, w: int, rng: np.random.Generator, zoom: tuple[float, float] = (0.25, 1.0)
) -> np.ndarray:
    """A random ``(h, w, 3)`` float32 crop of a bank photograph.

    The crop covers ``zoom`` (a share of the photograph's shorter side, drawn uniformly) before it is
    resized to ``(h, w)``, then it is flipped half of the time and colour-jittered.
    """
    im = bank[int(rng.integers(len(bank)))]
    ph, pw = im.shape[:2]
    side = max(8.0, min(ph, pw) * rng.uniform(*zoom))
    ch = int(min(ph, side * (h / max(h, w)) * rng.uniform(0.9, 1.1) + 0.5)) or 1
    cw = int(min(pw, side * (w / max(h, w)) * rng.uniform(0.9, 1.1) + 0.5)) or 1
    y0, x0 = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    crop = im[y0 : y0 + ch, x0 : x0 + cw]
    interp = cv2.INTER_AREA if ch * cw > h * w else cv2.INTER_CUBIC
    out = cv2.resize(crop, (w, h), interpolation=interp).astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = out * rng.uniform(0.75, 1.2) + rng.uniform(-20, 20, 3).astype(np.float32)
    return np.clip(out, 0, 255)


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = np.cos(angle) * c, np.sin(angle) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return k / max(k.sum(), 1e-6)


def camera_effects(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photograph's imperfections on an ``(h, w, 3)`` float32 image in [0, 255].

    In order, each drawn independently: lens blur (Gaussian, sigma up to 1.2 px, half of the time),
    motion blur (3-9 px, 10 %), white balance (per-channel gains 0.85-1.15) and gamma (0.8-1.25),
    vignetting (30 %), signal-dependent sensor noise with a chroma part, and a JPEG round trip at
    quality 45-95. Returns float32 in [0, 255].
    """
    out = img.astype(np.float32, copy=True)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.1:
        out = cv2.filter2D(out, -1, _motion_kernel(int(rng.integers(1, 5)) * 2 + 1, rng.uniform(0, np.pi)))
    out = out * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    gamma = rng.uniform(0.8, 1.25)
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    h, w = out.shape[:2]
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        out *= (1.0 - rng.uniform(0.1, 0.4) * np.clip(r2 / 2, 0, 1))[..., None]
    shot, read = rng.uniform(0, 0.4), rng.uniform(0, 6)
    sigma = np.sqrt(shot * np.clip(out, 0, 255) + read**2)
    noise = rng.normal(0, 1, (h, w, 1)).astype(np.float32) + 0.4 * rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    out = np.clip(out + sigma * noise / 1.08, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(np.rint(out).astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(45, 96)))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def _markings(tex: np.ndarray, rng: np.random.Generator) -> None:
    """Paint 1-6 soft-edged spots and strokes of other colours onto ``tex`` (in place): the eyes,
    labels, seams and highlights real objects have inside them, which are not holes."""
    h, w = tex.shape[:2]
    layer = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    for _ in range(int(rng.integers(1, 7))):
        one = np.zeros((h, w), np.float32)
        c = (int(rng.integers(w)), int(rng.integers(h)))
        if rng.random() < 0.6:
            axes = (int(rng.integers(2, max(3, w // 6))), int(rng.integers(2, max(3, h // 6))))
            cv2.ellipse(one, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        else:
            q = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.line(one, c, q, 1.0, int(rng.integers(1, max(2, min(h, w) // 20))))
        one = cv2.GaussianBlur(one, (0, 0), rng.uniform(0.5, 2.0))
        colour += one[..., None] * rng.uniform(0, 255, 3).astype(np.float32)
        layer += one
    a = np.clip(layer, 0, 1)[..., None]
    tex *= 1 - a
    tex += a * colour / np.maximum(layer, 1e-6)[..., None]


def _object_texture(bank, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A photo texture (with a shading gradient) 60 % of the time, else a flat shaded colour; with
    painted markings half of the time."""
    if rng.random() < 0.6:
        tex = photo_crop(bank, h, w, rng, zoom=(0.1, 0.6))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        shade = (np.cos(a) * xx + np.sin(a) * yy) / max(h, w, 1)
        tex *= (1.0 + (shade - shade.mean()) * rng.uniform(0, 0.8))[..., None]
    else:
        tex = object_texture(h, w, rng).astype(np.float32)
    if rng.random() < 0.5:
        _markings(tex, rng)
    return np.clip(tex, 0, 255)


def cutout_layer(cutouts: Sequence[np.ndarray], h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random cut-out scaled to fit ``(h, w)`` with its aspect ratio kept, mirrored half of the time
    and colour-jittered.

    Returns:
        ``coverage`` ``(h', w')`` float32 in [0, 1] (the alpha) and ``texture`` ``(h', w', 3)`` float32
        in [0, 255]: ``h' <= h`` and ``w' <= w`` with one of them equal (but at least 8 px each).
    """
    cut = cutouts[int(rng.integers(len(cutouts)))]
    ch, cw = cut.shape[:2]
    s = min(h / ch, w / cw)
    nh, nw = max(8, min(h, round(ch * s))), max(8, min(w, round(cw * s)))
    a = cut[..., 3:].astype(np.float32) / 255.0
    # resample premultiplied colour, so that the invisible pixels' colour cannot fringe the edge
    premult = np.concatenate([cut[..., :3].astype(np.float32) * a, a], axis=2)
    interp = cv2.INTER_AREA if nh * nw < ch * cw else cv2.INTER_CUBIC
    premult = cv2.resize(premult, (nw, nh), interpolation=interp)
    cov = np.clip(premult[..., 3], 0.0, 1.0)
    tex = np.clip(premult[..., :3] / np.maximum(cov, 1e-3)[..., None], 0, 255)
    if rng.random() < 0.5:
        cov, tex = cov[:, ::-1], tex[:, ::-1]
    tex = tex * rng.uniform(0.8, 1.15) + rng.uniform(-12, 12, 3).astype(np.float32)
    return np.ascontiguousarray(cov), np.ascontiguousarray(np.clip(tex, 0, 255))


def _pick_kind(rng: np.random.Generator) -> str:
    names = list(PHOTO_KIND_WEIGHTS)
    p = np.array([PHOTO_KIND_WEIGHTS[k] for k in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _cast_shadow(img: np.ndarray, cov: np.ndarray, x0: int, y0: int, rng: np.random.Generator) -> None:
    """Darken the background under an offset, blurred copy of the object's coverage (a soft shadow)."""
    h, w = cov.shape
    H, W = img.shape[:2]
    pad = max(h, w) // 8 + 8
    canvas = np.zeros((H + 2 * pad, W + 2 * pad), np.float32)
    dx, dy = (int(v) for v in rng.integers(-pad // 2, pad // 2 + 1, 2))
    canvas[pad + y0 + dy : pad + y0 + dy + h, pad + x0 + dx : pad + x0 + dx + w] = cov
    shadow = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(2, max(3.0, pad / 2)))[pad : pad + H, pad : pad + W]
    img *= (1.0 - rng.uniform(0.25, 0.6) * np.clip(shadow, 0, 1))[..., None]


def generate_photo_sample(
    rng: np.random.Generator,
    bank: Sequence[np.ndarray],
    size: tuple[int, int],
    kind: str | None = None,
    cutouts: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One photo-like sample of size ``size = (H, W)`` drawn from ``rng``.

    A bank photograph as background (defocused 35 % of the time: depth of field), 0-2 distractor
    objects behind the target, the target (kind ``kind`` or drawn): 45-90 % of each side with a cast
    shadow 40 % of the time, or (``FRAMED_SHARE``) 70-125 % of each side and cut by the image borders,
    as in close-ups where the box is most of the frame; black and white ``GREY_SHARE`` of the time;
    then :func:`camera_effects`. With ``cutouts`` (:func:`load_cutouts`; only when ``kind`` is not
    given), ``CUTOUT_SHARE`` of the targets and of the distractors are real object photographs
    (:func:`cutout_layer`) instead of generated objects; with none, the draws are those of earlier
    versions (same seed, same bytes).

    Returns:
        ``image`` ``(H, W, 3)`` uint8 RGB, ``gt`` ``(H, W)`` uint8 (the target's exact coverage * 255)
        and ``box`` int64 XYXY inclusive (``box_from_mask(gt > 0)``).
    """
    h, w = (int(v) for v in size)
    if min(h, w) < 32:
        raise DatasetError(f"sample size must be at least 32 px, got {(h, w)}")
    if kind is None:
        kind = _pick_kind(rng)
    else:
        cutouts = ()
    if kind not in KINDS:
        raise DatasetError(f"unknown object kind {kind!r}; choose one of {sorted(KINDS)}")
    img = photo_crop(bank, h, w, rng)
    if rng.random() < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.5, 5.0))
    for _ in range(int(rng.integers(0, 3))):
        dh, dw = int(h * rng.uniform(0.15, 0.45)), int(w * rng.uniform(0.15, 0.45))
        if cutouts and rng.random() < CUTOUT_SHARE:
            cov, tex = cutout_layer(cutouts, dh, dw, rng)
            dh, dw = cov.shape
        else:
            cov = tex = None
        dy, dx = int(rng.integers(0, h - dh + 1)), int(rng.integers(0, w - dw + 1))
        if cov is None:
            cov, tex = render_object(_pick_kind(rng), dh, dw, rng), _object_texture(bank, dh, dw, rng)
        composite(img, cov, tex, dx, dy)
    # the "cutouts and" keeps the draws of a bank-only generator unchanged
    use_cutout = bool(cutouts) and rng.random() < CUTOUT_SHARE
    gt = np.zeros((h, w), np.uint8)
    if rng.random() < FRAMED_SHARE:
        # framed by the photograph: up to 1.25x the frame and cut by its borders, as close-ups are
        th, tw = int(h * rng.uniform(0.7, 1.25)), int(w * rng.uniform(0.7, 1.25))
        if use_cutout:
            cov, tex = cutout_layer(cutouts, th, tw, rng)
            th, tw = cov.shape
        ty = int(rng.integers(-int(0.2 * th), max(-int(0.2 * th) + 1, h - int(0.8 * th))))
        tx = int(rng.integers(-int(0.2 * tw), max(-int(0.2 * tw) + 1, w - int(0.8 * tw))))
        if not use_cutout:
            cov = render_object(kind, th, tw, rng)
        sy, sx = slice(max(0, -ty), min(th, h - ty)), slice(max(0, -tx), min(tw, w - tx))
        y0, x0 = max(0, ty), max(0, tx)
        cov = np.ascontiguousarray(cov[sy, sx])
        tex = np.ascontiguousarray(tex[sy, sx]) if use_cutout else _object_texture(bank, *cov.shape, rng)
        composite(img, cov, tex, x0, y0)
        gt[y0 : y0 + cov.shape[0], x0 : x0 + cov.shape[1]] = coverage_to_u8(cov)
    else:
        th, tw = max(24, int(h * rng.uniform(0.45, 0.9))), max(24, int(w * rng.uniform(0.45, 0.9)))
        if use_cutout:
            cov, tex = cutout_layer(cutouts, th, tw, rng)
            th, tw = cov.shape
        ty, tx = int(rng.integers(1, max(2, h - th))), int(rng.integers(1, max(2, w - tw)))
        if not use_cutout:
            cov = render_object(kind, th, tw, rng)
        if rng.random() < 0.4:
            _cast_shadow(img, cov, tx, ty, rng)
        if not use_cutout:
            tex = _object_texture(bank, th, tw, rng)
        composite(img, cov, tex, tx, ty)
        gt[ty : ty + th, tx : tx + tw] = coverage_to_u8(cov)
    if not gt.any():  # a framed object whose visible part was empty: draw it fully inside instead
        th, tw = max(24, int(h * 0.6)), max(24, int(w * 0.6))
        cov = render_object(kind, th, tw, rng)
        composite(img, cov, _object_texture(bank, th, tw, rng), (w - tw) // 2, (h - th) // 2)
        gt[(h - th) // 2 : (h - th) // 2 + th, (w - tw) // 2 : (w - tw) // 2 + tw] = coverage_to_u8(cov)
    if rng.random() < GREY_SHARE:  # black-and-white photographs
        img[:] = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    box = box_from_mask(gt, 0)
    if box is None:  # pragma: no cover - every drawer draws something
        raise DatasetError("a photo-like sample rendered an empty target")
    img = camera_effects(np.clip(img, 0, 255), rng)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), gt, box.astype(np.int64)
