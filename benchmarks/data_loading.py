"""The training data path at the paper's size: items per second before and after the uint8 path.

Writes N random-content JPEG images (H x W) with GT and mask PNGs to a temporary split, then:

* ``items``: one process, ``DisDataset(size=S)[i]`` over all items: a cold pass without cache, a pass
  filling the cache, a pass reading it; and the uint8 item (``raw_item``) + its assembly
  (``assemble_u8``) from the cache.
* ``loader`` (default): the training loader of a stage over E epochs with W workers and batch B,
  each variant in its own process (for its peak RSS), side by side in one run:

  - ``before``: the code of commit ``--before-ref`` (``DisDataset`` float items; the loader rebuilt
    every epoch, so every worker finds its cache keys by hashing the original files again);
  - ``after, CPU run``: ``dissam.train.datapath.StageBatches`` as the trainer builds it for CPU
    training (persistent workers, cache keys hashed once in the main process, the workers assemble
    the float items);
  - ``after``: the same as for GPU training: workers return uint8 items (assembled on the GPU by
    ``device_batch``; here that part is timed apart, on the CPU);
  - ``after+ram``: ``after`` with ``data.ram_cache`` (items kept in shared memory after epoch 0).

  Epoch 0 decodes, resizes and fills the disk cache; later epochs read it. Rates are items per
  second of the main loop taking the batches as the workers deliver them (float items for
  ``before`` and ``after, CPU run``; uint8 items for ``after`` and ``after+ram``, whose assembly a
  GPU does: it is timed apart on up to 4 of the batches, on the CPU). Peak RSS of the main process
  and of the largest worker.

Usage::

    .venv/bin/python benchmarks/data_loading.py --n 16 --epochs 3 --workers 2 --batch 2 --repeat 2
    .venv/bin/python benchmarks/data_loading.py --mode items --n 16 --repeat 3

Writes benchmarks/results/data_loading_loader.json or data_loading_items.json (``--out``: elsewhere)
with the table ``loader`` or ``items``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_io import markdown_table, save

from dissam.data.dataset import DisDataset, assemble_u8
from dissam.data.layout import discover_split
from dissam.io import write_png

VARIANTS = ("before", "after, CPU run", "after", "after+ram")
VARIANT_LABELS = {"before": "before (float items, loader rebuilt each epoch)",
                  "after, CPU run": "after, CPU run (the workers assemble)",
                  "after": "after, GPU run (uint8 batches as delivered)", "after+ram": "after + `data.ram_cache`"}
ITEM_PASSES = {
    "before_cache": "before: float item from the cache (box map, assembly and flip in the worker)",
    "no_cache": "float item, no cache (decode + three resizes)",
    "cache_fill": "float item, cache first pass (the same + an atomic write)",
    "cache_read": "now: float item from the cache (the box map is cached)",
    "u8_read": "now: uint8 item from the cache (what a worker returns for a GPU run)",
    "u8_assembly": "assembly of a uint8 item: flip, normalise, label (a GPU's part; here on one core)",
}


def write_split(root: Path, n: int, h: int, w: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "im").mkdir(parents=True)
    for i in range(n):
        base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
        Image.fromarray(img).save(root / "im" / f"x{i}.jpg", quality=92)
        gt = np.zeros((h, w), np.uint8)
        gt[h // 4 : 3 * h // 4, w // 5 : 4 * w // 5] = 255
        write_png(root / "gt" / f"x{i}.png", gt)
        write_png(root / "mask" / f"x{i}.png", gt)
    return root


def item_passes(a, split: Path, cache: Path) -> dict[str, float]:
    """Seconds per item of each pass of ``ITEM_PASSES`` over the split, with a fresh ``cache``."""
    samples = discover_split(split, require_masks=True)
    sec = {}
    for key, cache_dir in (("no_cache", None), ("cache_fill", cache), ("cache_read", cache)):
        ds = DisDataset(samples, size=a.size, cache_dir=cache_dir, augment=True)
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        sec[key] = (time.perf_counter() - t) / len(ds)
    ds = DisDataset(samples, size=a.size, cache_dir=cache, augment=True)
    t = time.perf_counter()
    raws = [ds.raw_item(i) for i in range(len(ds))]
    sec["u8_read"] = (time.perf_counter() - t) / len(ds)
    t = time.perf_counter()
    for r in raws:
        assemble_u8(r["u8"][None], [r["flip"]], r["drop"][None])
    sec["u8_assembly"] = (time.perf_counter() - t) / len(ds)
    before = before_dataset_class(a.before_ref)(samples, size=a.size, cache_dir=cache, augment=True)
    t = time.perf_counter()
    for i in range(len(before)):
        before[i]
    sec["before_cache"] = (time.perf_counter() - t) / len(before)
    return sec


def items_mode(a, split: Path, tmp: Path) -> None:
    torch.set_num_threads(a.threads)
    runs = [item_passes(a, split, tmp / f"c{k}") for k in range(a.repeat)]
    ms = {key: [1000 * r[key] for r in runs] for key in ITEM_PASSES}
    med = {key: statistics.median(v) for key, v in ms.items()}
    rows = [[label, f"{med[key]:.0f}" + (f" ({', '.join(f'{v:.0f}' for v in ms[key])})" if a.repeat > 1 else "")]
            for key, label in ITEM_PASSES.items()]
    results = {"n": a.n, "hw": list(a.hw), "size": a.size, "threads": a.threads, "repeat": a.repeat,
               "before_ref": a.before_ref, "ms_per_item": ms, "median_ms": med,
               "worker_saving_gpu_run": med["before_cache"] / med["u8_read"],
               "worker_saving_cpu_run": med["before_cache"] / med["cache_read"]}
    runs_note = f"the median of {a.repeat} runs, the runs in brackets" if a.repeat > 1 else "one run"
    save("data_loading_items", results, {"items": markdown_table(["pass", "ms per item"], rows)}, out=a.out,
         notes=f"{a.n} JPEG images {a.hw[1]}x{a.hw[0]} with GT and mask PNGs -> {a.size}², one process, "
               f"{a.threads} torch thread(s), {runs_note}; before = DisDataset of commit {a.before_ref}")


def before_dataset_class(ref: str):
    """``DisDataset`` as it was at commit ``ref`` (read with git, imported from a temporary file)."""
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    code = subprocess.run(
        ["git", "-C", str(repo), "show", f"{ref}:src/dissam/data/dataset.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "dataset_before.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("dataset_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DisDataset


def run_variant(a, split: Path, cache: Path) -> dict:
    """One variant's epochs in this process: seconds per epoch and peak RSS."""
    from dissam.train.datapath import StageBatches, device_batch, share_file_digests
    from dissam.train.datasets import train_loader
    from dissam.train.distributed import DistInfo

    torch.set_num_threads(a.threads)
    samples = discover_split(split, require_masks=True)
    cpu = torch.device("cpu")
    times, assembly = [], []
    if a.variant == "before":
        ds = before_dataset_class(a.before_ref)(samples, size=a.size, cache_dir=cache, augment=True)
        for epoch in range(a.epochs):
            t = time.perf_counter()
            for b in train_loader(ds, batch_size=a.batch, num_workers=a.workers, seed=0, epoch=epoch, skip_batches=0):
                b["image"].sum()  # touch the batch, as the loss would
            times.append(time.perf_counter() - t)
            assembly.append(0.0)  # done in the workers
    else:
        ds = DisDataset(samples, size=a.size, cache_dir=cache, augment=True)
        t0 = time.perf_counter()
        share_file_digests([ds], DistInfo())
        digest_s = time.perf_counter() - t0
        batches = StageBatches(ds, batch_size=a.batch, num_workers=a.workers, seed=0, rank=0, world_size=1,
                               ram_cache=a.variant == "after+ram", assemble_in_workers=a.variant == "after, CPU run")
        kept = []
        for epoch in range(a.epochs):
            t = time.perf_counter() - (digest_s if epoch == 0 else 0.0)
            for b in batches.epoch(epoch, 0):
                key = "image" if "image" in b else "u8"
                b[key].sum()  # touch the batch as delivered
                if key == "u8" and len(kept) < 4:
                    kept.append(b)
            times.append(time.perf_counter() - t)
        batches.close()
        # the assembly of uint8 batches (a GPU does it), timed apart so that it does not overlap the workers
        if kept:
            device_batch(kept[0], cpu)  # a first call pays one-time costs of the ops
        t = time.perf_counter()
        for b in kept:
            device_batch(b, cpu)["image"].sum()
        per_item = (time.perf_counter() - t) / max(1, sum(len(b["index"]) for b in kept))
        assembly = [per_item] if kept else [0.0]
    return {
        "epoch_s": times,
        "assembly_s": assembly,
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def loader_mode(a, split: Path, tmp: Path) -> None:
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for rep in range(a.repeat):
        for v in VARIANTS:  # interleaved, so that a change of machine load hits every variant
            cache = tmp / f"cache-{v}-{rep}"
            cmd = [sys.executable, __file__, "--variant", v, "--split", str(split), "--cache", str(cache),
                   "--size", str(a.size), "--epochs", str(a.epochs), "--workers", str(a.workers),
                   "--batch", str(a.batch), "--before-ref", a.before_ref, "--threads", str(a.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[v].append(json.loads(out.strip().splitlines()[-1]))
    n = a.n
    table, summary = [], {}
    for v in VARIANTS:
        rs = results[v]
        first = statistics.median(n / r["epoch_s"][0] for r in rs)
        later = statistics.median(n * (a.epochs - 1) / sum(r["epoch_s"][1:]) for r in rs)
        asm = statistics.median(1000 * r["assembly_s"][0] for r in rs)
        rss_m = max(r["rss_main_mb"] for r in rs)
        rss_w = max(r["rss_worker_mb"] for r in rs)
        summary[v] = {"epoch0_items_per_s": first, "later_items_per_s": later, "assembly_ms": asm,
                      "rss_main_mb": rss_m, "rss_worker_mb": rss_w, "runs": rs}
        table.append([VARIANT_LABELS[v], f"{first:.2f}", f"{later:.2f}", f"{asm:.1f}" if asm else "– (in the workers)",
                      f"{rss_m:.0f}", f"{rss_w:.0f}"])
    speedups = {v.replace(", ", "_").replace(" ", "_").replace("+", "_"):
                summary[v]["later_items_per_s"] / summary["before"]["later_items_per_s"] for v in VARIANTS[1:]}
    header = ["variant", "epoch 0 items/s (decode, resize, cache fill)", "later epochs items/s",
              "assembly of a uint8 item in the main process, ms", "peak RSS main MiB", "peak RSS largest worker MiB"]
    save("data_loading_loader", {"n": n, "hw": list(a.hw), "size": a.size, "epochs": a.epochs, "workers": a.workers,
                                 "batch": a.batch, "repeat": a.repeat, "threads": a.threads,
                                 "before_ref": a.before_ref, "variants": summary, "later_speedup_vs_before": speedups},
         {"loader": markdown_table(header, table)}, out=a.out,
         notes=f"{n} JPEG images {a.hw[1]}x{a.hw[0]} with GT and mask PNGs -> {a.size}², {a.epochs} epochs, "
               f"{a.workers} workers, batch {a.batch}, disk cache, flips on; main process {a.threads} thread(s); "
               f"each variant in its own process, median of {a.repeat} interleaved rounds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("loader", "items"), default="loader")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--hw", type=int, nargs=2, default=(1080, 1620))
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    # torch threads of the main process (workers use 1): on a shared machine more threads stall each
    # small op at OpenMP barriers whenever one of them is preempted
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--before-ref", default="be74b1e", help="the commit whose DisDataset is 'before'")
    ap.add_argument("--out", help="the results file (default benchmarks/results/data_loading_MODE.json)")
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in a subprocess
    ap.add_argument("--split", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        print(json.dumps(run_variant(a, Path(a.split), Path(a.cache))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        split = write_split(Path(tmp) / "S", a.n, *a.hw)
        (items_mode if a.mode == "items" else loader_mode)(a, split, Path(tmp))


if __name__ == "__main__":
    main()
