"""The training data path that keeps an accelerator fed at 1024².

Workers return uint8 items (:meth:`dissam.data.dataset.DisDataset.raw_item`: ``(6,S,S)`` uint8
``[R,G,B,mask,box,gt]``, a flip code and two prompt-dropout flags: a quarter of the bytes of the
float item); the batch is pinned, moved to the device and assembled there
(:func:`device_batch`: flip, normalise, label /255), bit-identical to the float items. When the
training device is the CPU the workers assemble the items themselves (in parallel, rather than
one at a time in the training process).

One DataLoader per stage with persistent workers (:class:`StageBatches`): the sampler yields
``(epoch, index)`` keys (:class:`EpochKeys`), so the flips of each epoch reach workers that were
started in an earlier one, and a resumed run still skips the batches of the interrupted epoch it
has seen. The cache keys' file digests are computed once, sharded over the ranks and shared
(:func:`share_file_digests`), before the workers start, so no worker reads an original file to find
a cache entry. ``data.ram_cache`` keeps every item's uint8 tensors in shared memory
(:class:`SharedU8Cache`), read from the disk cache or the originals once.

Datasets without ``raw_item`` (any dataset of float items, see :mod:`dissam.train.datasets`) go
through the same :class:`StageBatches` with a loader rebuilt every epoch (their ``set_epoch`` runs in
the main process before the workers fork).
"""

from __future__ import annotations

import math
import os
import shutil

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from dissam.data.dataset import assemble_u8
from dissam.errors import DisSamError
from dissam.train.datasets import train_loader
from dissam.train.distributed import DistInfo, all_gather_objects

__all__ = ["SharedU8Cache", "EpochItems", "EpochKeys", "StageBatches", "device_batch", "share_file_digests"]


class SharedU8Cache:
    """Every item's ``(6, S, S)`` uint8 tensor and original size in shared memory (allocated lazily
    by the OS page by page), written by whichever DataLoader worker reads the item first and seen by
    all of this process's workers: ``n x 6 x S²`` bytes per training process (23 GiB for the 3,880
    samples of DIS-TR + enrichment at 1024²)."""

    def __init__(self, n: int, size: int):
        need = n * 6 * size * size
        shm = "/dev/shm"
        if os.path.isdir(shm):
            free = shutil.disk_usage(shm).free
            if need > free:
                raise DisSamError(
                    f"data.ram_cache needs {need / 2**30:.1f} GiB of shared memory in this process ({n} items x 6 x "
                    f"{size}²) but {shm} has {free / 2**30:.1f} GiB free; enlarge it (docker --shm-size) or set "
                    "data.ram_cache=false (data.cache_dir alone keeps the uint8 tensors on disk)"
                )
        self.data = torch.empty((n, 6, size, size), dtype=torch.uint8).share_memory_()
        self.hw = torch.zeros((n, 2), dtype=torch.int64).share_memory_()
        self.filled = torch.zeros(n, dtype=torch.uint8).share_memory_()

    def get(self, index: int) -> tuple[torch.Tensor, tuple[int, int]] | None:
        if not self.filled[index]:
            return None
        h, w = self.hw[index].tolist()
        return self.data[index], (int(h), int(w))

    def put(self, index: int, u8: torch.Tensor, hw: tuple[int, int]) -> None:
        self.data[index].copy_(u8)
        self.hw[index] = torch.tensor(hw)
        self.filled[index] = 1  # after the data: a reader that sees the flag sees the tensor


class EpochItems(Dataset):
    """``dataset`` (a DisDataset) addressed by ``(epoch, index)`` keys: its uint8 item at that epoch's
    flips and prompt dropout, through ``ram`` when given; with ``assemble`` the float item instead
    (assembled in the worker: the choice for CPU training, where there is no device to move it to)."""

    def __init__(self, dataset, ram: SharedU8Cache | None = None, assemble: bool = False):
        self.dataset, self.ram, self.assemble = dataset, ram, assemble

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key) -> dict:
        epoch, index = key
        u8 = self.ram.get(index) if self.ram is not None else None
        if u8 is None:
            u8 = self.dataset.uint8_item(index)
            if self.ram is not None:
                self.ram.put(index, *u8)
        raw = self.dataset.raw_item(index, epoch, u8=u8)
        if not self.assemble:
            return raw
        image, label = assemble_u8(raw.pop("u8")[None], [raw.pop("flip")], raw.pop("drop")[None])
        return {**raw, "image": image[0], "label": label[0]}


class EpochKeys(Sampler):
    """``(epoch, index)`` keys of this rank's ``DistributedSampler`` shard of the epoch set by
    :meth:`set_position`, without its first ``skip`` indices."""

    def __init__(self, base: DistributedSampler):
        self.base, self.epoch, self.skip = base, 0, 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = int(epoch), int(skip)
        self.base.set_epoch(self.epoch)

    def __iter__(self):
        return iter([(self.epoch, i) for i in list(self.base)[self.skip :]])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


class StageBatches:
    """The training batches of one stage for process ``rank`` of ``world_size``: the shuffled
    ``DistributedSampler`` order of ``(seed, epoch)`` (as :func:`dissam.train.datasets.train_loader`),
    ``batch_size`` per batch, the last batch of an epoch possibly smaller.

    :meth:`epoch` returns the batches of one epoch after its first ``skip_batches``; ``len()`` of
    what it returns is their number. ``uint8=False`` (``data.uint8_items``) keeps a dataset that has
    ``raw_item`` on the float loader; ``assemble_in_workers`` makes the keyed loader's workers
    return float items (a CPU run: its main process would otherwise assemble them one at a time)."""

    def __init__(self, dataset, *, batch_size: int, num_workers: int, seed: int, rank: int, world_size: int,
                 pin_memory: bool = False, prefetch_factor: int = 2, ram_cache: bool = False, uint8: bool = True,
                 assemble_in_workers: bool = False):
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.keyed = uint8 and hasattr(dataset, "raw_item") and hasattr(dataset, "uint8_item")
        self.loader = None
        if self.keyed:
            base = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
            self.keys = EpochKeys(base)
            ram = SharedU8Cache(len(dataset), dataset.size) if ram_cache else None
            items = EpochItems(dataset, ram, assemble=assemble_in_workers)
            self.loader = DataLoader(items, batch_size=batch_size, sampler=self.keys,
                                     drop_last=False, **self._worker_options(persistent=True))

    def _worker_options(self, persistent: bool) -> dict:
        opts = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            opts.update(prefetch_factor=self.prefetch_factor, persistent_workers=persistent)
        return opts

    def epoch(self, epoch: int, skip_batches: int):
        """The loader of ``epoch`` without its first ``skip_batches`` batches."""
        if self.keyed:
            self.keys.set_position(epoch, skip_batches * self.batch_size)
            return self.loader
        return train_loader(
            self.dataset, batch_size=self.batch_size, seed=self.seed, epoch=epoch, skip_batches=skip_batches,
            rank=self.rank, world_size=self.world_size, **self._worker_options(persistent=False),
        )

    def batches_per_epoch(self) -> int:
        """Batches in a whole epoch of this rank (every rank has as many: the sampler pads)."""
        return math.ceil(math.ceil(len(self.dataset) / self.world_size) / self.batch_size)

    def close(self) -> None:
        """Stop the persistent workers."""
        self.loader = None


def device_batch(batch: dict, device: torch.device) -> dict:
    """``{"image": (B,5,S,S) float32, "label": (B,1,S,S) float32}`` on ``device`` from a batch of
    uint8 items (assembled there, :func:`dissam.data.dataset.assemble_u8`) or of float items."""
    if "u8" in batch:
        image, label = assemble_u8(batch["u8"].to(device, non_blocking=True), batch["flip"], batch["drop"])
        return {**batch, "image": image, "label": label}
    return {
        **batch,
        "image": batch["image"].to(device, non_blocking=True),
        "label": batch["label"].to(device, non_blocking=True),
    }


def share_file_digests(datasets, dist: DistInfo) -> None:
    """Fill the file-digest memo of each dataset that keeps a cache (``file_digests``), each rank
    hashing every ``world_size``-th sample and all ranks sharing the results, so that no
    DataLoader worker reads an original file to find a cache key."""
    for ds in datasets:
        if getattr(ds, "cache_dir", None) is None or not hasattr(ds, "add_file_digests"):
            continue
        for index in range(dist.rank, len(ds), dist.world_size):
            ds.cache_key(index)
        for memo in all_gather_objects(dist, ds.file_digests()):
            ds.add_file_digests(memo)
