"""The TOS-Net layout, in which COIFT, HRSOD and ThinObject-5K are distributed, read as benchmark
samples (one evaluation per object instance).

Layout of one data set folder::

    SET/images/<stem>.jpg     image (another image extension is accepted)
    SET/masks/<stem>.png      annotation: 0 = background, each other value one object (instance IDs),
                              or a soft single-object mask
    SET/list/test.txt         the images of the split, one per line: ``<stem>`` (COIFT, HRSOD) or the
                              mask's file name ``<stem>.png`` (ThinObject-5K); ``list/train.txt`` etc.

Conversion rules (each instance becomes one DIS-style sample with its own ground truth):

* **The list.** ``list/test.txt`` when present, else the only ``list/*.txt``; blank lines are skipped;
  a line ending in an image extension names the mask file, and its stem is the sample's stem.
* **The files.** The image is ``images/<stem>`` with ``.jpg`` (else the first existing extension of
  ``dissam.io.IMAGE_EXTENSIONS``); the mask is ``masks/<stem>.png`` (else the first existing extension).
* **Instances.** The mask is read as 8-bit (first channel of a colour mask, as ``dissam.io.read_mask``
  does). If it holds at most :data:`MAX_INSTANCE_IDS` distinct non-zero values, each value ``v`` is one
  instance whose ground truth is ``(mask == v) * 255`` (the rule of TOS-Net's COIFT/HRSOD loaders); more
  values mean a soft (anti-aliased) single-object mask, which is kept as it is and binarised by the
  evaluation at 128 as DIS-5K's ground truths are (the rule of TOS-Net's ThinObject-5K loader, one
  object per mask, thresholded at one half).
* **Names.** A mask with one instance (or a soft mask, or an empty one) gives the sample ``<stem>``;
  a mask with several gives ``<stem>_<v>`` for each value ``v``.

The converted ground truths are written once, atomically, to a folder the caller names (the
benchmark's ``RUN_DIR/gt/<SET>``), with ``instances.json`` recording where each came from; the
images are read where they are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dissam.errors import DatasetError
from dissam.io import IMAGE_EXTENSIONS, read_mask, write_png
from dissam.utils import atomic_write_bytes

__all__ = ["MAX_INSTANCE_IDS", "TosNetSample", "is_tosnet_folder", "list_file", "list_entries", "instance_values",
           "convert_split"]

MAX_INSTANCE_IDS = 16
"""At most this many distinct non-zero values: an instance-ID mask; more: a soft single-object mask."""
_INDEX = "instances.json"


@dataclass(frozen=True)
class TosNetSample:
    """One instance: its sample ``name``, the ``image``, the converted ground truth ``gt``, the source
    ``mask`` and the mask ``value`` it was cut from (None: the whole mask, kept as it is)."""

    name: str
    image: Path
    gt: Path
    mask: Path
    value: int | None


def is_tosnet_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` has the TOS-Net layout (``images/``, ``masks/``, ``list/``)."""
    f = Path(folder)
    return all((f / d).is_dir() for d in ("images", "masks", "list"))


def list_file(folder: str | os.PathLike) -> Path:
    """``list/test.txt``, else the only ``list/*.txt`` (raises when that is ambiguous or missing)."""
    lists = Path(folder) / "list"
    if (lists / "test.txt").is_file():
        return lists / "test.txt"
    found = sorted(lists.glob("*.txt"))
    if len(found) != 1:
        raise DatasetError(f"{lists} must hold test.txt or exactly one .txt list (found: "
                           f"{', '.join(p.name for p in found) or 'none'})")
    return found[0]


def _with_extension(folder: Path, stem: str, first: str) -> Path | None:
    for ext in (first, *IMAGE_EXTENSIONS):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def list_entries(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``[(stem, image, mask)]`` of the split's list (conversion rules in the module docstring); every
    missing file is reported at once in one :class:`DatasetError`."""
    root = Path(folder)
    entries, missing = [], []
    for line in list_file(root).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        stem = Path(line).stem if Path(line).suffix.lower() in IMAGE_EXTENSIONS else line
        image = _with_extension(root / "images", stem, ".jpg")
        mask = _with_extension(root / "masks", stem, ".png")
        if image is None or mask is None:
            missing.append(f"{stem} ({'image' if image is None else 'mask'})")
            continue
        entries.append((stem, image, mask))
    if missing:
        raise DatasetError(f"{root}: {len(missing)} listed sample(s) have no file: {', '.join(missing[:20])}")
    if not entries:
        raise DatasetError(f"{list_file(root)} lists no samples")
    return entries


def instance_values(mask: np.ndarray) -> list[int] | None:
    """The instance IDs of an 8-bit mask (its distinct non-zero values, sorted), or None for a soft
    single-object mask (more than :data:`MAX_INSTANCE_IDS` values)."""
    values = np.unique(mask)
    values = values[values != 0]
    return None if len(values) > MAX_INSTANCE_IDS else [int(v) for v in values]


def convert_split(folder: str | os.PathLike, gt_dir: str | os.PathLike) -> list[TosNetSample]:
    """Every instance of a TOS-Net split as a sample, its ground truth written to ``gt_dir/<name>.png``
    ({0, 255}, or the soft mask as it is) unless ``gt_dir/instances.json`` already records this list.
    Returns the samples sorted by name."""
    root, out = Path(folder), Path(gt_dir)
    lst = list_file(root)
    signature = {"list": str(lst.resolve()), "lines": lst.read_text()}
    index = out / _INDEX
    if index.is_file():
        try:
            saved = json.loads(index.read_text())
        except ValueError:
            saved = {}
        if saved.get("signature") == signature and all((out / f"{s['name']}.png").is_file() for s in saved["samples"]):
            return [TosNetSample(s["name"], Path(s["image"]), out / f"{s['name']}.png", Path(s["mask"]), s["value"])
                    for s in saved["samples"]]
    samples: list[TosNetSample] = []
    for stem, image, mask_path in list_entries(root):
        mask = read_mask(mask_path)
        values = instance_values(mask)
        if values is None or len(values) <= 1:
            value = values[0] if values else None
            gt = mask if value is None else np.where(mask == value, 255, 0).astype(np.uint8)
            parts = [(stem, value, gt)]
        else:
            parts = [(f"{stem}_{v}", v, np.where(mask == v, 255, 0).astype(np.uint8)) for v in values]
        for name, value, gt in parts:
            write_png(out / f"{name}.png", gt)
            samples.append(TosNetSample(name, image, out / f"{name}.png", mask_path, value))
    names = [s.name for s in samples]
    if len(set(names)) != len(names):
        raise DatasetError(f"{root}: two instances get the same sample name; rename the images so that no stem "
                           "ends in _<number> of another image's instance")
    samples.sort(key=lambda s: s.name)
    atomic_write_bytes(index, json.dumps({"signature": signature, "samples": [
        {"name": s.name, "image": str(s.image), "mask": str(s.mask), "value": s.value} for s in samples]},
        indent=1).encode())
    return samples
