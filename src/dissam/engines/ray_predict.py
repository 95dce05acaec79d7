"""``dissam predict --engine ray``: the prediction job as a Ray Data pipeline.

The pipeline (one streaming Ray Data job; nothing is materialised in full)::

    from_items(paths)                      the image list, made on the driver
      -> map_batches(read_batch)           CPU tasks: boxes, done check, read bytes, decode
      -> map_batches(PredictActor)         actor pool: one predictor per actor (weights loaded once
                                           per actor), stage 1 per image, the refiner per image or
                                           across images, then the image's files and its done marker
      -> iter_batches on the driver        one small row per image: status, boxes, timings

* **The local engine's files and resume rules** (:mod:`dissam.batch_predict`): ``STEM_k.png`` and the
  ``STEM_k_<kind>.png`` that the options ask for, each written atomically, then the done marker
  ``.dissam-done/STEM.json`` with the key of the image's settings and boxes; an image whose marker has
  the same key and whose files all exist is skipped (checked in the reading task, before the image is
  read). Outputs are bit-identical to the local engine's (with ``refine_batch=0``).
* **Lost workers**: Ray restarts a dead actor and retries its batch; an image's files are the same
  whoever writes them, and its marker goes last, so a retried batch leaves each output once, whole.
* **Bad images** (unreadable, no box, a box outside the image) are the job's failure list, not fatal:
  printed, and written to ``OUT/.dissam-failures.json`` (``[{"path", "error"}]``).

The Python entry point for an existing Ray pipeline is :func:`predict_dataset` (also
:mod:`dissam.ray`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dissam.batch_predict import (
    DONE_DIR,
    OutputOptions,
    item_key,
    marker_is_current,
    marker_name,
    marker_record,
    prediction_pictures,
)
from dissam.engines.inputs import BoxSource, job_rows, stem_of, whole_image_box
from dissam.engines.ray_runtime import FaultInjection, RayOptions, actor_device, connect, set_threads
from dissam.engines.storage import Storage, is_uri, split_uri
from dissam.errors import DisSamError
from dissam.io import decode_image_bytes, encode_png
from dissam.utils import remove_stale_temp_files

__all__ = ["PredictJob", "RaySummary", "run_predict", "predict_dataset", "read_batch", "PredictActor",
           "FAILURES_FILE"]

log = logging.getLogger("dissam.ray")

FAILURES_FILE = ".dissam-failures.json"
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)
_NO_BOXES = np.zeros((0, 4), np.float64)


@dataclass(frozen=True)
class PredictJob:
    """Everything the workers need (picklable).

    Attributes:
        predictor: keyword arguments of :meth:`DisSamPredictor.from_pretrained` (``sam``, ``refiner``,
            ``model``, ``stage1``, ``size``, ``threshold``, ...), without ``device``.
        device: the device inside each actor (``None``/``"auto"``: ``cuda`` when Ray gave it a GPU).
        out: output folder (path or URI); ``None``: no files, the predictions come back as rows.
        options: which files to write per box.
        settings: what decides the outputs besides the boxes (the done markers' key).
        overwrite: redo images that an earlier run finished.
    """

    predictor: dict
    device: str | None = None
    out: str | None = None
    options: OutputOptions = OutputOptions()
    settings: dict = field(default_factory=dict)
    overwrite: bool = False


@dataclass
class RaySummary:
    """What a Ray job did (gathered on the driver)."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    boxes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0  # the job, from the image list to the last row (actors started, models loaded)
    startup_seconds: float = 0.0  # connecting to Ray (starting a local one)
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "predict": 0.0, "write": 0.0})

    def line(self, command: str = "dissam predict") -> str:
        """The final line: images, boxes, failures, images per second."""
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return (f"{command} [ray]: {self.done} image(s) predicted, {self.skipped} already done, {self.boxes} box(es), "
                f"{len(self.failures)} failure(s) in {self.seconds:.1f} s ({rate:.2f} images/s; "
                f"{self.startup_seconds:.1f} s to connect to Ray before)")

    def stages(self) -> str:
        """Seconds per image of each stage, summed over workers (``read``: reading and decoding,
        ``predict``: stage 1 and the refiner, ``write``: encoding and writing the files)."""
        n = max(1, self.done)
        return ", ".join(f"{k} {v / n:.3f} s/img" for k, v in self.stage_seconds.items())


# ---------------------------------------------------------------------------------------- workers
_STORAGES: dict[str, Storage] = {}  # per worker process: one open filesystem per folder


def _storage(folder: str) -> Storage:
    if folder not in _STORAGES:
        _STORAGES[folder] = Storage(folder)
    return _STORAGES[folder]


def _read_location(location: str) -> bytes:
    if not is_uri(location):
        return Path(location).read_bytes()
    folder, name = split_uri(location)
    return _storage(folder).read_bytes(name)


def _error_text(exc: Exception) -> str:
    return str(exc) if isinstance(exc, (DisSamError, OSError, ValueError)) else f"{type(exc).__name__}: {exc}"


def _objects(values: list) -> np.ndarray:
    """A 1-D object array of ``values`` (arrays of different shapes stay separate)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _decode(batch: dict[str, np.ndarray], i: int, location: str) -> np.ndarray:

    data = batch["bytes"][i] if "bytes" in batch else _read_location(location)
    return decode_image_bytes(bytes(data), location)


def _read_row(batch: dict[str, np.ndarray], i: int, job: PredictJob, out_store: Storage | None) -> tuple:
    """``(status, error, key, boxes, image)`` of row ``i`` (see :func:`read_batch`)."""
    location = str(batch["path"][i])
    image = _NO_IMAGE
    try:
        if "error" in batch and batch["error"][i]:
            raise DisSamError(str(batch["error"][i]))
        if "whole" in batch and batch["whole"][i]:  # --full-image-box for an image without boxes
            image = _decode(batch, i, location)
            boxes = whole_image_box(image.shape[:2])
        else:
            boxes = np.asarray([list(b) for b in batch["boxes"][i]], dtype=np.float64).reshape(-1, 4)
        key = ""
        if out_store is not None:
            key = item_key(job.settings, boxes, job.options)
            if not job.overwrite and marker_is_current(out_store.try_read(marker_name(stem_of(location))), key,
                                                        out_store.exists):
                return "skipped", "", key, boxes, _NO_IMAGE
        return "todo", "", key, boxes, image if image.size else _decode(batch, i, location)
    except Exception as exc:  # any unreadable input is that image's failure, not the job's
        return "failed", _error_text(exc), "", _NO_BOXES, _NO_IMAGE


def read_batch(batch: dict[str, np.ndarray], job: PredictJob) -> dict[str, np.ndarray]:
    """The reading task: for each row (``path``; ``boxes``, a list of XYXY boxes; optional ``bytes``,
    the encoded image; optional ``whole``, the whole image as the box; optional ``error``, a failure
    found on the driver) its boxes, its key, whether an earlier run finished it, and the decoded image
    (``H x W x 3`` uint8) if not.

    Returns the columns ``path``, ``status`` (``todo``/``skipped``/``failed``), ``error``, ``key``,
    ``boxes`` (``(N, 4)`` float64 XYXY), ``image`` and ``read_s``."""
    out_store = _storage(job.out) if job.out is not None else None
    rows, seconds = [], []
    for i in range(len(batch["path"])):
        t0 = time.perf_counter()
        rows.append(_read_row(batch, i, job, out_store))
        seconds.append(time.perf_counter() - t0)
    status, error, key, boxes, image = zip(*rows) if rows else ((),) * 5
    return {"path": np.array([str(p) for p in batch["path"]], dtype=object),
            "status": np.array(status, dtype=object), "error": np.array(error, dtype=object),
            "key": np.array(key, dtype=object), "boxes": _objects(list(boxes)), "image": _objects(list(image)),
            "read_s": np.array(seconds, dtype=np.float64)}


class PredictActor:
    """One predictor per actor: built once in ``__init__``, then called with batches of
    :func:`read_batch`'s rows. With an output folder it writes each image's files and marker and
    returns status rows; without, it returns the predictions (``masks`` and ``soft`` ``(N, H, W)``
    uint8 per image)."""

    def __init__(self, job: PredictJob, gpus: float = 0.0, threads: int = 1, refine_batch: int = 0,
                 fault_file: str | None = None):
        from dissam.predictor import DisSamPredictor  # torch: only in the actors

        set_threads(threads)
        self.job = job
        self.refine_batch = refine_batch
        self.fault = FaultInjection(fault_file or "")
        self.predictor = DisSamPredictor.from_pretrained(device=actor_device(job.device, gpus), **job.predictor)
        self.out = Storage(job.out) if job.out is not None else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from dissam.engines.batching import predict_many  # torch: only in the actors

        n = len(batch["path"])
        status = [str(s) for s in batch["status"]]
        error = [str(e) for e in batch["error"]]
        todo = [i for i in range(n) if status[i] == "todo"]
        t0 = time.perf_counter()
        results = predict_many(self.predictor, [batch["image"][i] for i in todo],
                               [np.asarray(batch["boxes"][i], dtype=np.float64).reshape(-1, 4) for i in todo],
                               self.refine_batch)
        predict_s = time.perf_counter() - t0
        self.fault.maybe_die()  # the test hook: a worker lost with a batch in flight
        n_boxes = [0] * n
        masks: list[np.ndarray] = [np.zeros((0, 0, 0), np.uint8)] * n
        soft: list[np.ndarray] = [np.zeros((0, 0, 0), np.uint8)] * n
        t1 = time.perf_counter()
        for i, res in zip(todo, results, strict=True):
            if isinstance(res, Exception):
                status[i], error[i] = "failed", _error_text(res)
                continue
            try:
                if self.out is not None:
                    self._write(str(batch["path"][i]), str(batch["key"][i]), batch["image"][i], res)
                else:
                    masks[i] = np.stack([p.mask.astype(np.uint8) * 255 for p in res])
                    soft[i] = np.stack([(p.soft * 255).round().clip(0, 255).astype(np.uint8) for p in res])
                status[i], n_boxes[i] = "done", len(res)
            except Exception as exc:  # a write that fails is that image's failure
                status[i], error[i] = "failed", f"writing outputs: {_error_text(exc)}"
        write_s = time.perf_counter() - t1
        share = 1.0 / max(1, len(todo))
        rows = {"path": batch["path"], "status": np.array(status, dtype=object),
                "error": np.array(error, dtype=object), "boxes": np.array(n_boxes, dtype=np.int64),
                "read_s": batch["read_s"],
                "predict_s": np.array([predict_s * share if i in todo else 0.0 for i in range(n)]),
                "write_s": np.array([write_s * share if i in todo else 0.0 for i in range(n)])}
        if self.out is None:
            rows.update(masks=_objects(masks), soft=_objects(soft), box_xyxy=batch["boxes"])
        return rows

    def _write(self, location: str, key: str, image: np.ndarray, preds: list) -> None:
        """An image's files (the local engine's names and bytes), each atomically, then its marker."""

        stem = stem_of(location)
        files = []
        for k, pred in enumerate(preds):
            for suffix, picture in prediction_pictures(image, pred, self.job.options):
                name = f"{stem}_{k}{suffix}.png"
                self.out.write_bytes(name, encode_png(picture()))
                files.append(name)
        self.out.write_bytes(marker_name(stem), marker_record(key, files))


# ---------------------------------------------------------------------------------------- driver
def _pipeline(ray, ds, job: PredictJob, opts: RayOptions):
    """``ds`` (rows with ``path``, optional ``bytes`` and ``boxes``) through reading and the actors."""
    gpus = opts.gpus(ray, job.device)
    ds = ds.map_batches(read_batch, fn_kwargs={"job": job}, **opts.read_args())
    return ds.map_batches(PredictActor, compute=ray.data.ActorPoolStrategy(size=opts.actors), fn_constructor_kwargs={
        "job": job, "gpus": gpus, "threads": opts.threads, "refine_batch": opts.refine_batch,
        "fault_file": FaultInjection().flag_file}, **opts.actor_args(ray, job.device))


def run_predict(paths: list[str], boxes: BoxSource, job: PredictJob, opts: RayOptions,
                progress: bool = True) -> RaySummary:
    """Predict every image of ``paths`` (paths or URIs; :func:`dissam.engines.inputs.expand_inputs`)
    with the boxes ``boxes`` gives them (looked up on the driver: each row carries its own boxes, so
    the prompts file is never shipped to the workers) into ``job.out`` on Ray; returns the job's
    :class:`RaySummary` and writes its failure list."""
    if job.out is None:
        raise DisSamError("run_predict writes files: give the job an output folder")
    t_start = time.perf_counter()
    ray = connect(opts.address)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = progress
    out = Storage(job.out)
    out.make_folder()
    if out.local is not None:  # a killed run's temporary files, as the local engine removes them
        stale = remove_stale_temp_files(out.local) + remove_stale_temp_files(out.local / DONE_DIR)
        if stale:
            log.info("removed %d temporary file(s) left in %s by an interrupted run", len(stale), out.local)
    t0 = time.perf_counter()
    summary = RaySummary(total=len(paths), startup_seconds=t0 - t_start)
    if paths:
        ds = ray.data.from_items(job_rows(paths, boxes),
                                 override_num_blocks=max(1, min(len(paths), 4 * opts.actors * 4)))
        for rows in _pipeline(ray, ds, job, opts).iter_batches(batch_size=None, batch_format="numpy"):
            _count(summary, rows)
    summary.seconds = time.perf_counter() - t0
    if summary.failures:
        out.write_bytes(FAILURES_FILE, json.dumps([{"path": p, "error": e} for p, e in summary.failures],
                                                  indent=1).encode())
    else:
        out.delete(FAILURES_FILE)
    return summary


def _count(summary: RaySummary, rows: dict[str, np.ndarray]) -> None:
    for i in range(len(rows["path"])):
        status = str(rows["status"][i])
        if status == "done":
            summary.done += 1
            summary.boxes += int(rows["boxes"][i])
        elif status == "skipped":
            summary.skipped += 1
        else:
            summary.failures.append((str(rows["path"][i]), str(rows["error"][i])))
            log.error("%s: %s", rows["path"][i], rows["error"][i])
    for stage in ("read", "predict", "write"):
        summary.stage_seconds[stage] += float(np.sum(rows[f"{stage}_s"]))


def predict_dataset(ds, *, out: str | None = None, options: OutputOptions = OutputOptions(), device: str | None = None, overwrite: bool = False,
                    settings: dict | None = None, actors: int = 1, gpus_per_actor: float | None = None,
                    cpus_per_actor: float = 1.0, batch_size: int = 4, read_cpus: float = 1.0,
                    refine_batch: int = 0, **predictor: Any):
    """DIS-SAM over a ``ray.data.Dataset`` you already have; returns a ``ray.data.Dataset`` (lazy, one
    row per input row).

    Input rows: ``path`` (a path or URI; read when there is no ``bytes``, and its stem names the
    outputs), optionally ``bytes`` (the encoded image, e.g. from ``ray.data.read_binary_files(...,
    include_paths=True)``), and ``boxes`` (a list of ``[x0, y0, x1, y1]`` pixels of the image, ``(x1,
    y1)`` inclusive).

    Output rows: ``path``, ``status`` (``done``/``failed``, and ``skipped`` when an output folder holds
    the image already), ``error``, ``boxes`` (how many), per-stage seconds (``read_s``, ``predict_s``,
    ``write_s``); without ``out`` also ``masks`` and ``soft`` (``(N, H, W)`` uint8: the binary masks
    as 0/255 and the soft maps x255, rounded) and ``box_xyxy`` (``(N, 4)``, the boxes used).
    With ``out`` (a path or URI) the files, markers and resume rules are those of ``dissam predict``.

    ``**predictor`` are :meth:`DisSamPredictor.from_pretrained` arguments (``sam``, ``refiner``,
    ``model``, ``stage1``, ``size``, ``threshold``, ...); the other arguments are :class:`RayOptions`.
    Example::

        ds = ray.data.read_binary_files("s3://shop/photos/", include_paths=True)
        ds = ds.map(lambda r: {**r, "boxes": [[0, 0, 511, 511]]})
        preds = dissam.ray.predict_dataset(ds, model="dis-sam", out="s3://shop/masks/", gpus_per_actor=1)
        preds.materialize()
    """
    ray = connect(None)
    opts = RayOptions(actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor,
                      batch_size=batch_size, read_cpus=read_cpus, refine_batch=refine_batch)
    job = PredictJob(predictor=dict(predictor), device=device, out=out, options=options,
                     settings=dict(settings or {k: str(v) for k, v in predictor.items()}), overwrite=overwrite)
    if out is not None:
        Storage(out).make_folder()
    return _pipeline(ray, ds, job, opts)
