"""Finding the samples of a data set on disk.

Layout (DIS-5K, and any user folder built the same way)::

    SPLIT/im/<stem>.jpg      image (any of dissam.io.IMAGE_EXTENSIONS)
    SPLIT/gt/<stem>.png      ground truth, 8-bit (any image extension accepted)
    SPLIT/mask/<stem>.png    optional: the SAM coarse mask of the whole object ({0, 255})

DIS-5K itself is ``DIS5K/DIS-TR``, ``DIS5K/DIS-VD``, ``DIS5K/DIS-TE1`` .. ``DIS5K/DIS-TE4``.
Pairing is by file stem. Every problem of a folder (missing GT, missing masks, two images with the
same stem, an empty ``im/``) is reported at once in one :class:`~dissam.errors.DatasetError`
before anything is trained; files in ``gt/`` or ``mask/`` without an image only warn.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dissam.errors import DatasetError
from dissam.io import IMAGE_EXTENSIONS

DIS5K_SPLITS = ("DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")

_MAX_LISTED = 20


@dataclass(frozen=True)
class Sample:
    """One training/evaluation sample.

    Attributes:
        name: output name (the image stem; ``<stem>_comp_<k>`` for enrichment samples).
        image: the image file.
        gt: the ground-truth file, or ``None`` (unlabelled data).
        mask: the SAM coarse mask file, or ``None`` (not prepared yet).
        component: ``None`` for the whole GT; ``k`` for an enrichment sample whose target is
            connected component ``k`` of the binarised GT (``0`` = the whole binarised GT), see
            :mod:`dissam.data.enrich`.
        box: optional XYXY box in original pixels, ``(x1, y1)`` inclusive (enrichment samples carry
            the box of their component).
    """

    name: str
    image: Path
    gt: Path | None = None
    mask: Path | None = None
    component: int | None = None
    box: tuple[float, float, float, float] | None = None


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return shown + more


def _files_by_stem(folder: Path, problems: list[str], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    dups: list[str] = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in out:
            dups.append(f"{out[p.stem].name}/{p.name}")
            continue
        out[p.stem] = p
    if dups:
        problems.append(f"{len(dups)} stems appear twice in {folder} ({what}): {_listing(dups)}")
    return out


def discover_split(
    folder: str | os.PathLike,
    require_gt: bool = True,
    require_masks: bool = False,
    verify: bool = False,
) -> list[Sample]:
    """The samples of one split folder (``im/``, ``gt/``, optional ``mask/``), sorted by name.

    Args:
        folder: the split folder.
        require_gt: every image must have ``gt/<stem>.*`` (training, benchmark).
        require_masks: every image must have ``mask/<stem>.*`` (training on SAM masks); when False
            a missing mask gives ``Sample.mask = None``.
        verify: also open every file's header (PIL) so unreadable files are reported now.

    Raises:
        DatasetError: listing every missing/duplicate/unreadable file of the folder at once.
    """
    root = Path(folder).expanduser()
    im_dir, gt_dir, mask_dir = root / "im", root / "gt", root / "mask"
    if not im_dir.is_dir():
        raise DatasetError(
            f"{root} is not a data set split: expected the folders im/ and gt/ (optional mask/) inside it"
        )
    problems: list[str] = []
    images = _files_by_stem(im_dir, problems, "im/")
    if not images:
        raise DatasetError(f"{im_dir} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    gts: dict[str, Path] = {}
    if gt_dir.is_dir():
        gts = _files_by_stem(gt_dir, problems, "gt/")
    elif require_gt:
        problems.append(f"no gt/ folder in {root}")
    masks = _files_by_stem(mask_dir, problems, "mask/") if mask_dir.is_dir() else {}

    if require_gt and gt_dir.is_dir():
        missing = [s for s in images if s not in gts]
        if missing:
            problems.append(f"{len(missing)} images have no ground truth gt/<stem>.png: {_listing(missing)}")
    if require_masks:
        missing = [s for s in images if s not in masks]
        if missing:
            hint = "" if mask_dir.is_dir() else " (no mask/ folder)"
            problems.append(
                f"{len(missing)} images have no SAM mask mask/<stem>.png{hint}: {_listing(missing)}; "
                f"run `dissam prepare-masks {root} --sam SAM_CHECKPOINT` first"
            )
    for what, files in (("gt/", gts), ("mask/", masks)):
        extra = [s for s in files if s not in images]
        if extra:
            warnings.warn(
                f"{root}: {len(extra)} files in {what} have no image in im/ and are ignored: {_listing(extra)}",
                stacklevel=2,
            )
    samples = [Sample(name=s, image=p, gt=gts.get(s), mask=masks.get(s)) for s, p in images.items()]
    if verify and not problems:
        problems.extend(_verify_files(samples))
    if problems:
        raise DatasetError(f"data set {root} has problems:\n  - " + "\n  - ".join(problems))
    return samples


def _verify_files(samples: Sequence[Sample]) -> list[str]:
    from PIL import Image

    bad: list[str] = []
    for s in samples:
        for p in (s.image, s.gt, s.mask):
            if p is None:
                continue
            try:
                with Image.open(p) as im:
                    im.verify()
            except Exception as exc:  # noqa: BLE001 - any decoder failure means unreadable
                bad.append(f"{p} ({type(exc).__name__})")
    return [f"{len(bad)} unreadable files: {_listing(bad)}"] if bad else []


def find_dis5k_root(root: str | os.PathLike) -> Path:
    """``root`` itself if it holds DIS-5K split folders, else ``root/DIS5K``."""
    r = Path(root).expanduser()
    if any((r / s).is_dir() for s in DIS5K_SPLITS):
        return r
    if any((r / "DIS5K" / s).is_dir() for s in DIS5K_SPLITS):
        return r / "DIS5K"
    raise DatasetError(f"no DIS-5K split folders ({', '.join(DIS5K_SPLITS)}) in {r} or {r / 'DIS5K'}")


def discover_dis5k(
    root: str | os.PathLike,
    splits: Sequence[str] | None = DIS5K_SPLITS,
    require_gt: bool = True,
    require_masks: bool = False,
) -> dict[str, list[Sample]]:
    """Samples of the DIS-5K splits under ``root`` (``root`` = ``DIS5K`` or its parent).

    ``splits=None`` takes the DIS-5K splits that exist; an explicit list must all exist.
    Problems of every split are collected into one DatasetError.
    """
    base = find_dis5k_root(root)
    names = [s for s in DIS5K_SPLITS if (base / s).is_dir()] if splits is None else list(splits)
    missing = [s for s in names if not (base / s).is_dir()]
    if missing:
        raise DatasetError(f"missing DIS-5K splits in {base}: {', '.join(missing)}")
    out: dict[str, list[Sample]] = {}
    errors: list[str] = []
    for s in names:
        try:
            out[s] = discover_split(base / s, require_gt=require_gt, require_masks=require_masks)
        except DatasetError as exc:
            errors.append(str(exc))
    if errors:
        raise DatasetError("\n".join(errors))
    return out
