"""SAM coarse masks for a data set, resumable and shardable.

For every image of every split (``im/``, ``gt/``) the SAM stage is prompted with the *whole-GT box*
(:func:`dissam.data.enrich.whole_box`: the box of the single surviving component, or of the whole
binarised GT when several survive) and the mask is written to ``mask/<stem>.png`` ({0, 255}).
With ``enrich=True`` the mask of every enrichment component ``k`` is written too
(``mask_comp/<stem>_comp_<k>.png``) and rank 0 writes the manifest ``<split>/enrich.json``.

* One image embedding per image: all boxes an image needs go through one ``set_image`` and one
  batched ``coarse_masks`` call (the notebook re-encoded the image for every component).
* Resumable: outputs that exist are not recomputed; an image whose outputs all exist is not even
  read, and SAM is not loaded when there is nothing to do.
* Sharding: under ``torchrun`` (``RANK``/``WORLD_SIZE``) rank ``r`` takes items ``r, r + W, ...`` of
  the sorted list of all images, so no file is written by two ranks.
* An all-zero GT gets an all-zero mask (reported): there is no box to prompt with.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dissam.data.enrich import (
    component_box,
    component_mask_path,
    components,
    enrich_split,
    prompt_box,
    write_manifest,
)
from dissam.data.layout import Sample, discover_split, find_dis5k_root
from dissam.errors import DatasetError, ImageReadError
from dissam.io import read_image, read_mask, write_png
from dissam.sharding import dist_env, shard
from dissam.stages.registry import load_stage1, log_offline_default, resolve_stage

MANIFEST_NAME = "enrich.json"


@dataclass
class PrepareReport:
    """What one rank did."""

    rank: int = 0
    world_size: int = 1
    images: int = 0  # images in this rank's shard
    encoded: int = 0  # images whose embedding was computed
    skipped: int = 0  # images whose outputs all existed
    written: list[Path] = field(default_factory=list)
    empty_gt: list[str] = field(default_factory=list)
    manifests: list[Path] = field(default_factory=list)
    extra_samples: int = 0  # enrichment samples over one-per-image (rank 0, with enrich)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason): reported, others continue


def split_dirs(dataset_dir: str | os.PathLike) -> list[Path]:
    """The split folders of ``dataset_dir``: itself if it has ``im/``, else its sub-folders with
    ``im/`` (a DIS5K root or its parent included), sorted."""
    d = Path(dataset_dir).expanduser()
    if (d / "im").is_dir():
        return [d]
    if not d.is_dir():
        raise DatasetError(f"data set folder not found: {d}")
    subs = sorted(p for p in d.iterdir() if (p / "im").is_dir())
    if not subs:
        try:
            base = find_dis5k_root(d)
        except DatasetError:
            base = None
        if base is not None:
            subs = sorted(p for p in base.iterdir() if (p / "im").is_dir())
    if not subs:
        raise DatasetError(
            f"{d} has no im/ folder and no split sub-folders with im/ (expected SPLIT/im, SPLIT/gt)"
        )
    return subs


def _needed(split: Path, s: Sample, enrich: bool) -> tuple[dict[Path, Any], np.ndarray | None, str | None]:
    """Missing outputs of one image -> ``{path: box or None}`` (None: all-zero mask)."""
    whole = split / "mask" / f"{s.name}.png"
    if not enrich and whole.exists():
        return {}, None, None
    gt = read_mask(s.gt)
    todo: dict[Path, Any] = {}
    comps = components(gt)
    if enrich:
        for k, comp in comps.items():
            p = component_mask_path(split, s.name, k)
            if not p.exists():
                todo[p] = component_box(comp)
    if not whole.exists():
        todo[whole] = prompt_box(gt, comps)[0]
    return todo, gt, (None if todo.get(whole, 0) is not None else s.name)


def prepare_masks(
    dataset_dir: str | os.PathLike,
    sam: Any,
    enrich: bool = False,
    stage1: str | None = None,
    selection: str = "first",
    device: str | None = "cpu",
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Write the SAM coarse masks of every split under ``dataset_dir`` (module docstring).

    Args:
        dataset_dir: a split folder (``im/``, ``gt/``) or a folder of splits (e.g. ``DIS5K``).
        sam: a SAM stage (``set_image(image)``, ``coarse_masks(boxes (N,4) XYXY, selection) -> (N,H,W)
            bool``; e.g. :func:`dissam.stages.sam.load_sam`) or a weights source for :func:`dissam.stages.load_stage1`, loaded only
            when some mask is missing.
        enrich: also the per-component masks and the enrichment manifest.
        stage1: the stage-1 registry name when ``sam`` is a source (``None``: read off the source).
        selection: which of SAM's masks (``"first"``: the authors' choice).
        rank, world_size: this process's shard (default: ``RANK``/``WORLD_SIZE``, else 0/1).
    Returns: :class:`PrepareReport` of this rank.
    Raises: DatasetError (layout problems, GT/image size mismatch), CheckpointError (SAM source).
    """
    from tqdm.auto import tqdm


    env = dist_env()
    rank = env.rank if rank is None else int(rank)
    world = env.world_size if world_size is None else int(world_size)
    splits = split_dirs(dataset_dir)
    jobs = [(sp, s) for sp in splits for s in discover_split(sp, require_gt=True)]
    mine = shard(jobs, rank, world)
    rep = PrepareReport(rank=rank, world_size=world, images=len(mine))
    loaded: list[Any] = [None if sam is None or isinstance(sam, (str, os.PathLike)) else sam]

    def stage_ref() -> Any:
        if loaded[0] is None:  # loaded only when some mask is missing
            kind = resolve_stage(stage1, sam)
            if stage1 in (None, "auto") and sam is None:
                log_offline_default(kind)
            loaded[0] = load_stage1(kind, sam, device)  # auto: SAM, HQ-SAM, SAM 2.1 or SAM 3 by the source
        return loaded[0]

    for split, s in tqdm(
        mine, desc=f"SAM masks [{rank}/{world}]", unit="img", disable=not progress, file=sys.stderr
    ):
        try:
            _prepare_one(split, s, enrich, rep, stage_ref, selection)
        except (ImageReadError, DatasetError, OSError) as exc:
            rep.failed.append((str(s.image), str(exc)))
            warnings.warn(f"{s.image}: {exc}", stacklevel=2)
    if enrich and rank == 0:
        write_manifests(splits, rep)
    return rep


def write_manifests(splits: Sequence[Path], rep: PrepareReport) -> None:
    """The enrichment manifest ``<split>/enrich.json`` of every split (once all masks exist)."""
    for sp in splits:
        res = enrich_split(sp)
        target = sp / MANIFEST_NAME
        rep.extra_samples += res.extra
        if write_manifest(target, res, only_if_changed=True):
            rep.manifests.append(target)


def _prepare_one(split: Path, s: Sample, enrich: bool, rep: PrepareReport, get_stage, selection: str) -> None:
    """Masks of one image (one embedding for all its boxes); raises on unreadable or mismatched files."""
    loaded = load_one(split, s, enrich, rep)
    if loaded is not None:
        segment_one(get_stage(), *loaded, selection, rep)


def load_one(split: Path, s: Sample, enrich: bool, rep: PrepareReport) -> tuple[np.ndarray, dict] | None:
    """The reading half of one image: ``(image H x W x 3 uint8, {output path: XYXY box})`` of its
    missing masks, or None when none is missing (counted in ``rep``). An all-zero GT's mask is written
    here (no prompt box). Raises on unreadable or mismatched files."""
    todo, gt, empty = _needed(split, s, enrich)
    if not todo:
        rep.skipped += 1
        return None
    if empty is not None:
        rep.empty_gt.append(str(split / "gt" / Path(s.gt).name))
        warnings.warn(f"{s.gt}: empty ground truth, writing an all-zero SAM mask", stacklevel=2)
        write_png(split / "mask" / f"{s.name}.png", np.zeros(gt.shape, np.uint8))
        rep.written.append(split / "mask" / f"{s.name}.png")
        todo = {p: b for p, b in todo.items() if b is not None}
        if not todo:
            return None
    image = read_image(s.image)
    if image.shape[:2] != gt.shape[:2]:
        raise DatasetError(
            f"{s.gt} is {gt.shape[0]}x{gt.shape[1]} but its image {s.image} is {image.shape[0]}x{image.shape[1]}"
        )
    return image, todo


def segment_one(stage, image: np.ndarray, todo: dict, selection: str, rep: PrepareReport) -> None:
    """The model half of one image: one ``set_image`` and one batched ``coarse_masks`` call for the
    distinct boxes of ``todo`` (:func:`load_one`), each mask written ({0, 255}, atomically)."""
    boxes: list[tuple] = []
    for b in todo.values():
        if tuple(b) not in boxes:
            boxes.append(tuple(b))
    stage.set_image(image)
    masks = np.asarray(stage.coarse_masks(np.asarray(boxes, dtype=np.float64), selection=selection))
    rep.encoded += 1
    for path, b in todo.items():
        m = masks[boxes.index(tuple(b))]
        write_png(path, (m > 0).astype(np.uint8) * np.uint8(255))
        rep.written.append(path)


def summarise(rep: PrepareReport, splits: Sequence[Path] | None = None) -> str:
    """One human-readable paragraph of a report."""
    lines = [
        f"rank {rep.rank}/{rep.world_size}: {rep.images} images, {rep.encoded} encoded, {rep.skipped} already done, "
        f"{len(rep.written)} masks written"
    ]
    if rep.empty_gt:
        lines.append(
            f"{len(rep.empty_gt)} empty ground truths got all-zero masks: {', '.join(rep.empty_gt[:10])}"
        )
    for m in rep.manifests:
        lines.append(f"manifest written: {m}")
    if rep.failed:
        lines.append(f"{len(rep.failed)} image(s) failed:")
        lines.extend(f"  {name}: {why}" for name, why in rep.failed)
    if rep.rank == 0 and (rep.manifests or rep.extra_samples):
        lines.append(f"enrichment: {rep.extra_samples} extra samples (the paper reports 880 on DIS-TR)")
    return "\n".join(lines)
