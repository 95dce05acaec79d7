"""What a prediction job reads: the image list (folders, files, globs and URIs) and the boxes of each
image (``--box``, ``--prompts``, ``--full-image-box``), the same for both engines.

An image is named by its path or URI as a string; its output names come from its stem (the file name
without the extension), so two inputs with the same stem are refused before any work starts.
"""

from __future__ import annotations

import glob
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dissam.boxes import as_boxes
from dissam.engines.storage import Storage, is_uri, split_uri
from dissam.errors import DisSamError
from dissam.io import IMAGE_EXTENSIONS, list_images
from dissam.prompts import boxes_for_image

__all__ = ["BoxSource", "ImageRef", "expand_inputs", "stem_of", "check_unique_stems", "job_rows", "whole_image_box"]


@dataclass(frozen=True)
class ImageRef:
    """An image named by a path or URI, with the ``name``/``stem`` a prompts file is keyed by."""

    location: str

    @property
    def name(self) -> str:
        return posixpath.basename(self.location.rstrip("/")) if is_uri(self.location) else Path(self.location).name

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    def __str__(self) -> str:
        return self.location


def stem_of(location: str) -> str:
    """The output stem of an image path or URI (``s3://b/x/cat.jpg`` -> ``cat``)."""
    return ImageRef(location).stem


@dataclass(frozen=True)
class BoxSource:
    """Boxes per image from the prompts file, ``--box`` and ``--full-image-box`` (picklable: it travels
    to Ray's workers).

    Attributes:
        prompts: ``{key: [box, ...]}`` of :func:`dissam.prompts.load_prompts` (key: the path as given,
            the file name or the stem).
        cli_boxes: boxes for every image (``--box``).
        full_image_box: the whole image when an image has no box.
        box_format: ``"xyxy"`` or ``"xywh"`` of the given boxes.
    """

    prompts: dict | None = None
    cli_boxes: list = field(default_factory=list)
    full_image_box: bool = False
    box_format: str = "xyxy"

    def needs_size(self, location: str) -> bool:
        """Whether the boxes of this image depend on its size (it has none and gets the whole image)."""
        return self.full_image_box and not boxes_for_image(ImageRef(location), self.prompts, self.cli_boxes)

    def boxes(self, location: str, hw: tuple[int, int] | None = None) -> np.ndarray:
        """``(N, 4)`` float64 XYXY boxes of the image at ``location`` (``hw``: its size, needed only
        when :meth:`needs_size`). Raises :class:`DisSamError` for an image without boxes."""
        found = boxes_for_image(ImageRef(location), self.prompts, self.cli_boxes)
        if not found:
            if not self.full_image_box:
                raise DisSamError(NO_BOX)
            if hw is None:
                raise DisSamError("the whole-image box needs the image's size")
            return whole_image_box(hw)
        return np.asarray(as_boxes(found, self.box_format), dtype=np.float64).reshape(-1, 4)


NO_BOX = "no box given for this image (use --box, --prompts or --full-image-box)"


def whole_image_box(hw: tuple[int, int]) -> np.ndarray:
    """``(1, 4)`` XYXY box of a whole ``(H, W)`` image (``--full-image-box``)."""
    return np.asarray([[0, 0, hw[1] - 1, hw[0] - 1]], dtype=np.float64)


def job_rows(paths: Sequence[str], source: BoxSource) -> list[dict]:
    """One row per image for the Ray engine: ``path``, ``boxes`` (a list of XYXY boxes), ``whole``
    (the whole image is the box: known only once it is decoded) and ``error`` (no box: that image's
    failure)."""
    rows = []
    for p in paths:
        row = {"path": p, "boxes": [], "whole": False, "error": ""}
        if source.needs_size(p):
            row["whole"] = True
        else:
            try:
                row["boxes"] = source.boxes(p).tolist()
            except DisSamError as exc:
                row["error"] = str(exc)
        rows.append(row)
    return rows


def _expand_uri(item: str) -> list[str]:
    storage = Storage(item)
    if posixpath.splitext(item.rstrip("/"))[1].lower() in IMAGE_EXTENSIONS:
        return [item]
    if storage.is_folder():
        found = storage.list_images()
        if not found:
            raise DisSamError(f"no images found in folder {item}")
        return [storage.location(name) for name in found]
    parent, _ = split_uri(item)
    raise DisSamError(f"{item} is neither an image file nor a folder of images (looked in {parent})")


def expand_inputs(items: Sequence[str]) -> list[str]:
    """Image paths/URIs of ``items``: folders (their images, sorted), files, glob patterns (local) and
    URIs (a folder or an image file). A local path that does not exist is kept: it is reported as that
    image's failure, so the others still run. Duplicates are dropped; a stem used twice is refused."""
    paths: list[str] = []
    for item in items:
        if is_uri(item):
            paths.extend(_expand_uri(item))
            continue
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DisSamError(f"no images found in folder {p}")
            paths.extend(str(x) for x in found)
        elif p.exists():
            paths.append(str(p))
        elif any(c in item for c in "*?["):
            found = sorted(Path(x) for x in glob.glob(item, recursive=True) if Path(x).is_file())
            if not found:
                raise DisSamError(f"no files match {item!r}")
            paths.extend(str(x) for x in found)
        else:
            paths.append(str(p))
    paths = list(dict.fromkeys(paths))
    check_unique_stems(paths)
    return paths


def check_unique_stems(paths: Sequence[str]) -> None:
    """Refuse two inputs with the same stem: their outputs would collide."""
    stems: dict[str, str] = {}
    for p in paths:
        s = stem_of(p)
        if s in stems and stems[s] != p:
            raise DisSamError(f"two inputs share the name {s!r} ({stems[s]} and {p}); outputs would collide")
        stems[s] = p
