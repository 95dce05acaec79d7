"""Folder evaluation (``dissam eval``) and the paper's benchmark tables.

- :func:`evaluate_folders`: one prediction folder against one ground-truth folder, paired by file
  name stem, read as ``cv2.imread(path, IMREAD_GRAYSCALE)`` does (the official driver; EXIF
  orientation applied), optionally over several processes; numbers from :mod:`dissam.metrics`.
- :func:`evaluate_table`: ``PRED_ROOT/<method>/<split>/*`` against ``GT_ROOT/<split>/gt/*`` for
  several methods and splits, plus the paper's "DIS-TE(1-4)" column (mean of the four test splits'
  aggregates).
- :func:`dissam.evaluation_tables.format_table`: any ``results[method][split] -> {metric: value}`` as Markdown and CSV in
  the paper's layout (rows: metrics grouped by split; columns: methods).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dissam.errors import DatasetError, DisSamError, ImageReadError
from dissam.io import list_images
from dissam.metrics import ALL_METRICS, ImageMetrics, MetricSuite, check_metrics
from dissam.utils import library_versions

logger = logging.getLogger(__name__)

TEST_SPLITS = ("DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
TEST_MEAN = "DIS-TE(1-4)"
_LIST_LIMIT = 20  # names listed in an error message


# --------------------------------------------------------------------------------------------
# reading and pairing


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """``HxW`` uint8 map of an image file, like ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` (colour
    is converted to luminance, EXIF orientation is applied, 16-bit is scaled to 8-bit), but
    working with any file name. Raises ImageReadError if the file cannot be decoded."""
    import cv2

    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc}") from exc
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
    if img is None:
        raise ImageReadError(f"cannot decode {path}: not an image, or a truncated/corrupt file")
    return img


def _names(items: Sequence[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def _images_by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{what} folder {folder} does not exist")
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{what} folder {folder} holds no image files (.png, .jpg, ...)")
    by_stem: dict[str, Path] = {}
    dupes = []
    for f in files:
        if f.stem in by_stem:
            dupes.append(f"{by_stem[f.stem].name}/{f.name}")
        by_stem[f.stem] = f
    if dupes:
        raise DatasetError(
            f"{what} folder {folder} has several files with the same name stem: {_names(dupes)}"
        )
    return by_stem


def pair_files(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``[(name, pred_path, gt_path)]`` sorted by name, pairing files by name stem
    (``a.png`` with ``a.jpg`` too). Every prediction needs a ground truth and vice versa: anything
    unpaired raises DatasetError naming the files, so that no image is silently left out."""
    preds = _images_by_stem(Path(pred_dir), "prediction")
    gts = _images_by_stem(Path(gt_dir), "ground-truth")
    no_gt = sorted(preds.keys() - gts.keys())
    no_pred = sorted(gts.keys() - preds.keys())
    if no_gt or no_pred:
        msg = [f"predictions in {pred_dir} and ground truths in {gt_dir} do not pair up (by name stem)"]
        if no_gt:
            msg.append(
                f"{len(no_gt)} prediction(s) without ground truth: {_names(preds[s].name for s in no_gt)}"
            )
        if no_pred:
            msg.append(
                f"{len(no_pred)} ground truth(s) without prediction: {_names(gts[s].name for s in no_pred)}"
            )
        raise DatasetError("; ".join(msg))
    return [(preds[s].name, preds[s], gts[s]) for s in sorted(preds)]


def default_skeleton_cache_dir() -> Path:
    """``$DISSAM_CACHE/gt-skeletons``, else ``$XDG_CACHE_HOME/dissam/gt-skeletons``, else
    ``~/.cache/dissam/gt-skeletons``."""
    if os.environ.get("DISSAM_CACHE"):
        return Path(os.environ["DISSAM_CACHE"]) / "gt-skeletons"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dissam" / "gt-skeletons"


# --------------------------------------------------------------------------------------------
# one folder


_WORKER_COMPUTER: ImageMetrics | None = None


def _init_worker(metrics: tuple[str, ...], skeleton_cache) -> None:
    import cv2

    global _WORKER_COMPUTER
    cv2.setNumThreads(1)  # the parallelism is over images
    _WORKER_COMPUTER = ImageMetrics(metrics, skeleton_cache)


def _evaluate_pair(job: tuple[str, Path, Path], computer: ImageMetrics | None = None):
    """-> ("ok", ImageResult, warning | None) or ("error", name, message)."""
    import cv2

    name, pred_path, gt_path = job
    computer = computer or _WORKER_COMPUTER
    try:
        pred = read_gray(pred_path)
        gt = read_gray(gt_path)
    except ImageReadError as exc:
        return ("error", name, str(exc))
    warning = None
    if pred.shape != gt.shape:
        warning = (
            f"{name}: prediction is {pred.shape[1]}x{pred.shape[0]} but the ground truth is "
            f"{gt.shape[1]}x{gt.shape[0]}; resized the prediction to the ground-truth size (bilinear)"
        )
        pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
    return ("ok", computer(pred, gt, name), warning)


def _mp_context():
    # workers come from a fresh interpreter, not a fork of this one: safe with threads in the
    # parent (torch, OpenCV, tqdm); the fork server imports the metric stack once for all workers
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["dissam.metrics", "dissam.evaluate"])
        return ctx
    return mp.get_context("spawn")


def _run_jobs(jobs, metrics, skeleton_cache, workers: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress, file=sys.stderr)
    try:
        if workers <= 1 or len(jobs) <= 1:
            computer = ImageMetrics(metrics, skeleton_cache)
            for job in jobs:
                yield _evaluate_pair(job, computer)
                bar.update()
        else:
            with _mp_context().Pool(
                min(workers, len(jobs)), initializer=_init_worker, initargs=(metrics, skeleton_cache)
            ) as pool:
                # imap keeps the input order, so the aggregate equals the serial one bit for bit
                for out in pool.imap(_evaluate_pair, jobs, chunksize=1):
                    yield out
                    bar.update()
    finally:
        bar.close()


def _resolve_cache(skeleton_cache, metrics):
    if "HCE" not in metrics or skeleton_cache in (None, False):
        return None
    if skeleton_cache in ("auto", True):
        return default_skeleton_cache_dir()
    return Path(skeleton_cache)


def evaluate_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    workers: int = 1,
    metrics: Sequence[str] = ALL_METRICS,
    progress: bool = True,
    skeleton_cache: str | os.PathLike | None = "auto",
) -> dict:
    """Evaluate the saved 8-bit prediction maps in ``pred_dir`` against ``gt_dir``.

    Files pair by name stem (see :func:`pair_files`). A prediction whose size differs from its
    ground truth is resized to it (bilinear) with a warning. Unreadable files raise DatasetError
    listing all of them (after the readable ones were evaluated).

    Args:
        workers: processes (1 = in this process). The aggregate is identical for any value.
        metrics: a subset of :data:`dissam.metrics.ALL_METRICS`.
        progress: show a tqdm progress bar on stderr.
        skeleton_cache: folder for HCE's ground-truth skeletons ("auto" =
            :func:`default_skeleton_cache_dir`, None = no cache).

    Returns:
        ``{"aggregate": {metric: value}, "per_image": [{"name", metric: value, ...}],
        "curves": {"thresholds", "fm", "precision", "recall", "em": lists of 256},
        "versions": library versions (OpenCV's matters for HCE), "n_images", "pred_dir",
        "gt_dir", "metrics", "warnings": [str]}``
    """
    metrics = check_metrics(metrics)
    jobs = pair_files(pred_dir, gt_dir)
    cache = _resolve_cache(skeleton_cache, metrics)
    suite = MetricSuite(metrics)
    warns, errors = [], []
    desc = f"eval {Path(pred_dir).name}"
    for out in _run_jobs(jobs, metrics, cache, workers, progress, desc):
        if out[0] == "error":
            errors.append(out[2])
            continue
        _, res, warning = out
        suite.add(res)
        if warning:
            logger.warning(warning)
            warns.append(warning)
    if errors:
        raise DatasetError(f"{len(errors)} file(s) could not be read: " + "; ".join(errors[:_LIST_LIMIT]))
    return {
        "aggregate": suite.results(),
        "per_image": suite.per_image(),
        "curves": {k: np.asarray(v).tolist() for k, v in suite.curves().items()},
        "versions": library_versions(),
        "n_images": len(jobs),
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        "metrics": list(metrics),
        "warnings": warns,
    }


# --------------------------------------------------------------------------------------------
# several methods x splits


def mean_over_splits(per_split: dict[str, dict[str, float]], splits: Sequence[str]) -> dict[str, float]:
    """Metric-wise mean of the aggregates of ``splits`` (the paper's "DIS-TE(1-4)")."""
    keys = [k for k in per_split[splits[0]] if all(k in per_split[s] for s in splits)]
    return {k: float(np.mean([per_split[s][k] for s in splits])) for k in keys}


def add_test_mean(results: dict[str, dict[str, dict]], splits: Sequence[str]) -> list[str]:
    """Add "DIS-TE(1-4)" (the metric-wise mean of the four test splits' aggregates, as the paper
    reports it) to every method of ``results`` (``{method: {split: aggregate}}``) that has all four,
    in place. Returns the table's splits: ``splits`` with the mean after the last test split when
    all four are among them."""
    out = list(splits)
    if all(s in splits for s in TEST_SPLITS):
        for per_split in results.values():
            if all(s in per_split for s in TEST_SPLITS):
                per_split[TEST_MEAN] = mean_over_splits(per_split, TEST_SPLITS)
        out.insert(max(out.index(s) for s in TEST_SPLITS) + 1, TEST_MEAN)
    return out


def evaluate_table(
    gt_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    splits: Sequence[str],
    methods: Sequence[str] | None = None,
    workers: int = 1,
    metrics: Sequence[str] = ALL_METRICS,
    progress: bool = True,
    skeleton_cache: str | os.PathLike | None = "auto",
    test_mean: bool = True,
) -> dict:
    """Evaluate ``PRED_ROOT/<method>/<split>/*`` against ``GT_ROOT/<split>/gt/*``.

    ``methods`` defaults to every sub-folder of ``pred_root``. Every (method, split) folder is
    paired before anything is computed, so a missing folder or file fails at once. When all of
    DIS-TE1..4 are among ``splits`` (and ``test_mean``), "DIS-TE(1-4)" (the metric-wise mean of
    the four aggregates, as the paper reports it) is added after them.

    Returns ``{"results": {method: {split: aggregate}}, "splits": [...], "methods": [...],
    "per_image": {method: {split: [...]}}, "curves": {method: {split: curves}}, "versions",
    "warnings"}``; ``splits`` includes the test mean when it was added.
    """
    metrics = check_metrics(metrics)
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    splits = list(dict.fromkeys(splits))
    if not splits:
        raise DisSamError("no split given (e.g. --splits DIS-VD,DIS-TE1,DIS-TE2,DIS-TE3,DIS-TE4)")
    if methods is None:
        if not pred_root.is_dir():
            raise DatasetError(f"prediction root {pred_root} does not exist")
        methods = sorted(p.name for p in pred_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not methods:
            raise DatasetError(
                f"prediction root {pred_root} has no method sub-folders (<method>/<split>/*.png)"
            )
    methods = list(dict.fromkeys(methods))
    problems = []
    for method in methods:
        for split in splits:
            try:
                pair_files(pred_root / method / split, gt_root / split / "gt")
            except DatasetError as exc:
                problems.append(f"[{method} / {split}] {exc}")
    if problems:
        raise DatasetError("the table cannot be made:\n  " + "\n  ".join(problems))

    results: dict[str, dict[str, dict]] = {}
    per_image: dict[str, dict[str, list]] = {}
    curves: dict[str, dict[str, dict]] = {}
    warns: list[str] = []
    for method in methods:
        results[method], per_image[method], curves[method] = {}, {}, {}
        for split in splits:
            out = evaluate_folders(
                pred_root / method / split,
                gt_root / split / "gt",
                workers=workers,
                metrics=metrics,
                progress=progress,
                skeleton_cache=skeleton_cache,
            )
            results[method][split] = out["aggregate"]
            per_image[method][split] = out["per_image"]
            curves[method][split] = out["curves"]
            warns += [f"[{method} / {split}] {w}" for w in out["warnings"]]
    out_splits = add_test_mean(results, splits) if test_mean else list(splits)
    return {
        "results": results,
        "splits": out_splits,
        "methods": methods,
        "per_image": per_image,
        "curves": curves,
        "versions": library_versions(),
        "warnings": warns,
    }
