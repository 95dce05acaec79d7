"""The training data: datasets built from ``cfg.data`` and the resumable training loader of float
items (:mod:`dissam.train.datapath` holds the uint8 path that DisDataset training sets take).

Datasets yield dicts ``{"image": (5,S,S) float32, "label": (1,S,S) float32, "name": str,
"orig_hw": (H, W), "index": int}`` (:class:`dissam.data.dataset.DisDataset`) and may have
``set_epoch(epoch)``. The training order is a function of ``(seed, epoch)`` (a
``DistributedSampler``, one shard per process), so a resumed run skips the batches of the
interrupted epoch it has already seen and continues with the same batches.
"""

from __future__ import annotations

import zlib

import torch
from torch.utils.data import DataLoader, DistributedSampler

from dissam.coarse import degrade_mask
from dissam.data.dataset import DisDataset
from dissam.data.enrich import read_manifest
from dissam.data.layout import discover_split
from dissam.errors import DisSamError
from dissam.train.config import TrainConfig

__all__ = ["build_datasets", "SkipSampler", "train_loader"]


def build_datasets(cfg: TrainConfig):
    """Training dataset (the concatenated ``data.train`` splits plus the enrichment manifest) and the
    validation datasets, from ``dissam.data``: ``(train_dataset, [valid_dataset, ...])``.

    A prompt dropped with probability 1 in training (``data.prompt_dropout``) is dropped in
    validation too; a partial dropout (an augmentation) leaves validation inputs whole."""
    d = cfg.data
    if not d.train:
        raise DisSamError("data.train is empty: list the training split folders (im/, gt/, mask/)")
    samples = []
    for folder in d.train:
        samples.extend(discover_split(folder))
    if d.enrich_manifest:
        samples.extend(read_manifest(d.enrich_manifest))
    fallback = None
    if d.mask_fallback == "degrade":

        def fallback(gt_u8, sample):  # a SAM-like coarse mask from the GT, fixed per sample name
            return degrade_mask(gt_u8, seed=zlib.crc32(sample.name.encode()))

    common = {
        "size": d.size,
        "mode": d.mode,
        "cache_dir": d.cache_dir,
        "seed": cfg.runtime.seed,
        "mask_fallback": fallback,
    }
    train_ds = DisDataset(samples, augment=d.augment, prompt_dropout=tuple(d.prompt_dropout), **common)
    always = tuple(1.0 if float(p) >= 1.0 else 0.0 for p in d.prompt_dropout)
    valid = [DisDataset(discover_split(f), augment=False, prompt_dropout=always, **common) for f in d.valid]
    return train_ds, valid


class SkipSampler(torch.utils.data.Sampler):
    """The indices of ``base`` (a DistributedSampler) after the first ``skip`` (to resume mid-epoch)."""

    def __init__(self, base, skip: int = 0):
        self.base, self.skip = base, skip

    def __iter__(self):
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def train_loader(
    dataset,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    epoch: int,
    skip_batches: int,
    rank: int = 0,
    world_size: int = 1,
    **loader_options,
) -> DataLoader:
    """The loader of epoch ``epoch`` for process ``rank`` of ``world_size``: a shuffled
    ``DistributedSampler`` shard seeded by ``(seed, epoch)``, without its first ``skip_batches``
    batches (those a resumed run has already trained on). Calls ``dataset.set_epoch(epoch)`` if the
    dataset has it (its flips depend on the epoch). ``loader_options`` go to the DataLoader
    (``pin_memory``, ``prefetch_factor``, ...)."""
    base = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    base.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SkipSampler(base, skip_batches * batch_size),
        num_workers=num_workers,
        drop_last=False,
        **loader_options,
    )
