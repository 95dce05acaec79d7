"""The benchmark protocol: what is evaluated, with which prompt, under which name.

* Methods and table columns (:data:`METHODS`, :func:`columns`, :func:`method_name`).
* The SAM prompt box of a ground truth (:func:`whole_gt_box`, the rule of
  :func:`dissam.data.enrich.prompt_box`) and box jitter (:func:`jitter_box`).
* The images of a split (:class:`Item`, :func:`split_items`, :func:`discover_splits`): DIS-5K's layout
  (``<split>/im``, ``gt``, optional ``mask``) or the TOS-Net layout of COIFT, HRSOD and ThinObject-5K
  (``<split>/images``, ``masks``, ``list``; one sample per instance, :mod:`dissam.data.tosnet`), whose
  converted ground truths live in the run folder (:func:`gt_folder`).

See :mod:`dissam.paper_tables` for the whole protocol.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dissam.data.enrich import prompt_box
from dissam.data.layout import discover_split
from dissam.data.tosnet import convert_split, is_tosnet_folder
from dissam.errors import DatasetError, DisSamError

__all__ = [
    "METHODS", "PROMPTED", "DIS5K_SPLITS", "SAM_SELECTION", "HQ_SELECTION", "MAX_JITTER", "Item",
    "split_items", "discover_splits", "whole_gt_box", "jitter_box", "variant_name", "method_name",
    "parse_jitters", "columns", "gt_folder",
]

METHODS = ("dis-sam", "sam", "hq-sam", "isnet")
"""Benchmark methods, in table order."""
PROMPTED = ("dis-sam", "sam", "hq-sam")
"""Methods that take the box prompt (and therefore get jitter variants)."""
DIS5K_SPLITS = ("DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
SAM_SELECTION = "first"  # the authors: masks[0] of the multimask output
HQ_SELECTION = "single"  # HQ-SAM's predictor default: multimask_output=False
MAX_JITTER = 50.0


@dataclass(frozen=True)
class Item:
    """One benchmark image: ``split``/``stem`` and its files (``mask`` is None without ``mask/``)."""

    split: str
    stem: str
    image: Path
    gt: Path
    mask: Path | None = None


def split_items(root: str | os.PathLike, split: str, run_dir: str | os.PathLike | None = None) -> list[Item]:
    """The images of ``ROOT/<split>/im`` with their ``gt/`` (and ``mask/`` if present), sorted by
    stem (:func:`dissam.data.layout.discover_split`; an image without ground truth is an error). A
    TOS-Net split gives one item per instance, its ground truth converted into
    :func:`gt_folder` (which needs ``run_dir``)."""
    folder = Path(root) / split
    if is_tosnet_folder(folder) and not (folder / "im").is_dir():
        if run_dir is None:
            raise DisSamError(f"{folder} has the TOS-Net layout: its ground truths are converted into a run folder")
        samples = convert_split(folder, gt_folder(root, split, run_dir))
        return [Item(split, s.name, s.image, s.gt) for s in samples]
    samples = discover_split(folder, require_gt=True)
    return sorted((Item(split, s.name, s.image, s.gt, s.mask) for s in samples), key=lambda it: it.stem)


def gt_folder(root: str | os.PathLike, split: str, run_dir: str | os.PathLike) -> Path:
    """Where the ground truths of ``split`` are: ``ROOT/<split>/gt``, or for a TOS-Net split the
    converted per-instance ones in ``RUN_DIR/gt/<split>``."""
    folder = Path(root) / split
    if is_tosnet_folder(folder) and not (folder / "im").is_dir():
        return Path(run_dir) / "gt" / split
    return folder / "gt"


def _is_split(folder: Path) -> bool:
    return ((folder / "im").is_dir() and (folder / "gt").is_dir()) or is_tosnet_folder(folder)


def discover_splits(root: str | os.PathLike, splits: Sequence[str] | None = None) -> list[str]:
    """``splits`` checked to exist under ``root`` (any folder with ``im/`` and ``gt/``, or with the
    TOS-Net ``images/``, ``masks/`` and ``list/``), or by default the DIS-5K evaluation splits (DIS-VD,
    DIS-TE1..4) present there."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist")
    if splits:
        missing = [s for s in splits if not _is_split(root / s)]
        if missing:
            raise DatasetError(
                f"split(s) {', '.join(missing)} not found under {root} (need <split>/im and <split>/gt, or the "
                "TOS-Net layout <split>/images, masks and list)"
            )
        return list(dict.fromkeys(splits))
    found = [s for s in DIS5K_SPLITS if (root / s / "im").is_dir() and (root / s / "gt").is_dir()]
    if not found:
        raise DatasetError(
            f"no DIS-5K split (DIS-VD, DIS-TE1..4 with im/ and gt/) under {root}; name the splits with --splits"
        )
    return found


def whole_gt_box(gt: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """The SAM prompt box of a ground truth: ``((4,) float64 XYXY inclusive, fallback)``, by the rule
    of :func:`dissam.data.enrich.prompt_box` (``(None, False)`` for an all-zero GT)."""
    box, fallback = prompt_box(gt)
    if box is None:
        return None, False
    return np.asarray(box, dtype=np.float64), fallback


def jitter_box(
    box: Sequence[float], pct: float, seed: int, split: str, stem: str, image_hw: tuple[int, int]
) -> np.ndarray:
    """``box`` (XYXY inclusive) with each side moved independently by up to ``pct`` % of the box width
    (x0, x1) or height (y0, y1), rounded to whole pixels and clipped to the ``(H, W)`` image.

    The offsets are ``u * pct / 100 * (w | h)`` with ``u ~ U[-1, 1]^4`` from
    ``numpy.random.default_rng([seed, crc32(split), crc32(stem)])``: reproducible and independent of
    the order or sharding of the images; one ``u`` per image for every ``pct``.
    Width and height are ``x1 - x0 + 1`` and ``y1 - y0 + 1``. Returns ``(4,)`` float64.
    """
    if not 0 <= pct < MAX_JITTER:
        raise DisSamError(f"box jitter must be in [0, {MAX_JITTER:g}) percent, got {pct:g}")
    x0, y0, x1, y1 = (float(v) for v in box)
    u = np.random.default_rng([int(seed), zlib.crc32(split.encode()), zlib.crc32(stem.encode())]).uniform(
        -1.0, 1.0, 4
    )
    w, h = x1 - x0 + 1.0, y1 - y0 + 1.0
    f = pct / 100.0
    out = np.array([x0 + u[0] * f * w, y0 + u[1] * f * h, x1 + u[2] * f * w, y1 + u[3] * f * h])
    out = np.round(out)
    H, W = image_hw
    out[[0, 2]] = np.clip(out[[0, 2]], 0, W - 1)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, H - 1)
    # pct < 50 keeps x1 > x0 before clipping; clipping at the border can only collapse a 1-pixel box
    if out[2] <= out[0]:
        out[2] = min(out[0] + 1, W - 1)
        out[0] = out[2] - 1
    if out[3] <= out[1]:
        out[3] = min(out[1] + 1, H - 1)
        out[1] = out[3] - 1
    return out


def variant_name(pct: float | None) -> str:
    """``"gt-box"`` for the paper's prompt, ``"jitter<pct>"`` for a jittered one."""
    return "gt-box" if not pct else f"jitter{pct:g}"


def method_name(method: str, pct: float | None) -> str:
    """Table column of ``method`` at jitter ``pct``: ``"dis-sam"``, ``"dis-sam@jitter10"``."""
    return method if not pct else f"{method}@jitter{pct:g}"


def parse_jitters(values: Sequence[str | float] | None) -> list[float]:
    """``["5,10", "20"]`` -> ``[5.0, 10.0, 20.0]`` (sorted, unique, 0 dropped, each < 50)."""
    out: set[float] = set()
    for v in values or []:
        for part in str(v).split(","):
            part = part.strip().rstrip("%")
            if not part:
                continue
            try:
                pct = float(part)
            except ValueError as exc:
                raise DisSamError(f"--box-jitter takes percentages like 5 or 5,10; got {v!r}") from exc
            if not 0 <= pct < MAX_JITTER:
                raise DisSamError(f"--box-jitter must be in [0, {MAX_JITTER:g}), got {pct:g}")
            if pct > 0:
                out.add(pct)
    return sorted(out)


def columns(methods: Sequence[str], jitters: Sequence[float]) -> list[str]:
    """Table columns: the methods, then each prompted method at each jitter."""
    cols = list(methods)
    for pct in jitters:
        cols += [method_name(m, pct) for m in methods if m in PROMPTED]
    return cols
