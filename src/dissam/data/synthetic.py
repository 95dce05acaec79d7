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

Objects live in :mod:`dissam.data.synthetic_objects`, backgrounds and textures in
:mod:`dissam.data.synthetic_scenes`; this module composes samples and writes data sets.

Determinism: sample ``i`` of seed ``s`` uses ``numpy.random.default_rng(s * 1_000_003 + i)``
only, so it does not depend on the number of samples, the worker count or the order.
Images are ``HxWx3`` uint8 RGB, GT ``HxW`` uint8, boxes XYXY inclusive pixels (``dissam.boxes``).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dissam.boxes import box_from_mask
from dissam.coarse import degrade_mask, grabcut_mask
from dissam.data.photo_scenes import generate_photo_sample, load_cutouts, load_photo_bank
from dissam.data.stage1_like import stage1_like_mask
from dissam.data.synthetic_objects import (  # noqa: F401 - re-exported: the generator's public parts
    KIND_WEIGHTS,
    KINDS,
    SUPERSAMPLE,
    composite,
    coverage,
    coverage_to_u8,
    draw_rectangle,
    render_object,
)
from dissam.data.synthetic_scenes import BACKGROUNDS, PHOTO_NAMES, background, object_texture  # noqa: F401
from dissam.errors import DatasetError
from dissam.io import write_png
from dissam.utils import atomic_write_bytes

SEED_STRIDE = 1_000_003
JPEG_QUALITY = 92
MASK_SOURCES = ("degrade", "grabcut", "stage1-like", "none")
STYLES = ("dis", "photo")



def sample_rng(index: int, seed: int) -> np.random.Generator:
    """The only random source of sample ``index``: ``default_rng(seed * 1_000_003 + index)``."""
    return np.random.default_rng(int(seed) * SEED_STRIDE + int(index))


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
        composite(img, cov, object_texture(dh, dw, rng), dx, dy)
    n_targets = 1 if max_targets == 1 else int(rng.integers(1, max_targets + 1))
    n_targets = max(1, min(n_targets, max(h, w) // 32))  # slots of at least 32 px
    gt = np.zeros((h, w), np.uint8)
    if n_targets == 1:
        th = max(24, int(h * rng.uniform(0.45, 0.9)))
        tw = max(24, int(w * rng.uniform(0.45, 0.9)))
        ty, tx = int(rng.integers(1, h - th)), int(rng.integers(1, w - tw))
        cov = render_object(kind, th, tw, rng)
        composite(img, cov, object_texture(th, tw, rng), tx, ty)
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
            composite(img, cov, object_texture(th, tw, rng), tx, ty)
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


def generate_photo_style_sample(
    index: int,
    seed: int,
    photos: tuple[str, ...] = (),
    size_range: tuple[int, int] = (320, 512),
    cutouts: tuple[str, ...] = (),
    cutout_split: str = "all",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``index`` of ``seed`` in the photo style (:func:`dissam.data.photo_scenes.generate_photo_sample`)
    with the photo bank of ``photos`` (files or folders, added to scikit-image's samples) and the
    object cut-outs of ``cutouts`` (files or folders; none by default; ``cutout_split`` as in
    :func:`dissam.data.photo_scenes.load_cutouts`)."""
    rng = sample_rng(index, seed)
    size = _resolve_size(None, size_range, rng)
    cuts = load_cutouts(tuple(str(p) for p in cutouts), cutout_split) if cutouts else ()
    return generate_photo_sample(rng, load_photo_bank(tuple(str(p) for p in photos)), size, cutouts=cuts)


def _write_one(job: tuple) -> tuple[str, list[int], dict | None]:
    index, seed, size_range, out, masks, max_targets, style, photos, cutouts, cutout_split = job
    if style == "photo":
        image, gt, box = generate_photo_style_sample(index, seed, photos, size_range, cutouts, cutout_split)
    else:
        image, gt, box = generate_sample(index, seed, size_range=size_range, max_targets=max_targets)
    stem = sample_stem(index)
    out = Path(out)
    jpeg = encode_jpeg(image)
    atomic_write_bytes(out / "im" / f"{stem}.jpg", jpeg)
    write_png(out / "gt" / f"{stem}.png", gt)
    info = None
    if masks == "degrade":
        write_png(out / "mask" / f"{stem}.png", degrade_mask(gt, seed * SEED_STRIDE + index))
    elif masks == "grabcut":
        write_png(out / "mask" / f"{stem}.png", grabcut_mask(image, box))
    elif masks == "stage1-like":
        # the JPEG that is written is what a stage 1 would see
        seen = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        mask, source, iou = stage1_like_mask(seen, gt, box, seed * SEED_STRIDE + index)
        write_png(out / "mask" / f"{stem}.png", mask)
        info = {"source": source, "stage1_iou": round(iou, 4)}
    return stem, [int(v) for v in box], info


def _one_thread_per_worker() -> None:
    # One process per core already: OpenCV's own thread pool in every worker would oversubscribe it.
    import cv2

    cv2.setNumThreads(1)


def generate_dataset(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    size_range: tuple[int, int] = (320, 512),
    masks: str | None = None,
    workers: int = 1,
    progress: bool = True,
    max_targets: int = 1,
    style: str = "dis",
    photos: tuple[str, ...] = (),
    cutouts: tuple[str, ...] = (),
    cutout_split: str = "all",
) -> dict[str, list[int]]:
    """Write samples ``0 .. n-1`` in the DIS-5K layout and return the boxes.

    Files: ``out_dir/im/<stem>.jpg``, ``out_dir/gt/<stem>.png`` (8-bit soft GT),
    ``out_dir/boxes.json`` ``{stem: [x0, y0, x1, y1]}`` (inclusive pixels of ``gt > 0``), and with
    ``masks`` ``"degrade"``, ``"grabcut"`` or ``"stage1-like"`` also ``out_dir/mask/<stem>.png``
    ({0, 255}, see ``dissam.coarse``; ``stage1-like`` also writes ``out_dir/mask_sources.json``, which
    source each mask came from). Output bytes depend only on ``(seed, index, size_range, masks,
    max_targets, style, photos, cutouts, cutout_split)``; ``max_targets`` is :func:`generate_sample`'s (the ``dis``
    style only). ``style="photo"`` draws photo-like samples (:mod:`dissam.data.photo_scenes`) from the
    photo bank of ``photos`` plus scikit-image's samples, with real object photographs from the RGBA
    images of ``cutouts`` (the ``cutout_split`` part of them) as some of the objects.
    """
    if style not in STYLES:
        raise DatasetError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if style == "photo":
        photos = tuple(str(p) for p in photos)
        cutouts = tuple(str(p) for p in cutouts)
        load_photo_bank(photos)  # fail early, before any worker starts
        if cutouts:
            load_cutouts(cutouts, cutout_split)
    elif photos or cutouts:
        raise DatasetError("photos and cut-outs only apply to style='photo'")
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
    jobs = [(i, int(seed), (lo, hi), str(out), masks, int(max_targets), style, photos, cutouts, cutout_split) for i in range(n)]
    boxes: dict[str, list[int]] = {}
    sources: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=n, desc="synth", unit="img", disable=not progress))
        if workers > 1 and n > 1:
            # spawn, not fork: a process forked after OpenCV has started its thread pool (the photo bank
            # is resized with cv2 in this process) can hang in its first parallel OpenCV call
            pool = stack.enter_context(mp.get_context("spawn").Pool(workers, initializer=_one_thread_per_worker))
            results = pool.imap(_write_one, jobs, chunksize=4)
        else:
            results = map(_write_one, jobs)
        for stem, box, info in results:
            boxes[stem] = box
            if info:
                sources[stem] = info
            bar.update(1)
    boxes = dict(sorted(boxes.items()))
    _write_rows_json(out / "boxes.json", boxes)
    if sources:
        _write_rows_json(out / "mask_sources.json", dict(sorted(sources.items())))
    return boxes


def _write_rows_json(path: Path, rows: dict) -> None:
    """``{key: value}`` as JSON with one key per line (diff-friendly), written atomically."""
    text = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in rows.items())
    atomic_write_bytes(path, ("{\n" + text + "\n}\n").encode())
