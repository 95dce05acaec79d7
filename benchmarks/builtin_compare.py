"""Compare built-in refiner candidates side by side: on generated data and on real photographs.

For each candidate (``NAME=PATH[@SIZE][#EDIT]``: the refiner's own size and edit threshold by default;
``EDIT`` is ``none`` for the raw refined map or a number, see ``dissam.refiner.merge_edits``) and each
evaluation set, the refined maps are scored against the ground truth next to the coarse masks they
were given (every candidate refines the same coarse masks, computed once):

* ``generated``: the built-in model test's set (tests/test_builtin_model.py: seed 12345, 24 images,
  320-448 px, degraded-GT coarse masks with seeds 0-23); maxF, S, HCE, mIoU and MAE.
* ``real``: the hand-made masks of examples/real_masks/ (examples/real_photos.json entries with a
  ``gt``), with each weight-free stage 1 (``grabcut``, ``u2netp``); IoU, MAE and HCE per entry, as
  benchmarks/real_photo_check.py scores them, plus the washed-out share on all ten boxes and the
  mean change of IoU and MAE with its 95 % paired bootstrap interval (2,000 resamples of the entries).
* ``generated-stage1``: the same 24 images, with each weight-free stage 1 run on the image in place
  of the degraded-GT masks: the offline default as a user runs it, on generated data; the same
  metrics, for the stage-1 masks and for each candidate on them.
* ``photo``: a photo-like split written by ``dissam synth --style photo --masks stage1-like``
  (``--photo-split``), with its own masks; maxF, MAE, HCE, mIoU.
* ``cutout``: real objects the candidates never saw, in photographs: a split written by
  ``dissam synth --style photo --cutouts DIR --cutout-split heldout`` (``--cutout-split-dir``), with
  each weight-free stage 1 run on every image, scored like ``real`` (IoU, MAE, HCE against the
  cut-out's alpha; docs/experiments.md).

Usage:
  PYTHONPATH=src .venv/bin/python benchmarks/builtin_compare.py \
      --candidate old=src/dissam/weights/dis-sam-compact.safetensors --candidate new=runs/x/best.safetensors@512#0.6 \
      [--sets generated generated-stage1 real photo cutout] [--stage1 grabcut u2netp u2netp-grabcut u2netp-auto] [--photo-split runs/photo/val] [--cutout-split-dir runs/cut_heldout] \
      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_photo_check import GT_KEYS, gt_measures, load_gt, load_photo, table  # noqa: E402


def parse_candidate(text: str) -> tuple[str, str, dict]:
    name, _, rest = text.partition("=")
    if not rest:
        raise SystemExit(f"--candidate wants NAME=PATH[@SIZE][#EDIT], got {text!r}")
    rest, _, edit = rest.partition("#")
    path, _, size = rest.partition("@")
    options: dict = {"size": int(size)} if size else {}
    if edit:
        options["edit_threshold"] = None if edit == "none" else float(edit)
    return name, path, options


def predictors(candidates):
    from dissam.predictor import DisSamPredictor

    return {name: DisSamPredictor.from_pretrained(sam=None, refiner=path, device="cpu", stage1="grabcut", **options)
            for name, path, options in candidates}


def suite_scores(preds, items, metrics=("maxFm", "Smeasure", "MAE", "HCE", "mIoU")) -> dict:
    """``items``: (image, gt, box, coarse) tuples. Scores of the coarse masks and of each candidate."""
    from dissam.metrics import MetricSuite
    from dissam.transforms import to_authors_png

    suites = {"coarse": MetricSuite(metrics), **{n: MetricSuite(metrics) for n in preds}}
    for image, gt, box, coarse in items:
        suites["coarse"].step(coarse, gt)
        for name, pred in preds.items():
            res = pred.set_image(image).predict(box=box, coarse_mask=coarse)
            suites[name].step(to_authors_png(res.soft), gt)
    return {n: s.results() for n, s in suites.items()}


def stage1_suite_scores(preds, items, stage1s=("grabcut", "u2netp", "u2netp-auto")) -> dict:
    """``items``: (image, gt, box, _) tuples; each stage 1 is run on each image and its mask refined by
    every candidate. ``{stage 1: {"stage 1": scores, candidate: scores, ...}}``."""
    from dissam.stages import load_stage1

    stages = {kind: load_stage1(kind) for kind in stage1s}
    per_stage: dict = {kind: [] for kind in stages}
    for image, gt, box, _ in items:
        for kind, stage in stages.items():
            stage.set_image(image)
            coarse = np.asarray(stage.coarse_masks(box[None]))[0].astype(np.uint8) * 255
            per_stage[kind].append((image, gt, box, coarse))
    out = {}
    for kind, kind_items in per_stage.items():
        scores = suite_scores(preds, kind_items)
        out[kind] = {"stage 1": scores.pop("coarse"), **scores}
    return out


def generated_items():
    from dissam.coarse import degrade_mask
    from dissam.data.synthetic import generate_sample

    for i in range(24):
        image, gt, box = generate_sample(i, seed=12345, size_range=(320, 448))
        yield image, gt, box, degrade_mask(gt, seed=i)


def photo_items(split: Path, masks: bool = True):
    import cv2

    boxes = json.loads((split / "boxes.json").read_text())
    for stem, box in boxes.items():
        image = cv2.cvtColor(cv2.imread(str(split / "im" / f"{stem}.jpg")), cv2.COLOR_BGR2RGB)
        gt = cv2.imread(str(split / "gt" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(split / "mask" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) if masks else None
        yield image, gt, np.asarray(box, dtype=np.float64), mask


def real_entries():
    """(image, box, gt or None, labels) of the real-photo check's boxes (ten)."""
    entries = json.loads((ROOT / "examples" / "real_photos.json").read_text())["photos"]
    for p in entries:
        gt = load_gt(p, ROOT / "examples" / "real_photos.json")
        yield load_photo(p["image"]), np.asarray(p["box"], dtype=np.float64), gt, {"image": p["image"], "object": p["object"]}


def cutout_entries(split: Path):
    """(image, box, gt, labels) of a cut-out split (no coarse masks: the stage 1s are run)."""
    for image, gt, box, _ in photo_items(split, masks=False):
        yield image, box, gt, {"image": "", "object": ""}


def stage1_rows(preds, entries, stage1s=("grabcut", "u2netp", "u2netp-auto")) -> list[dict]:
    """Each stage 1 on each entry, then each candidate on that coarse mask: one row per (stage 1,
    entry, candidate), with IoU/MAE/HCE against the ground truth where the entry has one."""
    from dissam.stages import load_stage1

    stages = {kind: load_stage1(kind) for kind in stage1s}
    rows = []
    for image, box, gt, labels in entries:  # one pass: each image is read once, and not all held at once
        for kind, stage in stages.items():
            stage.set_image(image)
            coarse = np.asarray(stage.coarse_masks(box[None]))[0].astype(bool)
            x0, y0, x1, y1 = (int(v) for v in box)
            for name, pred in preds.items():
                soft = pred.set_image(image).predict(box=box, coarse_mask=coarse.astype(np.uint8) * 255).soft
                crop = soft[y0:y1 + 1, x0:x1 + 1]
                row = {"stage1": kind, "candidate": name, **labels, "washed": float(((crop >= 0.2) & (crop <= 0.8)).mean())}
                if gt is not None:
                    row.update(gt_measures(coarse, soft, gt))
                rows.append(row)
    return rows


def real_rows(preds, stage1s=("grabcut", "u2netp", "u2netp-auto")) -> list[dict]:
    return stage1_rows(preds, real_entries(), stage1s)


def paired_ci(deltas, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-entry differences (refined - stage 1) and its 95 % paired bootstrap interval."""
    d = np.asarray(deltas, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def print_real(rows: list[dict], washed_label: str | None = None) -> None:
    """Markdown table of the real-photo rows; ``washed_label`` defaults to the number of boxes."""
    washed_label = washed_label or f"washed ({len({(r['image'], r['object']) for r in rows})} boxes)"
    out = []
    for kind in dict.fromkeys(r["stage1"] for r in rows):
        for name in dict.fromkeys(r["candidate"] for r in rows):
            sel = [r for r in rows if r["stage1"] == kind and r["candidate"] == name]
            g = [r for r in sel if "s1_iou" in r]
            m = {k: np.mean([r[k] for r in g]) for k in GT_KEYS}
            flips = sum(r["flips"] for r in g)
            out.append([kind, name, f"{m['s1_iou']:.3f} -> {m['ref_iou']:.3f}", f"{m['s1_mae']:.4f} -> {m['ref_mae']:.4f}",
                        f"{m['s1_hce']:.1f} -> {m['ref_hce']:.1f}", f"{np.mean([r['washed'] for r in sel]):.3f}",
                        f"{sum(r['ref_iou'] >= r['s1_iou'] for r in g)}/{len(g)}",
                        f"{sum(r['flips_right'] for r in g) / flips:.2f} of {flips} px" if flips else "no flips"])
            for key, fmt in (("iou", "{:+.4f}"), ("mae", "{:+.5f}")):
                mean, lo, hi = paired_ci([r[f"ref_{key}"] - r[f"s1_{key}"] for r in g])
                out[-1].append(f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]")
    table(["stage 1", "candidate", "IoU stage 1 -> refined", "MAE stage 1 -> refined", "HCE stage 1 -> refined",
           washed_label, "entries refined IoU >= stage 1", "flip precision", "IoU change [95 % CI]",
           "MAE change [95 % CI]"], out)


def print_suite(title: str, scores: dict) -> None:
    metrics = list(next(iter(scores.values())))
    print(f"\n{title}\n\n| | " + " | ".join(metrics) + " |")
    print("|---|" + "---:|" * len(metrics))
    for name, s in scores.items():
        print(f"| {name} | " + " | ".join(f"{s[m]:.4f}" if m != "HCE" else f"{s[m]:.1f}" for m in metrics) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", action="append", required=True, metavar="NAME=PATH[@SIZE]")
    ap.add_argument("--sets", nargs="+", default=["generated", "real"], choices=["generated", "generated-stage1", "real", "photo", "cutout"])
    ap.add_argument("--photo-split", type=Path, help="a photo-like split for the 'photo' set")
    ap.add_argument("--cutout-split-dir", type=Path, help="a held-out cut-out split for the 'cutout' set")
    ap.add_argument("--stage1", nargs="+", default=["grabcut", "u2netp", "u2netp-auto"],
                    help="the weight-free stage 1s of the real, cutout and generated-stage1 sets")
    ap.add_argument("--json", help="write every score here")
    args = ap.parse_args()
    preds = predictors([parse_candidate(c) for c in args.candidate])
    out: dict = {}
    t = time.perf_counter()
    if "real" in args.sets:
        out["real"] = real_rows(preds, args.stage1)
        print_real(out["real"])
    if "generated" in args.sets:
        out["generated"] = suite_scores(preds, generated_items())
        print_suite("generated (the built-in model test's 24 images)", out["generated"])
    if "generated-stage1" in args.sets:
        out["generated-stage1"] = stage1_suite_scores(preds, generated_items(), args.stage1)
        for kind, scores in out["generated-stage1"].items():
            print_suite(f"generated, stage 1 = {kind} (the built-in model test's 24 images)", scores)
    if "photo" in args.sets:
        if args.photo_split is None:
            raise SystemExit("--sets photo needs --photo-split")
        out["photo"] = suite_scores(preds, photo_items(args.photo_split))
        print_suite(f"photo-like ({args.photo_split})", out["photo"])
    if "cutout" in args.sets:
        if args.cutout_split_dir is None:
            raise SystemExit("--sets cutout needs --cutout-split-dir")
        out["cutout"] = stage1_rows(preds, cutout_entries(args.cutout_split_dir), args.stage1)
        print(f"\nheld-out real objects ({args.cutout_split_dir})\n")
        print_real(out["cutout"], "washed (in the box)")
    print(f"\n({time.perf_counter() - t:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
