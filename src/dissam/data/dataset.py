"""``DisDataset``: the refiner's training / validation samples.

Items are dicts::

    {"image": float32 (5, S, S)   [R, G, B, SAM mask, box], normalised (dissam.transforms),
     "label": float32 (1, S, S)   gt / 255 (soft, not binarised: as released),
     "name": str, "orig_hw": (H, W) tuple of ints, "index": int}

Modes:
  * ``"faithful"`` — the authors' loader: box map from the *resized GT* with the half-open quirk
    (:func:`dissam.transforms.box_map_from_gt`).
  * ``"clean"`` — the box map drawn from a box in original pixels
    (:func:`dissam.transforms.box_map_from_box`): ``Sample.box`` when set, else the tight box of
    ``gt > 0`` at the original size (what a user's box prompt would be at inference).

Augmentation (``augment=True``) is the released four-way flip (:func:`dissam.transforms.flip4`),
drawn from ``numpy.random.default_rng([seed, epoch, index])``: the same sample gets the same flip in
every DataLoader worker and DDP rank; call :meth:`DisDataset.set_epoch` every epoch. Prompt dropout
(off by default, as released) zeroes the SAM-mask / box channel with the given probabilities
(the zeroed channel is 0 after normalisation, i.e. "no prompt").

Cache (``cache_dir``): the resized uint8 tensors ``im (3,S,S)``, ``gt (1,S,S)``, ``mask (1,S,S)``
and ``box (1,S,S)`` (entries written before the box was cached get it added on their next read) per
sample in ``cache_dir/<key>.pt``, where the key hashes the *contents* of the image, GT and mask
files, the size, the mode, the component, the mask source and (clean mode) the sample's box; a
changed file or size never reuses a stale entry (unlike the released cache, keyed by name and size
only). Writes are atomic. File digests are memoised per ``(path, mtime, size)``
(:meth:`DisDataset.file_digests`), so a process that already knows them reads no original file of
a cached sample.

uint8 items (:meth:`DisDataset.raw_item`): ``{"u8": uint8 (6, S, S) [R, G, B, SAM mask, box, gt]
unflipped, "flip": int (:data:`FLIP_DIMS`), "drop": bool (2,) (zero the mask / box channel),
"name", "orig_hw", "index"}``; :func:`assemble_u8` turns a batch of them into the float items
above, bit-identically (a quarter of the bytes to move, and the float work can run on the GPU).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dissam import transforms as T
from dissam.boxes import box_from_mask
from dissam.data.enrich import component_gt
from dissam.data.layout import Sample
from dissam.errors import DatasetError
from dissam.io import read_image, read_mask
from dissam.utils import atomic_write_bytes

MODES = ("faithful", "clean")
CACHE_VERSION = 1

FLIP_DIMS: dict[int, tuple[int, ...]] = {0: (), 1: (-1,), 2: (-2,), 3: (-2, -1)}
"""Flip code -> the flipped dims of :func:`dissam.transforms.flip4`'s branches (0: none,
1: horizontal, 2: vertical, 3: both)."""

MaskFallback = Callable[[np.ndarray, Sample], np.ndarray]


def _w(a: np.ndarray) -> np.ndarray:
    return np.require(a, requirements=["C", "W"])


def flip_code(r: float) -> int:
    """The branch :func:`dissam.transforms.flip4` takes for the draw ``r``, as a :data:`FLIP_DIMS` code."""
    return 1 if r <= 0.25 else 2 if r <= 0.5 else 3 if r <= 0.75 else 0


def assemble_u8(u8: torch.Tensor, flip, drop) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of uint8 items -> ``(image (B,5,S,S) float32, label (B,1,S,S) float32)``, equal bit
    for bit to the float items of :meth:`DisDataset.__getitem__`.

    ``u8``: ``(B, 6, S, S)`` uint8 ``[R, G, B, mask, box, gt]`` on any device (the work runs there);
    ``flip``: ``B`` flip codes (:data:`FLIP_DIMS`); ``drop``: ``(B, 2)`` booleans (zero the mask /
    box channel after normalisation). Flipping before the float conversion moves a quarter of the
    bytes; the values are those of flipping after it."""
    codes = [int(c) for c in (flip.tolist() if isinstance(flip, torch.Tensor) else flip)]
    if any(codes):
        u8 = u8.clone()
        for b, code in enumerate(codes):
            if code:
                u8[b] = torch.flip(u8[b], dims=FLIP_DIMS[code])
    image = T.assemble_input(u8[:, 0:3], u8[:, 3:4], u8[:, 4:5])
    label = u8[:, 5:6].float() / 255.0
    drop = torch.as_tensor(drop, dtype=torch.bool).reshape(-1, 2).cpu()
    for b, (no_mask, no_box) in enumerate(drop.tolist()):
        if no_mask:
            image[b, 3] = 0.0
        if no_box:
            image[b, 4] = 0.0
    return image, label


def _file_digest(path: Path, memo: dict) -> str:
    st = os.stat(path)
    k = (str(path), st.st_mtime_ns, st.st_size)
    d = memo.get(k)
    if d is None:
        d = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        memo[k] = d
    return d


class DisDataset(Dataset):
    """Samples (:class:`~dissam.data.layout.Sample`) -> refiner inputs at ``size x size``.

    Args:
        samples: from :func:`dissam.data.layout.discover_split` and/or
            :func:`dissam.data.enrich.read_manifest` (component samples).
        size: square input side ``S`` (1024 in the paper).
        mode: ``"faithful"`` or ``"clean"`` (module docstring).
        augment: the released four-way flip.
        cache_dir: folder for the resized uint8 cache (``None``: no cache).
        prompt_dropout: ``(P(zero the SAM mask channel), P(zero the box channel))``.
        seed: seed of the augmentation / dropout draws.
        mask_fallback: ``callable(gt_u8 HxW, sample) -> HxW uint8`` coarse mask used for samples
            without ``mask`` (e.g. a degraded GT for synthetic data). Without it, samples lacking a
            mask raise :class:`DatasetError` at construction. The cache identifies the fallback
            by its ``cache_token`` attribute if it has one, else by its ``__qualname__``: give a
            ``cache_token`` when the same function can produce different masks (e.g. other settings).
            It must be deterministic per sample (it runs in DataLoader workers).

    Raises:
        DatasetError: unknown mode, bad probabilities, samples without GT or without mask.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: int = 1024,
        mode: str = "faithful",
        augment: bool = False,
        cache_dir: str | os.PathLike | None = None,
        prompt_dropout: Sequence[float] = (0.0, 0.0),
        seed: int = 0,
        mask_fallback: MaskFallback | None = None,
    ) -> None:
        if mode not in MODES:
            raise DatasetError(f"unknown dataset mode {mode!r}: use one of {', '.join(MODES)}")
        if int(size) < 8:
            raise DatasetError(f"input size must be at least 8, got {size}")
        pd = tuple(float(p) for p in prompt_dropout)
        if len(pd) != 2 or not all(0.0 <= p <= 1.0 for p in pd):
            raise DatasetError(f"prompt_dropout must be two probabilities in [0, 1], got {prompt_dropout}")
        self.samples = list(samples)
        if not self.samples:
            raise DatasetError("the dataset has no samples")
        no_gt = [s.name for s in self.samples if s.gt is None]
        if no_gt:
            raise DatasetError(
                f"{len(no_gt)} samples have no ground truth (training and validation need gt/): "
                + ", ".join(no_gt[:20])
            )
        if mask_fallback is None:
            no_mask = [s.name for s in self.samples if s.mask is None or not Path(s.mask).is_file()]
            if no_mask:
                raise DatasetError(
                    f"{len(no_mask)} samples have no SAM mask file: {', '.join(no_mask[:20])}"
                    + (" ..." if len(no_mask) > 20 else "")
                    + "; run `dissam prepare-masks DATASET_DIR --sam SAM_CHECKPOINT` (add --enrich for "
                    "enrichment manifests), or pass mask_fallback"
                )
        self.size = int(size)
        self.mode = mode
        self.augment = bool(augment)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.prompt_dropout = pd
        self.seed = int(seed)
        self.mask_fallback = mask_fallback
        self.epoch = 0
        self._digests: dict = {}

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before every epoch, in every worker's parent)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ reading
    def gt_u8(self, index: int) -> np.ndarray:
        """The target at the original size, ``H x W`` uint8 (a component sample: component ×255)."""
        s = self.samples[index]
        gt = read_mask(s.gt)
        if s.component is not None:
            gt = component_gt(gt, s.component)
        return gt

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.samples[index]
        image = read_image(s.image)
        gt = self.gt_u8(index)
        if s.mask is not None and Path(s.mask).is_file():
            mask = read_mask(s.mask)
        elif self.mask_fallback is not None:
            mask = np.asarray(self.mask_fallback(gt, s))
            if mask.dtype == bool:
                mask = mask.astype(np.uint8) * 255
            mask = mask.astype(np.uint8)
        else:
            raise DatasetError(f"{s.name}: SAM mask {s.mask} is missing")
        for what, arr in (("ground truth", gt), ("SAM mask", mask)):
            if arr.shape[:2] != image.shape[:2]:
                raise DatasetError(
                    f"{s.name}: {what} is {arr.shape[0]}x{arr.shape[1]} but the image is "
                    f"{image.shape[0]}x{image.shape[1]} ({s.image})"
                )
        return image, gt, mask

    def cache_key(self, index: int) -> str:
        """Content hash of the sample's files plus size, mode, component and mask source."""
        s = self.samples[index]
        h = hashlib.sha256()
        parts = [f"v{CACHE_VERSION}", str(self.size), self.mode, str(s.component)]
        if self.mode == "clean" and s.box is not None:  # the cached box map is drawn from it
            parts.append(f"box:{tuple(s.box)}")
        for p in (s.image, s.gt):
            parts.append(_file_digest(Path(p), self._digests))
        if s.mask is not None and Path(s.mask).is_file():
            parts.append(_file_digest(Path(s.mask), self._digests))
        else:
            fb = self.mask_fallback
            token = getattr(fb, "cache_token", None) or getattr(fb, "__qualname__", type(fb).__qualname__)
            parts.append(f"fallback:{token}")
        h.update("|".join(parts).encode())
        return h.hexdigest()[:32]

    def file_digests(self) -> dict:
        """The memo of file digests, ``{(path, mtime_ns, size): sha256}``; :meth:`add_file_digests`
        of another process's memo spares this one reading those files to find their cache keys."""
        return dict(self._digests)

    def add_file_digests(self, digests: dict) -> None:
        self._digests.update(digests)

    def _uint8_tensors(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int], torch.Tensor]:
        """``(im (3,S,S), gt (1,S,S), mask (1,S,S), (H, W), box (1,S,S))`` uint8, from the cache when
        it holds them (an entry without a box gets one and is rewritten), else read, resized and
        cached."""
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f"{self.cache_key(index)}.pt"
            if path.is_file():
                try:
                    d = torch.load(path, map_location="cpu", weights_only=True)
                    hw = (int(d["hw"][0]), int(d["hw"][1]))
                    box = d.get("box")
                    if box is None:
                        box = self._box_map(index, d["gt"], hw)
                        self._write_entry(path, d["im"], d["gt"], d["mask"], hw, box)
                    return d["im"], d["gt"], d["mask"], hw, box
                except Exception:  # noqa: BLE001 - a broken cache entry is rebuilt
                    pass
        image, gt, mask = self._read(index)
        hw = (int(image.shape[0]), int(image.shape[1]))
        im_u8 = T.resize_uint8(torch.from_numpy(_w(image)).permute(2, 0, 1), self.size)
        gt_u8 = T.resize_uint8(torch.from_numpy(_w(gt))[None], self.size)
        mask_u8 = T.resize_uint8(torch.from_numpy(_w(mask))[None], self.size)
        box_u8 = self._box_map(index, gt_u8, hw, gt)
        if path is not None:
            self._write_entry(path, im_u8, gt_u8, mask_u8, hw, box_u8)
        return im_u8, gt_u8, mask_u8, hw, box_u8

    @staticmethod
    def _write_entry(path: Path, im, gt, mask, hw, box) -> None:
        buf = io.BytesIO()
        torch.save({"im": im, "gt": gt, "mask": mask, "hw": torch.tensor(hw), "box": box}, buf)
        atomic_write_bytes(path, buf.getvalue())

    def _box_map(self, index: int, gt_u8: torch.Tensor, hw: tuple[int, int], gt_orig: np.ndarray | None = None) -> torch.Tensor:
        """The box channel ``(1,S,S)`` uint8; ``gt_orig`` is the original-size GT when the caller
        has it (clean mode without a sample box draws the box from it)."""
        if self.mode == "faithful":
            return T.box_map_from_gt(gt_u8)
        s = self.samples[index]
        box = s.box
        if box is None:
            box = box_from_mask(self.gt_u8(index) if gt_orig is None else gt_orig, 0)
        if box is None:
            return torch.zeros_like(gt_u8)
        return T.box_map_from_box(box, hw, self.size)

    def draws(self, index: int, epoch: int | None = None) -> tuple[float, float, float]:
        """``(flip r, mask-dropout u, box-dropout u)`` of ``index`` at ``epoch`` (default: the
        current one, :meth:`set_epoch`)."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])
        r, u_mask, u_box = rng.random(3)
        return float(r), float(u_mask), float(u_box)

    def augmentation(self, index: int, epoch: int | None = None) -> tuple[int, bool, bool]:
        """``(flip code, drop the mask channel, drop the box channel)`` of ``index`` at ``epoch``."""
        r, u_mask, u_box = self.draws(index, epoch)
        return (flip_code(r) if self.augment else 0), u_mask < self.prompt_dropout[0], u_box < self.prompt_dropout[1]

    def uint8_item(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(u8 (6,S,S) [R, G, B, mask, box, gt] unflipped, (H, W))``: what an item is made of."""
        im_u8, gt_u8, mask_u8, hw, box_u8 = self._uint8_tensors(int(index))
        return torch.cat([im_u8, mask_u8, box_u8, gt_u8]), hw

    def raw_item(self, index: int, epoch: int | None = None, u8: tuple[torch.Tensor, tuple[int, int]] | None = None) -> dict:
        """The uint8 item of ``index`` at ``epoch`` (module docstring); ``u8`` = a
        :meth:`uint8_item` the caller kept (e.g. in memory)."""
        index = int(index)
        tensor, hw = self.uint8_item(index) if u8 is None else u8
        flip, no_mask, no_box = self.augmentation(index, epoch)
        return {
            "u8": tensor,
            "flip": flip,
            "drop": torch.tensor([no_mask, no_box]),
            "name": self.samples[index].name,
            "orig_hw": hw,
            "index": index,
        }

    def __getitem__(self, index: int) -> dict:
        raw = self.raw_item(index)
        image, label = assemble_u8(raw["u8"][None], [raw["flip"]], raw["drop"][None])
        return {
            "image": image[0].contiguous(),
            "label": label[0].contiguous(),
            "name": raw["name"],
            "orig_hw": raw["orig_hw"],
            "index": raw["index"],
        }
