"""Prediction over many images: resumable, sharded across processes, with I/O off the model's thread.

``dissam predict`` runs through :func:`predict_images` whether it is given one image or a folder.

* **Resumable.** Every output file is written atomically (a temporary file
  ``.NAME.dissam-tmp-HOST-PID``, then a rename; a run first removes the temporary files that killed
  runs left in its output folder: :func:`dissam.utils.remove_stale_temp_files`), and once all
  outputs of an image are in place a *done marker* ``OUT/.dissam-done/STEM.json`` is written
  (atomically, last). The marker records a key of everything that decides the outputs (weights,
  stage 1, size, threshold, backend, precision, the image's boxes, the output kinds). A rerun skips
  an image whose marker has the same key and whose files all exist; anything else is redone. A
  crash therefore loses at most the images in flight, and changing the model or the flags never
  silently keeps stale outputs. ``--overwrite`` redoes everything.
* **Sharded.** Under ``torchrun`` (or with ``RANK``/``WORLD_SIZE`` set by hand) each process takes
  every ``WORLD_SIZE``-th image of the sorted list (:func:`dissam.sharding.shard`) and its device
  from ``LOCAL_RANK`` (:func:`dissam.sharding.device_for_rank`). Ranks write into the same output
  folder; their images are disjoint, so their files are too.
* **The model never waits for I/O.** A reader thread decodes the next images (and resolves their
  boxes) into a small queue; a writer thread encodes and writes the PNGs of finished images. The
  main thread runs only SAM and the refiner. Both queues are bounded (memory stays flat).
* **One progress bar** for the whole job, on rank 0: its total is every image of all ranks, and it
  counts done markers on disk, so it shows the other ranks' progress too (and the images a previous
  run finished).

Outputs for box ``k`` of image ``STEM``: ``STEM_k.png`` (mask), and with the options ``STEM_k_soft.png``,
``STEM_k_cutout.png``, ``STEM_k_overlay.png``, ``STEM_k_coarse.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dissam.errors import DisSamError
from dissam.io import read_image, write_png
from dissam.points import Prompt
from dissam.sharding import dist_env, shard
from dissam.utils import atomic_write_bytes, remove_stale_temp_files
from dissam.visualize import cutout, overlay

__all__ = ["OutputOptions", "BatchSummary", "predict_images", "expected_files", "DONE_DIR", "prediction_pictures",
           "item_key", "marker_name", "marker_record", "marker_is_current"]

log = logging.getLogger("dissam.predict")

DONE_DIR = ".dissam-done"
_STOP = object()


@dataclass(frozen=True)
class OutputOptions:
    """Which files to write per box (the mask is always written)."""

    soft: bool = False
    rgba: bool = False
    overlay: bool = False
    coarse: bool = False
    estimate_fg: bool = True  # cut-outs: estimate the foreground colour under soft edges (dissam.matting)

    def suffixes(self) -> list[str]:
        return [""] + [s for s, on in (("_soft", self.soft), ("_cutout", self.rgba), ("_overlay", self.overlay),
                                       ("_coarse", self.coarse)) if on]


def prediction_pictures(image: np.ndarray, pred, options: OutputOptions) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """``[(suffix, make_picture)]`` for the files of one :class:`~dissam.predictor.Prediction` of
    ``image`` (``H x W x 3`` uint8) that ``options`` asks for, in :meth:`OutputOptions.suffixes` order;
    each ``make_picture()`` gives the uint8 array to encode as PNG (made on demand: a cut-out costs
    a foreground estimation). Every engine writes these same pictures under these same names."""
    pictures = {"": lambda: pred.mask.astype("uint8") * 255,
                "_soft": lambda: (pred.soft * 255).round().clip(0, 255).astype("uint8"),
                "_cutout": lambda: cutout(image, pred.soft, estimate_fg=options.estimate_fg),
                "_overlay": lambda: overlay(image, [pred.mask], [pred.box]),
                "_coarse": lambda: pred.coarse.astype("uint8") * 255}
    return [(suffix, pictures[suffix]) for suffix in options.suffixes()]


def write_prediction(out: Path, base: str, image: np.ndarray, pred, options: OutputOptions) -> list[str]:
    """Write the files of one :class:`~dissam.predictor.Prediction` of ``image`` (``H x W x 3``
    uint8) as ``out/BASE.png`` and the ``BASE_<kind>.png`` that ``options`` asks for, each atomically;
    returns their names."""
    names = []
    for suffix, picture in prediction_pictures(image, pred, options):
        write_png(out / f"{base}{suffix}.png", picture())
        names.append(f"{base}{suffix}.png")
    return names


def expected_files(stem: str, n_boxes: int, options: OutputOptions) -> list[str]:
    """File names written for an image with ``n_boxes`` boxes."""
    return [f"{stem}_{k}{s}.png" for k in range(n_boxes) for s in options.suffixes()]


@dataclass
class BatchSummary:
    """What one process did."""

    rank: int = 0
    total: int = 0  # images of this rank
    done: int = 0  # images predicted now
    skipped: int = 0  # images finished by an earlier run
    masks: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Item:
    path: Path
    image: np.ndarray | None = None
    boxes: np.ndarray | None = None
    key: str = ""
    error: str | None = None
    prompts: list | None = None  # point prompts (dissam.points.Prompt), when the image has clicks


def _split_prompts(found) -> tuple[np.ndarray, list | None]:
    """What ``boxes_for`` returned -> ``(N x 4 boxes, None)``, or for a list of
    :class:`~dissam.points.Prompt` ``(their boxes, NaN where a prompt has none; the prompts)``."""
    if isinstance(found, list) and found and all(isinstance(p, Prompt) for p in found):
        boxes = [p.box if p.box is not None else np.full(4, np.nan) for p in found]
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), found
    return np.asarray(found, dtype=np.float64).reshape(-1, 4), None


def marker_name(stem: str) -> str:
    """The done marker of image ``stem``, relative to the output folder (``.dissam-done/STEM.json``)."""
    return f"{DONE_DIR}/{stem}.json"


def marker_record(key: str, files: Sequence[str]) -> bytes:
    """The done marker's content: the image's key and the names of its files."""
    return json.dumps({"key": key, "files": list(files)}).encode()


def marker_is_current(raw: bytes | str | None, key: str, exists: Callable[[str], bool]) -> bool:
    """Whether a done marker's content ``raw`` (None: no marker) finishes an image with ``key``: same
    key, and every file it lists still there (``exists(name)``, names relative to the output folder)."""
    if raw is None:
        return False
    try:
        info = json.loads(raw)
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("key") == key and all(exists(f) for f in info.get("files", []))


def _marker(out: Path, stem: str) -> Path:
    return out / marker_name(stem)


def _is_done(out: Path, stem: str, key: str) -> bool:
    try:
        raw = _marker(out, stem).read_bytes()
    except OSError:
        return False
    return marker_is_current(raw, key, lambda f: (out / f).is_file())


def item_key(settings: dict, boxes: np.ndarray, options: OutputOptions, prompts: list | None = None) -> str:
    """The key of an image's outputs: a hash of everything that decides them (``settings``: weights
    and flags; the ``(N, 4)`` XYXY boxes, rounded to 1e-4 px; the output kinds; with ``prompts``
    (:class:`~dissam.points.Prompt` objects), their clicks too)."""
    content = {"settings": settings, "boxes": np.round(boxes, 4).tolist(), "outputs": options.suffixes()}
    if prompts is not None:  # only then: the keys of box-only images stay what they were
        content["points"] = [None if p.point_coords is None else
                             [np.round(p.point_coords, 4).tolist(), p.point_labels.tolist()] for p in prompts]
    blob = json.dumps(content, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def predict_images(
    predictor_factory: Callable[[], Any],
    images: Sequence[Path],
    out: str | Path,
    boxes_for: Callable[[Path, tuple[int, int]], np.ndarray],
    *,
    options: OutputOptions = OutputOptions(),
    settings: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
    env=None,
    prefetch: int = 2,
) -> BatchSummary:
    """Predict every image of this process's shard and write its outputs to ``out``.

    Args:
        predictor_factory: builds the :class:`~dissam.predictor.DisSamPredictor` (called once, after
            the shard is known to have work: a rank with nothing to do loads no model).
        images: all images of the job (every rank passes the same list; sorted by path for sharding).
        boxes_for: ``(path, (H, W)) -> (N, 4)`` XYXY boxes for an image, or a list of
            :class:`~dissam.points.Prompt` (boxes XYXY, clicks) when it has point prompts (raise
            :class:`DisSamError` for an image without prompts: it is reported and the others continue).
        settings: what decides the outputs besides the boxes (weights, flags), for the done markers.
        overwrite: redo images that an earlier run finished.
        env: a :class:`dissam.sharding.DistEnv` (default: from the environment).
        prefetch: images decoded ahead by the reader thread (and finished images queued for writing).
    Returns:
        this rank's :class:`BatchSummary`.
    """
    env = env or dist_env()
    out = Path(out)
    (out / DONE_DIR).mkdir(parents=True, exist_ok=True)
    # temporary files of a killed run (never those of a rank still writing here)
    stale = remove_stale_temp_files(out) + remove_stale_temp_files(out / DONE_DIR)
    if stale:
        log.info("removed %d temporary file(s) left in %s by an interrupted run", len(stale), out)
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems and stems[p.stem] != p:
            raise DisSamError(f"two inputs share the name {p.stem!r} ({stems[p.stem]} and {p}); outputs would collide")
        stems[p.stem] = p
    mine = shard(list(dict.fromkeys(images)), env.rank, env.world_size, key=str)
    settings = dict(settings or {})
    summary = BatchSummary(rank=env.rank, total=len(mine))
    t0 = time.perf_counter()

    read_q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    write_q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def reader() -> None:
        try:
            for path in mine:
                if stop.is_set():
                    break
                item = _Item(path)
                try:
                    item.image = read_image(path)
                    item.boxes, item.prompts = _split_prompts(boxes_for(path, item.image.shape[:2]))
                    item.key = item_key(settings, item.boxes, options, item.prompts)
                    if not overwrite and _is_done(out, path.stem, item.key):
                        item.image = None  # finished by an earlier run
                except Exception as exc:  # any unreadable input is that image's failure, not the job's
                    item.error = str(exc) if isinstance(exc, (DisSamError, OSError, ValueError)) else repr(exc)
                read_q.put(item)
        finally:
            read_q.put(_STOP)

    write_errors: list[tuple[str, str]] = []

    def writer() -> None:
        while True:
            job = write_q.get()
            if job is _STOP:
                return
            item, preds = job
            stem = item.path.stem
            try:
                files = []
                for k, pr in enumerate(preds):
                    files += write_prediction(out, f"{stem}_{k}", item.image, pr, options)
                # the marker goes last: an image is finished only once all its files are in place
                atomic_write_bytes(_marker(out, stem), marker_record(item.key, files))
            except Exception as exc:  # a dead writer would block the model thread on a full queue
                write_errors.append((str(item.path), f"writing outputs: {exc}"))
                log.error("%s: writing outputs: %s", item.path, exc)

    bar = _ProgressBar(out, len(images), env, enabled=progress) if env.is_main else None
    threads = [threading.Thread(target=reader, name="dissam-reader", daemon=True),
               threading.Thread(target=writer, name="dissam-writer", daemon=True)]
    for t in threads:
        t.start()
    predictor = None
    try:
        while True:
            item = read_q.get()
            if item is _STOP:
                break
            if item.error is not None:
                summary.failures.append((str(item.path), item.error))
                log.error("%s: %s", item.path, item.error)
                continue
            if item.image is None:
                summary.skipped += 1
                continue
            if predictor is None:
                predictor = predictor_factory()
            try:
                predictor.set_image(item.image)
                preds = (predictor.predict(prompts=item.prompts) if item.prompts is not None
                         else predictor.predict(boxes=item.boxes, box_format="xyxy"))
            except (DisSamError, ValueError) as exc:
                summary.failures.append((str(item.path), str(exc)))
                log.error("%s: %s", item.path, exc)
                continue
            write_q.put((item, preds))
            summary.done += 1
            summary.masks += len(preds)
    finally:
        stop.set()
        write_q.put(_STOP)
        for t in threads:
            # drain the reader if the loop stopped early, so that its bounded put cannot block it
            while t.name == "dissam-reader" and t.is_alive():
                try:
                    read_q.get(timeout=0.1)
                except queue.Empty:
                    pass
            t.join()
        if bar is not None:
            bar.close()
    summary.failures.extend(write_errors)
    summary.done -= len(write_errors)
    summary.seconds = time.perf_counter() - t0
    return summary


class _ProgressBar:
    """tqdm over all images of the job, advanced by counting done markers on disk (every rank's)."""

    def __init__(self, out: Path, total: int, env, enabled: bool = True, poll_s: float = 0.5):
        from tqdm import tqdm

        self.folder = out / DONE_DIR
        self.bar = tqdm(total=total, desc=f"predict{env.tag()}", unit="img", disable=not enabled or total < 2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="dissam-progress", daemon=True)
        self._thread.start()

    def _count(self) -> int:
        try:
            return sum(1 for p in self.folder.iterdir() if p.suffix == ".json")
        except OSError:
            return self.bar.n

    def _poll(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            self._update()

    def _update(self) -> None:
        n = min(self._count(), self.bar.total)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        self.bar.close()
