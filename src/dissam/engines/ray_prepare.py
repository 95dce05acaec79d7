"""``dissam prepare-masks --engine ray``: stage-1 masks of a data set on Ray Data.

The same work as :func:`dissam.data.prepare.prepare_masks`, split in its two halves: CPU tasks find
what each image misses, read its ground truth and image (:func:`~dissam.data.prepare.load_one`); an
actor pool holds stage 1 (loaded once per actor) and writes the masks
(:func:`~dissam.data.prepare.segment_one`). Same files (``SPLIT/mask/<stem>.png``, with ``--enrich``
``SPLIT/mask_comp/<stem>_comp_<k>.png`` and the manifest, written on the driver at the end), same
resume rule (a mask that exists is not recomputed; an image whose masks all exist is not read), each
file written atomically. A failed image is reported and the others go on; a lost actor is restarted
and its batch retried by Ray. The data set is read and written where it is: a local or shared
filesystem that every node sees.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dissam.data.layout import Sample, discover_split
from dissam.data.prepare import PrepareReport, load_one, segment_one, split_dirs, write_manifests
from dissam.engines.ray_runtime import FaultInjection, RayOptions, actor_device, connect, set_threads
from dissam.errors import DatasetError, ImageReadError

__all__ = ["prepare_masks_ray"]

_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


def _sample(row: dict[str, Any], i: int) -> tuple[Path, Sample]:
    return Path(row["split"][i]), Sample(name=str(row["name"][i]), image=Path(row["image"][i]), gt=Path(row["gt"][i]))


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def load_batch(batch: dict[str, np.ndarray], enrich: bool) -> dict[str, np.ndarray]:
    """CPU task: per image its missing masks (``targets``, ``boxes``) and its decoded ``image``, or its
    failure; ``written``/``skipped``/``empty`` count what this half did."""
    cols: dict[str, list] = {k: [] for k in ("image_path", "status", "error", "targets", "boxes", "image",
                                             "written", "empty", "read_s")}
    for i in range(len(batch["name"])):
        t0 = time.perf_counter()
        split, s = _sample(batch, i)
        rep = PrepareReport()
        status, error, targets, boxes, image = "skipped", "", [], np.zeros((0, 4)), _NO_IMAGE
        try:
            loaded = load_one(split, s, enrich, rep)
            if loaded is not None:
                image, todo = loaded
                targets = [str(p) for p in todo]
                boxes = np.asarray([list(b) for b in todo.values()], dtype=np.float64).reshape(-1, 4)
                status = "todo"
            elif not rep.skipped:
                status = "done"  # an empty GT: its all-zero mask was written here
        except (ImageReadError, DatasetError, OSError) as exc:
            status, error = "failed", str(exc)
        for k, v in (("image_path", str(s.image)), ("status", status), ("error", error), ("targets", targets),
                     ("boxes", boxes), ("image", image), ("written", [str(p) for p in rep.written]),
                     ("empty", list(rep.empty_gt)), ("read_s", time.perf_counter() - t0)):
            cols[k].append(v)
    return {k: (_objects(v) if k in ("targets", "boxes", "image", "written", "empty") else np.array(v))
            for k, v in cols.items()}


class MaskActor:
    """Stage 1 loaded once per actor; writes the masks of each image of a batch."""

    def __init__(self, stage1: str | None, sam: Any, device: str | None, gpus: float, selection: str,
                 threads: int = 1, fault_file: str | None = None):
        from dissam.stages.registry import load_stage1, resolve_stage  # torch: only in the actors

        set_threads(threads)
        self.stage = load_stage1(resolve_stage(stage1, sam), sam, actor_device(device, gpus))
        self.selection = selection
        self.fault = FaultInjection(fault_file or "")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["status"])
        status, error = [str(s) for s in batch["status"]], [str(e) for e in batch["error"]]
        written = [list(w) for w in batch["written"]]
        encoded = [0] * n
        self.fault.maybe_die()
        t0 = time.perf_counter()
        for i in range(n):
            if status[i] != "todo":
                continue
            rep = PrepareReport()
            todo = {Path(t): b for t, b in zip(batch["targets"][i], np.asarray(batch["boxes"][i]), strict=True)}
            try:
                segment_one(self.stage, batch["image"][i], todo, self.selection, rep)
                status[i], encoded[i] = "done", rep.encoded
                written[i] += [str(p) for p in rep.written]
            except (ImageReadError, DatasetError, OSError, ValueError) as exc:
                status[i], error[i] = "failed", str(exc)
        seconds = (time.perf_counter() - t0) / max(1, n)
        return {"image_path": batch["image_path"], "status": np.array(status), "error": np.array(error),
                "written": _objects(written), "empty": batch["empty"], "encoded": np.array(encoded),
                "read_s": batch["read_s"], "predict_s": np.full(n, seconds)}


def prepare_masks_ray(dataset_dir: str | os.PathLike, sam: Any, opts: RayOptions, *, enrich: bool = False,
                      stage1: str | None = None, selection: str = "first", device: str | None = "auto",
                      progress: bool = True) -> tuple[PrepareReport, float]:
    """:func:`dissam.data.prepare.prepare_masks` on Ray; returns ``(report of the whole job, seconds)``."""
    from dissam.stages.registry import log_offline_default, resolve_stage

    ray = connect(opts.address)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = progress
    if stage1 in (None, "auto") and sam is None:
        log_offline_default(resolve_stage(stage1, sam))
    splits = split_dirs(dataset_dir)
    rows = [{"split": str(sp), "name": s.name, "image": str(s.image), "gt": str(s.gt)}
            for sp in splits for s in discover_split(sp, require_gt=True)]
    rep = PrepareReport(images=len(rows))
    t0 = time.perf_counter()
    if rows:
        gpus = opts.gpus(ray, device)
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 16 * opts.actors)))
        ds = ds.map_batches(load_batch, fn_kwargs={"enrich": enrich}, **opts.read_args())
        ds = ds.map_batches(MaskActor, compute=ray.data.ActorPoolStrategy(size=opts.actors), fn_constructor_kwargs={
            "stage1": stage1, "sam": None if sam is None else str(sam), "device": device, "gpus": gpus,
            "selection": selection, "threads": opts.threads, "fault_file": FaultInjection().flag_file},
            **opts.actor_args(ray, device))
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(out["status"])):
                status = str(out["status"][i])
                rep.written += [Path(p) for p in out["written"][i]]
                rep.empty_gt += list(out["empty"][i])
                rep.encoded += int(out["encoded"][i])
                if status == "skipped":
                    rep.skipped += 1
                elif status == "failed":
                    rep.failed.append((str(out["image_path"][i]), str(out["error"][i])))
    if enrich:
        write_manifests(splits, rep)
    return rep, time.perf_counter() - t0
