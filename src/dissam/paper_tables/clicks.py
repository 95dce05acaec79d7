"""``dissam clicks``: the click simulation of :mod:`dissam.clicks` over a data set with ground truth.

Images are read as the benchmark reads them (``ROOT/<split>/{im,gt}``, :func:`split_items`); a folder
that itself holds ``im/`` and ``gt/`` (what ``dissam synth`` writes) is one split. Each case starts
from the benchmark's prompt box (:func:`whole_gt_box`: the paper's whole-GT box) or, with
``start="none"``, from nothing (clicks only, the first click then lands in the object), and clicks
are simulated on the final binary mask (threshold 0.5) of the whole pipeline (stage 1 + refiner).

Outputs (resumable: a case whose file holds the same settings key is not run again):

* ``RUN_DIR/clicks/<split>/<stem>.json``: the clicks, the IoU after each click (refined and stage 1's
  coarse mask), the seconds of each prediction;
* ``RUN_DIR/clicks.json`` and ``RUN_DIR/clicks.md``: per split and over all cases NoC@85, NoC@90,
  the cases that never reach them (NoF), IoU after 0 (the box alone), 1, 3 and 5 clicks, the same
  for the coarse mask, and the median seconds per click (stage 1's decoder on the kept embedding +
  the refiner).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dissam.clicks import (
    IOU_AT,
    MAX_CLICKS,
    MIN_CLICKS,
    NOC_THRESHOLDS,
    STOP_IOU,
    ClickTrace,
    simulate,
    summarize,
)
from dissam.errors import DisSamError
from dissam.io import read_image, read_mask
from dissam.paper_tables.protocol import Item, discover_splits, split_items, whole_gt_box
from dissam.points import make_prompt
from dissam.utils import atomic_write_bytes

__all__ = ["ClicksConfig", "run_clicks", "resolve_data", "click_segmenter", "summary_table"]

START_MODES = ("box", "none")


@dataclass
class ClicksConfig:
    """Settings of a click simulation run (``dissam clicks --help``)."""

    data: str
    run_dir: str
    splits: list[str] | None = None
    sam: str | None = None
    stage1: str | None = None
    refiner: str | None = None
    model: str | None = None
    size: int | None = None
    device: str | None = None
    start: str = "box"
    max_clicks: int = MAX_CLICKS
    stop_iou: float = STOP_IOU
    min_clicks: int = MIN_CLICKS
    mask_input: bool = True
    point_selection: str = "auto"
    limit: int | None = None
    progress: bool = True
    overwrite: bool = False

    def key(self) -> str:
        """What decides a case's result (weights, stage 1, protocol), hashed."""
        fields = {k: v for k, v in asdict(self).items()
                  if k not in ("data", "run_dir", "splits", "device", "limit", "progress", "overwrite")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def resolve_data(data: str | Path, splits: list[str] | None) -> tuple[Path, list[str]]:
    """``(root, splits)``: a folder with ``im/`` and ``gt/`` is one split of its parent; otherwise the
    benchmark's rule (:func:`discover_splits`)."""
    root = Path(data)
    if not splits and (root / "im").is_dir() and (root / "gt").is_dir():
        return root.resolve().parent, [root.resolve().name]
    return root, discover_splits(root, splits)


def click_segmenter(predictor, box: np.ndarray | None, mask_input: bool = True):
    """A :data:`dissam.clicks.Segmenter` on ``predictor`` (its image set): the start ``box`` (or none)
    plus the clicks, and the previous step's low-resolution logits as ``mask_input`` (SAM-like stages;
    ``mask_input=False`` leaves them out)."""
    def segment(coords: np.ndarray, labels: np.ndarray, previous):
        prompt = make_prompt(box, coords if len(coords) else None, labels if len(labels) else None,
                             previous if mask_input else None)
        pred = predictor.predict(prompts=[prompt])[0]
        return pred.mask, pred.coarse, pred.low_res_logits

    return segment


def _case_path(run_dir: Path, item: Item) -> Path:
    return run_dir / "clicks" / item.split / f"{item.stem}.json"


def _load_done(path: Path, key: str) -> ClickTrace | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return ClickTrace.from_json(data["trace"]) if data.get("key") == key else None


def _median_click_seconds(traces: list[ClickTrace], start: bool) -> float | None:
    clicks = [s for t in traces for s in (t.seconds[1:] if start else t.seconds)]
    return float(np.median(clicks)) if clicks else None


def run_clicks(cfg: ClicksConfig, predictor=None) -> dict:
    """Simulate clicks on every case of ``cfg``'s splits and write the per-case files and the summary.

    ``predictor``: a :class:`~dissam.predictor.DisSamPredictor` to use (default: built from ``cfg``'s
    weights on the first case that has to run). Returns ``{"summary": {split | "all": {...}},
    "failures": [...], "computed": n, "reused": n}``."""
    from tqdm.auto import tqdm  # progress bars only where a run happens

    if cfg.start not in START_MODES:
        raise DisSamError(f"start must be one of {', '.join(START_MODES)}, not {cfg.start!r}")
    if not 1 <= cfg.max_clicks <= 100:
        raise DisSamError(f"max clicks must be in [1, 100], got {cfg.max_clicks}")
    root, splits = resolve_data(cfg.data, cfg.splits)
    run_dir = Path(cfg.run_dir)
    key = cfg.key()
    items = [it for s in splits for it in split_items(root, s)[: cfg.limit]]
    traces: dict[str, list[ClickTrace]] = {s: [] for s in splits}
    failures: list[dict] = []
    computed = reused = 0
    for item in tqdm(items, desc="clicks", unit="img", disable=not cfg.progress, file=sys.stderr):
        path = _case_path(run_dir, item)
        done = None if cfg.overwrite else _load_done(path, key)
        if done is not None:
            traces[item.split].append(done)
            reused += 1
            continue
        try:
            gt = read_mask(item.gt) >= 128
            box, _ = whole_gt_box(gt.astype(np.uint8) * 255)
            if box is None:
                raise DisSamError("the ground truth is empty")
            if predictor is None:
                predictor = _build(cfg)
            predictor.set_image(read_image(item.image))
            if gt.shape != predictor.image.shape[:2]:
                raise DisSamError(f"ground truth {gt.shape} and image {predictor.image.shape[:2]} differ in size")
            segment = click_segmenter(predictor, box if cfg.start == "box" else None, cfg.mask_input)
            trace = simulate(segment, gt, start=cfg.start == "box", max_clicks=cfg.max_clicks,
                             stop_iou=cfg.stop_iou, min_clicks=cfg.min_clicks, clock=time.perf_counter)
        except (DisSamError, OSError, ValueError) as exc:
            failures.append({"split": item.split, "stem": item.stem, "error": str(exc)})
            continue
        record = {"key": key, "split": item.split, "stem": item.stem, "box": box.tolist(), "trace": trace.to_json()}
        atomic_write_bytes(path, json.dumps(record).encode())
        traces[item.split].append(trace)
        computed += 1
    summary = {}
    everything = [t for s in splits for t in traces[s]]
    for name, group in [*traces.items(), ("all", everything)]:
        summary[name] = summarize(group, NOC_THRESHOLDS, IOU_AT, cfg.max_clicks)
        summary[name]["s/click"] = _median_click_seconds(group, cfg.start == "box")
    out = {"settings": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "overwrite")},
           "key": key, "summary": summary, "failures": failures}
    atomic_write_bytes(run_dir / "clicks.json", json.dumps(out, indent=1).encode())
    atomic_write_bytes(run_dir / "clicks.md", summary_table(summary).encode())
    return {**out, "computed": computed, "reused": reused}


def _build(cfg: ClicksConfig):
    # the predictor (torch, the stage's libraries) is loaded only when a case has to run
    from dissam.predictor import DisSamPredictor

    return DisSamPredictor.from_pretrained(sam=cfg.sam, refiner=cfg.refiner, stage1=cfg.stage1, model=cfg.model,
                                           device=cfg.device, size=cfg.size, point_selection=cfg.point_selection)


def summary_table(summary: dict) -> str:
    """The summary as a Markdown table (one row per split and one for all cases)."""
    cols = ["cases", "NoC@85", "NoC@90", "NoF@90", "IoU@0", "IoU@1", "IoU@3", "IoU@5", "coarse NoC@90",
            "coarse IoU@5", "s/click"]

    def fmt(col: str, v) -> str:
        if v is None:
            return "-"
        if isinstance(v, int):
            return str(v)
        return f"{v:.2f}" if "NoC" in col else f"{v:.3f}"

    lines = ["| split | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in summary.items():
        lines.append(f"| {name} | " + " | ".join(fmt(c, row.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"
