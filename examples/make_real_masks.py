"""Rebuild the hand-made ground-truth masks of the real-photo check from their annotations.

Each mask of ``examples/real_masks/`` is made from one of scikit-image's bundled photographs
(``skimage.data.<image>``) and the operations recorded for it in ``examples/real_masks/annotations.json``,
applied in order to an empty ``HxW`` mask (see ``examples/real_masks/README.md`` for how the
annotations were made and checked). Coordinates are pixel centres ``(x, y)``, x to the right, y down,
as in the boxes of ``examples/real_photos.json``. Operations:

* ``poly`` (``pts``, ``mode`` ``add``/``sub``): fill a closed polygon (``cv2.fillPoly``, boundary
  pixels included);
* ``line`` (``pts``, ``width``, ``mode``): a polyline of that width (pixels), for thin straight parts;
* ``thresh`` (``region`` polygon, ``feature``, ``lt``/``gt``, ``mode``): the pixels of the region whose
  feature (``gray``, ``b_minus_r`` on RGB) is below ``lt`` / above ``gt``;
* ``open`` / ``close`` (``k``): binary opening / closing with a ``k x k`` square;
* ``sub_mask`` (``name``): remove the pixels of another annotated mask (an occluder, e.g. the
  cameraman's gloves in front of his camera), so that two objects never share a pixel;
* ``fill_holes``; ``keep_largest`` (the largest 8-connected component); ``min_area`` (``px``): drop
  8-connected components smaller than ``px`` pixels (specks of a threshold);
* ``disparity`` (photos with a ground-truth disparity map ``D``, e.g. ``stereo_motorcycle``; ``plane``
  ``[a, b, c]``, ``above_plane``, ``gt``, optional ``region``, ``mode``): the pixels with a valid ``D``
  greater than ``gt`` and than the plane ``a*x + b*y + c + above_plane`` (a floor, which is a plane in
  disparity): the object in front of both its background and the floor it stands on;
* ``disparity_fill_invalid`` (``radius``, ``sigma_colour``, ``sigma_space``): pixels with no valid
  disparity (occlusions, and the mixed pixels along depth edges) take the label the mask gives their
  valid neighbours within ``radius`` px, each weighted by colour and spatial Gaussians (a joint
  bilateral vote: an occluded strip of background looks like the background next to it).

Every operation is deterministic, so the PNGs are rebuilt bit-exactly. An entry with
``"in_repository": false`` (its source states no licence) is written here but git-ignored; the
benchmarks build it when its PNG is absent. The result is clipped to the
entry's box (the object lies inside it) and written as uint8 0/255.

Usage: PYTHONPATH=src python examples/make_real_masks.py [--check]
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ANNOTATIONS = HERE / "real_masks" / "annotations.json"


def load_photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as ``HxWx3`` uint8 RGB (grey photos repeated on the three channels).

    ``stereo_motorcycle`` is the left image of that stereo pair.
    """
    import skimage.data as skd

    im = np.asarray(skd.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(skd, name)())
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return np.ascontiguousarray(im[..., :3].astype(np.uint8))


@functools.lru_cache(maxsize=1)
def load_disparity(name: str) -> np.ndarray:
    """The ground-truth disparity (``HxW`` float64, px; NaN where there is none) of a stereo photo.

    Cached (one mask's operations read it several times) and therefore read-only.
    """
    if name != "stereo_motorcycle":
        raise ValueError(f"no disparity map for the photo {name!r}")
    import skimage.data as skd

    d = np.asarray(skd.stereo_motorcycle()[2], np.float64)
    d = np.where(np.isfinite(d), d, np.nan)
    d.flags.writeable = False
    return d


def _fill_invalid(m: np.ndarray, image: np.ndarray, valid: np.ndarray, radius: int,
                  sigma_colour: float, sigma_space: float) -> np.ndarray:
    """Label the pixels where ``valid`` is False by a joint bilateral vote of their valid neighbours."""
    h, w = m.shape
    img = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    lab = np.pad(m.astype(np.float64), radius)
    ok = np.pad(valid, radius)
    centre = image.astype(np.float64)
    num = np.zeros((h, w))
    den = np.zeros((h, w))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            sl = (slice(radius + dy, radius + dy + h), slice(radius + dx, radius + dx + w))
            dc = ((img[sl] - centre) ** 2).sum(axis=-1)
            wgt = np.exp(-dc / (2 * sigma_colour ** 2) - (dy * dy + dx * dx) / (2 * sigma_space ** 2)) * ok[sl]
            num += wgt * lab[sl]
            den += wgt
    vote = num > 0.5 * den  # no valid neighbour at all (den == 0): background
    return np.where(valid, m, vote)


def _poly(shape: tuple[int, int], pts) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(pts, np.float64)).astype(np.int32)], 1)
    return m.astype(bool)


def _feature(image: np.ndarray, name: str) -> np.ndarray:
    rgb = image.astype(np.int16)
    if name == "gray":
        return rgb.mean(axis=-1)
    if name == "b_minus_r":
        return rgb[..., 2] - rgb[..., 0]
    raise ValueError(f"unknown feature {name!r}")


def _fill_holes(m: np.ndarray) -> np.ndarray:
    pad = np.pad(m, 1).astype(np.uint8)
    ff = pad.copy()
    cv2.floodFill(ff, np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8), (0, 0), 1)
    return (pad.astype(bool) | (ff == 0))[1:-1, 1:-1]


def apply_ops(image: np.ndarray, ops: list[dict], others: dict[str, dict] | None = None,
              photo: str | None = None) -> np.ndarray:
    """Run the annotation operations on ``image`` (``HxWx3`` uint8); returns an ``HxW`` bool mask.

    ``others`` maps names to annotation entries of the same photo, for ``sub_mask``; ``photo`` is the
    photo's ``skimage.data`` name, for the ``disparity`` operations.
    """
    shape = image.shape[:2]
    m = np.zeros(shape, bool)
    for op in ops:
        kind = op["op"]
        if kind in ("poly", "line", "thresh"):
            if kind == "poly":
                part = _poly(shape, op["pts"])
            elif kind == "line":
                canvas = np.zeros(shape, np.uint8)
                pts = np.round(np.asarray(op["pts"], np.float64)).astype(np.int32)
                cv2.polylines(canvas, [pts], False, 1, thickness=int(op["width"]))
                part = canvas.astype(bool)
            else:
                f = _feature(image, op["feature"])
                part = _poly(shape, op["region"])
                if "lt" in op:
                    part &= f < op["lt"]
                if "gt" in op:
                    part &= f > op["gt"]
            if op.get("mode", "add") == "add":
                m |= part
            else:
                m &= ~part
        elif kind in ("open", "close"):
            k = np.ones((op["k"], op["k"]), np.uint8)
            f = cv2.morphologyEx
            m = f(m.astype(np.uint8), cv2.MORPH_OPEN if kind == "open" else cv2.MORPH_CLOSE, k).astype(bool)
        elif kind == "sub_mask":
            if not others or op["name"] not in others:
                raise ValueError(f"sub_mask: no annotation named {op['name']!r}")
            m &= build_mask(others[op["name"]], image, others) == 0
        elif kind == "disparity":
            d = load_disparity(photo)
            yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
            a, b, c = op["plane"]
            with np.errstate(invalid="ignore"):
                part = (d > op["gt"]) & (d > a * xx + b * yy + c + op["above_plane"])
            if "region" in op:
                part &= _poly(shape, op["region"])
            if op.get("mode", "add") == "add":
                m |= part
            else:
                m &= ~part
        elif kind == "disparity_fill_invalid":
            valid = np.isfinite(load_disparity(photo))
            m = _fill_invalid(m, image, valid, int(op["radius"]), float(op["sigma_colour"]), float(op["sigma_space"]))
        elif kind == "fill_holes":
            m = _fill_holes(m)
        elif kind == "keep_largest":
            n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            if n > 1:
                m = lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        elif kind == "min_area":
            n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            m = np.isin(lab, 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= op["px"]))
        else:
            raise ValueError(f"unknown operation {kind!r}")
    return m


def build_mask(entry: dict, image: np.ndarray | None = None, others: dict[str, dict] | None = None) -> np.ndarray:
    """The ``HxW`` uint8 (0/255) mask of one annotation entry, clipped to its XYXY box (inclusive).

    ``others``: the annotation entries by name (for ``sub_mask``); all of ``annotations.json`` if None.
    """
    if image is None:
        image = load_photo(entry["image"])
    if others is None:
        others = {e["name"]: e for e in load_annotations()}
    m = apply_ops(image, entry["ops"], others, photo=entry["image"])
    x0, y0, x1, y1 = entry["box"]
    keep = np.zeros_like(m)
    keep[y0:y1 + 1, x0:x1 + 1] = True
    return np.where(m & keep, 255, 0).astype(np.uint8)


def load_annotations(path: Path = ANNOTATIONS) -> list[dict]:
    return json.loads(Path(path).read_text())["masks"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed PNGs, write nothing")
    ap.add_argument("--only", nargs="*", help="output names (e.g. rocket_rocket) to build")
    args = ap.parse_args()
    bad = 0
    for entry in load_annotations():
        if args.only and entry["name"] not in args.only:
            continue
        m = build_mask(entry)
        out = HERE / "real_masks" / f"{entry['name']}.png"
        if args.check and not entry.get("in_repository", True):
            print(f"{out.name}: built ({int((m > 0).sum())} px), not kept in the repository")
            continue
        if args.check:
            old = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
            same = old is not None and old.shape == m.shape and bool((old == m).all())
            bad += not same
            print(f"{out.name}: {'same' if same else 'DIFFERENT'}")
            continue
        ok, buf = cv2.imencode(".png", m)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(buf.tobytes())
        tmp.replace(out)
        print(f"{out.name}: {int((m > 0).sum())} px")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
