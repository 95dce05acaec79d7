"""GT enrichment: one extra training sample per connected component of the GT.

Exactly the authors' notebook, without copying any image:

1. binarise the GT: ``>= 128`` -> 1;
2. ``skimage.measure.label(connectivity=2)`` (8-connectivity); components with an area below
   ``H * W * 0.004`` (0.4 % of the image) are dropped; the rest keep their original label index
   (1-based, possibly non-contiguous);
3. if more than one component survives, the whole binarised mask is added as component ``0``;
   a single survivor gives just that component (the whole mask is *not* added); none gives nothing;
4. each entry's box is the inclusive XYXY box of ``comp * 255 > 125`` at the original resolution.

The result is a **manifest** (JSON, see :func:`write_manifest`) of samples
``(image, gt, component k, box, sam mask)``. A component sample's target is that component ×255
(binary); the image is the original one, the other components therefore being background.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dissam.data.layout import Sample, discover_split
from dissam.errors import DatasetError
from dissam.io import read_mask
from dissam.utils import atomic_write_bytes

MIN_AREA_FRACTION = 0.004
MANIFEST_VERSION = 1
COMPONENT_MASK_DIR = "mask_comp"


def binarise(gt: np.ndarray) -> np.ndarray:
    """``H x W`` uint8 GT -> ``H x W`` uint8 {0, 1} (``>= 128``), as the notebook does."""
    return (np.asarray(gt) >= 128).astype(np.uint8)


def components(gt: np.ndarray, min_area_fraction: float = MIN_AREA_FRACTION) -> dict[int, np.ndarray]:
    """The enrichment entries of one GT: ``{k: H x W bool}``.

    Keys are the original ``skimage`` label indices of the components that survive the area filter,
    plus ``0`` (the whole binarised mask, tiny components included) when more than one survives.
    A single survivor gives ``{k: component}``; an empty or all-tiny GT gives ``{}``.
    """
    from skimage.measure import label

    b = binarise(gt)
    h, w = b.shape
    lab = label(b, connectivity=2)
    n = int(lab.max())
    if n == 0:
        return {}
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    keep = [k for k in range(1, n + 1) if areas[k] >= h * w * min_area_fraction]
    out = {k: lab == k for k in keep}
    if len(keep) > 1:
        out = {0: b.astype(bool), **out}
    return out


def component_gt(gt: np.ndarray, k: int) -> np.ndarray:
    """The target of enrichment component ``k`` of ``gt``: ``H x W`` uint8 {0, 255}
    (``k = 0``: the whole binarised GT). Raises DatasetError if ``k`` does not exist."""
    b = binarise(gt)
    if k == 0:
        return b * np.uint8(255)
    from skimage.measure import label

    lab = label(b, connectivity=2)
    comp = lab == k
    if not comp.any():
        raise DatasetError(f"the ground truth has no connected component {k} (it has {int(lab.max())})")
    return comp.astype(np.uint8) * np.uint8(255)


def component_box(comp: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive XYXY box of ``comp * 255 > 125`` (the notebook's rule)."""
    comp = np.asarray(comp)
    # bool components (what components() gives) need no arithmetic; other arrays follow the rule
    ys, xs = np.nonzero(comp if comp.dtype == bool else comp.astype(np.int64) * 255 > 125)
    if ys.size == 0:
        raise DatasetError("cannot take the box of an empty component")
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def prompt_box(
    gt: np.ndarray, comps: dict[int, np.ndarray] | None = None
) -> tuple[tuple[int, int, int, int] | None, bool]:
    """The SAM prompt box of a ground truth (the whole-GT box of the paper's protocol), the one
    definition used by the benchmark, ``prepare-masks`` and enrichment: ``(box, fallback)``.

    ``gt`` is ``H x W`` uint8 (0..255). Binarised at ``>= 128``; 8-connected components of at least
    0.4% of the image area survive (:func:`components`; pass them as ``comps`` if already computed);
    one survivor -> its box, several -> the box of the whole binarised mask. With no survivor (the
    authors make no sample) the box of ``gt >= 128``, else of ``gt > 0``, with ``fallback=True``.
    ``(None, False)`` for an all-zero GT. Boxes are XYXY inclusive pixels."""
    comps = components(gt) if comps is None else comps
    if comps:
        return component_box(comps[0] if 0 in comps else next(iter(comps.values()))), False
    g = np.asarray(gt)
    for m in (g >= 128, g > 0):
        if m.any():
            return component_box(m), True
    return None, False


def whole_box(gt: np.ndarray) -> tuple[int, int, int, int] | None:
    """The SAM prompt box for ``mask/<stem>.png`` (:func:`prompt_box` without the fallback flag)."""
    return prompt_box(gt)[0]


def component_mask_path(split_dir: str | os.PathLike, stem: str, k: int) -> Path:
    """Where ``prepare-masks --enrich`` writes the SAM mask of component ``k``."""
    return Path(split_dir) / COMPONENT_MASK_DIR / f"{stem}_comp_{k}.png"


@dataclass(frozen=True)
class EnrichResult:
    samples: list[Sample]
    n_images: int
    n_multi: int  # images with more than one surviving component
    n_empty: int  # images that yield nothing

    @property
    def extra(self) -> int:
        """Samples added over one-per-image (the paper reports 880 on DIS-TR)."""
        return len(self.samples) - self.n_images


def enrich_samples(samples: Iterable[Sample], mask_root: str | os.PathLike | None = None) -> EnrichResult:
    """Enrichment entries for the given (whole-GT) samples.

    ``mask_root``: the split folder under which ``mask_comp/<stem>_comp_<k>.png`` are (or will be)
    written; default: the parent of each sample's ``gt`` folder.
    """
    out: list[Sample] = []
    n = multi = empty = 0
    for s in samples:
        if s.gt is None:
            raise DatasetError(f"{s.name}: enrichment needs a ground truth")
        n += 1
        comps = components(read_mask(s.gt))
        if not comps:
            empty += 1
        if len(comps) > 1:
            multi += 1
        root = Path(mask_root) if mask_root is not None else Path(s.gt).parent.parent
        for k, comp in comps.items():
            out.append(
                Sample(
                    name=f"{s.name}_comp_{k}",
                    image=Path(s.image),
                    gt=Path(s.gt),
                    mask=component_mask_path(root, s.name, k),
                    component=k,
                    box=component_box(comp),
                )
            )
    return EnrichResult(out, n, multi, empty)


def enrich_split(split_dir: str | os.PathLike) -> EnrichResult:
    """:func:`enrich_samples` over a split folder (``im/``, ``gt/``)."""
    return enrich_samples(discover_split(split_dir, require_gt=True), mask_root=split_dir)


def _rel(p: Path, base: Path) -> str:
    try:
        return os.path.relpath(Path(p).resolve(), base.resolve()).replace(os.sep, "/")
    except ValueError:  # another drive on Windows
        return str(Path(p).resolve())


def manifest_bytes(path: str | os.PathLike, result: EnrichResult | Sequence[Sample]) -> bytes:
    """The bytes :func:`write_manifest` writes to ``path`` (paths are made relative to its folder)."""
    samples = result.samples if isinstance(result, EnrichResult) else list(result)
    base = Path(path).parent
    doc: dict = {"format": "dissam-enrich", "version": MANIFEST_VERSION}
    if isinstance(result, EnrichResult):
        doc.update(
            n_images=result.n_images,
            extra=result.extra,
            n_multi_component=result.n_multi,
            n_without_component=result.n_empty,
        )
    doc["samples"] = [
        {
            "name": s.name,
            "image": _rel(s.image, base),
            "gt": _rel(s.gt, base) if s.gt is not None else None,
            "component": s.component,
            "box": list(s.box) if s.box is not None else None,
            "mask": _rel(s.mask, base) if s.mask is not None else None,
        }
        for s in samples
    ]
    return (json.dumps(doc, indent=1) + "\n").encode()


def write_manifest(
    path: str | os.PathLike, result: EnrichResult | Sequence[Sample], only_if_changed: bool = False
) -> bool:
    """Write the manifest (atomic); returns whether the file was written. Format (JSON)::

        {"format": "dissam-enrich", "version": 1, "n_images": N, "extra": E, ...,
         "samples": [{"name": "x_comp_2", "image": "im/x.jpg", "gt": "gt/x.png",
                      "component": 2, "box": [x1, y1, x2, y2], "mask": "mask_comp/x_comp_2.png"}, ...]}

    Paths are relative to the manifest's folder; boxes are XYXY inclusive original pixels;
    ``component`` 0 is the whole binarised GT. ``only_if_changed``: leave an identical file alone.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = manifest_bytes(p, result)
    if only_if_changed and p.is_file() and p.read_bytes() == data:
        return False
    atomic_write_bytes(p, data)
    return True


def read_manifest(path: str | os.PathLike) -> list[Sample]:
    """Samples of a manifest written by :func:`write_manifest` (paths resolved against its folder)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"enrichment manifest not found: {p} (write one with `dissam enrich SPLIT_DIR`)")
    try:
        doc = json.loads(p.read_text())
        if doc.get("format") != "dissam-enrich":
            raise KeyError("format")
        rows = doc["samples"]
        base = p.parent

        def res(v):
            return None if v is None else (base / v).resolve() if not os.path.isabs(v) else Path(v)

        return [
            Sample(
                name=str(r["name"]),
                image=res(r["image"]),
                gt=res(r.get("gt")),
                mask=res(r.get("mask")),
                component=None if r.get("component") is None else int(r["component"]),
                box=None if r.get("box") is None else tuple(float(v) for v in r["box"]),
            )
            for r in rows
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{p} is not a dissam enrichment manifest ({type(exc).__name__}: {exc})") from exc
