"""The training data path: uint8 items assembled on the device equal the float items of the released
loader bit for bit; a stage's loader keeps its workers across epochs with the right flips; after
the first epoch no original file is read (counted), with the disk cache or the in-RAM cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import ThinDataset

from dissam import transforms as T
from dissam.data.dataset import DisDataset, assemble_u8
from dissam.data.layout import discover_split
from dissam.errors import DisSamError
from dissam.io import read_image, read_mask, write_png
from dissam.train.datapath import StageBatches, device_batch, share_file_digests
from dissam.train.datasets import train_loader
from dissam.train.distributed import DistInfo

SIZE = 32


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """5 samples of 40 x 56 pixels (squashed to 32²): images, GTs, coarse masks."""
    root = tmp_path_factory.mktemp("split")
    for i, (rgb, gt, coarse) in enumerate(ThinDataset(5, 56, seed=9).samples):
        write_png(root / "im" / f"s{i}.png", rgb[:40])
        write_png(root / "gt" / f"s{i}.png", gt[:40])
        write_png(root / "mask" / f"s{i}.png", coarse[:40])
    return root


def released_item(sample, mode: str, seed: int, epoch: int, index: int, dropout) -> dict:
    """The float item as DisDataset built it before the uint8 path (read, resize, box map, assemble,
    label, flip, prompt dropout), from the files."""
    from dissam.boxes import box_from_mask

    image, gt, mask = read_image(sample.image), read_mask(sample.gt), read_mask(sample.mask)
    im_u8 = T.resize_uint8(torch.from_numpy(image.copy()).permute(2, 0, 1), SIZE)
    gt_u8 = T.resize_uint8(torch.from_numpy(gt.copy())[None], SIZE)
    mask_u8 = T.resize_uint8(torch.from_numpy(mask.copy())[None], SIZE)
    if mode == "faithful":
        box = T.box_map_from_gt(gt_u8)
    else:
        box = T.box_map_from_box(box_from_mask(gt, 0), image.shape[:2], SIZE)
    x = T.assemble_input(im_u8, mask_u8, box)
    label = gt_u8.float() / 255.0
    r, u_mask, u_box = np.random.default_rng([seed, epoch, index]).random(3)
    x, label = T.flip4(r, x, label)
    if u_mask < dropout[0]:
        x[3] = 0.0
    if u_box < dropout[1]:
        x[4] = 0.0
    return {"image": x, "label": label}


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_uint8_items_equal_the_released_float_items(split, tmp_path, mode):
    """Item by item and as an assembled batch, without cache, filling it, reading it, and reading an
    entry written before the box was cached (rewritten with its box)."""
    samples = discover_split(split)
    dropout = (0.3, 0.4)
    cache = tmp_path / "cache"
    ds = DisDataset(samples, size=SIZE, mode=mode, augment=True, prompt_dropout=dropout, seed=3, cache_dir=cache)
    plain = DisDataset(samples, size=SIZE, mode=mode, augment=True, prompt_dropout=dropout, seed=3)
    flips, drops = set(), set()
    for epoch in range(4):
        if epoch == 2:  # make entry 0 look like one of an earlier version (no box)
            path = cache / f"{ds.cache_key(0)}.pt"
            entry = torch.load(path, weights_only=True)
            torch.save({k: v for k, v in entry.items() if k != "box"}, path)
        for d in (ds, plain):
            d.set_epoch(epoch)
        want = [released_item(samples[i], mode, 3, epoch, i, dropout) for i in range(len(samples))]
        raws = [ds.raw_item(i, epoch) for i in range(len(samples))]
        for i, w in enumerate(want):
            for got in (ds[i], plain[i]):
                assert torch.equal(got["image"], w["image"]) and torch.equal(got["label"], w["label"]), (epoch, i)
            assert raws[i]["u8"].dtype == torch.uint8 and raws[i]["u8"].shape == (6, SIZE, SIZE)
            flips.add(raws[i]["flip"])
            drops.add(tuple(raws[i]["drop"].tolist()))
        batch = torch.utils.data.default_collate(raws)
        image, label = assemble_u8(batch["u8"], batch["flip"], batch["drop"])
        assert torch.equal(image, torch.stack([w["image"] for w in want]))
        assert torch.equal(label, torch.stack([w["label"] for w in want]))
    assert flips == {0, 1, 2, 3} and len(drops) > 1
    assert "box" in torch.load(cache / f"{ds.cache_key(0)}.pt", weights_only=True)  # upgraded in place


class ReadLog:
    """Counts reads of files under ``root`` in this process and in forked DataLoader workers: every
    decode (dissam.io.read_image / read_mask) and every read_bytes (the cache keys' digests) appends
    a line to a file."""

    def __init__(self, monkeypatch, root: Path, log: Path):
        import dissam.io

        self.log = log
        real_image, real_mask, real_bytes = dissam.io.read_image, dissam.io.read_mask, Path.read_bytes

        def note(kind, path):
            if str(path).startswith(str(root)):
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
                os.write(fd, f"{kind} {Path(path).name}\n".encode())
                os.close(fd)

        import dissam.data.dataset

        for module in (dissam.io, dissam.data.dataset):  # the dataset module holds its own references
            monkeypatch.setattr(module, "read_image", lambda p, *a, **k: (note("decode", p), real_image(p, *a, **k))[1])
            monkeypatch.setattr(module, "read_mask", lambda p, *a, **k: (note("decode", p), real_mask(p, *a, **k))[1])
        monkeypatch.setattr(Path, "read_bytes", lambda p: (note("bytes", p), real_bytes(p))[1])

    def take(self) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.write_text("")
        return sorted(lines)


@pytest.mark.parametrize("cache", ["disk", "ram"])
def test_no_original_file_is_read_after_the_first_epoch(split, tmp_path, monkeypatch, cache):
    """A stage's loader (2 persistent workers, uint8 items) over 3 epochs: the cache keys' digests
    are computed once in the main process, the originals are decoded once in epoch 0, and never
    again; every batch equals the float items of the released loader in the same order."""
    samples = discover_split(split)
    n = len(samples)
    reference = DisDataset(samples, size=SIZE, augment=True, prompt_dropout=(0.3, 0.3), seed=2)
    skips = [0, 1, 0]  # a resumed epoch starts after the batches already seen
    wants = [
        list(train_loader(reference, batch_size=2, num_workers=0, seed=7, epoch=e, skip_batches=skips[e]))
        for e in range(3)
    ]
    reads = ReadLog(monkeypatch, split, tmp_path / "reads.log")
    ds = DisDataset(samples, size=SIZE, augment=True, prompt_dropout=(0.3, 0.3), seed=2,
                    cache_dir=tmp_path / "cache" if cache == "disk" else None)
    share_file_digests([ds], DistInfo())
    digests = reads.take()
    assert len(digests) == (3 * n if cache == "disk" else 0) and all(r.startswith("bytes") for r in digests)
    batches = StageBatches(ds, batch_size=2, num_workers=2, seed=7, rank=0, world_size=1, ram_cache=cache == "ram")
    for epoch, (skip, want) in enumerate(zip(skips, wants)):
        loader = batches.epoch(epoch, skip)
        got = [device_batch(b, torch.device("cpu")) for b in loader]
        assert len(loader) == len(got) == len(want) == 3 - skip
        for g, w in zip(got, want):
            assert g["index"].tolist() == w["index"].tolist()
            assert torch.equal(g["image"], w["image"]) and torch.equal(g["label"], w["label"])
        read = reads.take()
        if epoch == 0:
            assert read == sorted(f"decode s{i}.png" for i in range(n) for _ in range(3))  # im, gt, mask
        else:
            assert read == [], (epoch, read)
    batches.close()


def test_device_batch_passes_float_items_through():
    ds = ThinDataset(2, 64)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    out = device_batch(batch, torch.device("cpu"))
    assert torch.equal(out["image"], batch["image"]) and torch.equal(out["label"], batch["label"])


def test_ram_cache_that_does_not_fit_shared_memory_is_refused(split, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**30, 2**30 - 1000, 1000))
    ds = DisDataset(discover_split(split), size=SIZE)
    with pytest.raises(DisSamError, match=r"data.ram_cache needs .* GiB of shared memory.*data.ram_cache=false"):
        StageBatches(ds, batch_size=2, num_workers=0, seed=0, rank=0, world_size=1, ram_cache=True)


def test_training_on_uint8_items_equals_training_on_float_items(split, tmp_path):
    """The trainer on DisDataset data: the uint8 path (assembled on the device as on a GPU, or in
    the loader as on the CPU) and the float path (``data.uint8_items=false``) give bit-identical
    weights and logs."""
    from dissam.train import Trainer, load_config

    class OnDevice(Trainer):
        assemble_on_device = True

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"
    states, losses = {}, {}
    for name, uint8, trainer in (("device", True, OnDevice), ("loader", True, Trainer), ("float", False, Trainer)):
        run = tmp_path / name
        cfg = load_config(tiny, [
            f"data.train=[{split}]", f"data.valid=[{split}]", "data.size=64", f"data.uint8_items={uint8}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.prompt_dropout=[0.3, 0.3]",
            "gt_encoder.max_steps=1", "gt_encoder.valid_every=0", "schedule.max_steps=3", "schedule.valid_every=3",
            "optim.batch_size=5", "runtime.log_every=1",  # the 5 samples in one batch (BatchNorm at 1x1)
        ])
        t = trainer(cfg, run_dir=run)
        assert t.assemble_on_device == (name == "device")
        t.fit()
        states[name] = torch.load(run / "state.pt", weights_only=True)
        losses[name] = [(r.get("loss"), r.get("valid")) for r in map(__import__("json").loads,
                         (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r or "valid" in r]
    for name in ("device", "loader"):
        for key in ("refiner", "gt_encoder"):
            assert all(torch.equal(v, states["float"][key][k]) for k, v in states[name][key].items()), (name, key)
        assert losses[name] == losses["float"] and len(losses[name]) == 6  # 1 + 3 steps, 2 validations
