"""Speed of ``dissam eval`` (all eight metrics): serial versus a process pool.

Measures the 18 fixture pairs (tests/fixtures/metrics) and ``--pairs`` synthetic full-size pairs
(2-3 MP, thin lines and a solid body, soft shifted noisy predictions) generated in a temporary
folder, each serially and with ``--workers`` processes, and asserts that the results are
identical. Then times a cold versus a warm HCE skeleton cache on the first ``--cache-pairs``
synthetic pairs.

    .venv/bin/python benchmarks/eval_speed.py --pairs 200 --workers 2

Writes benchmarks/results/eval_speed.json (``--json``: elsewhere) with the table ``eval_speed``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from results_io import markdown_table, save

from dissam.evaluate import evaluate_folders
from dissam.utils import library_versions

ROOT = Path(__file__).resolve().parents[1]


def make_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 2-3 MP ground truth with thin structures and a soft, imperfect prediction (HxW uint8)."""
    h = int(rng.integers(1200, 1500))
    w = int(rng.integers(1700, 2000))
    gt = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(w // 3, 2 * w // 3)), int(rng.integers(h // 3, 2 * h // 3))
    cv2.ellipse(gt, (cx, cy), (int(rng.integers(150, 350)), int(rng.integers(100, 250))), 0, 0, 360, 255, -1)
    for _ in range(int(rng.integers(30, 80))):  # wires, legs, spokes: 1-3 px
        a = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        b = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(gt, a, b, 255, int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(5, 15))):  # rings
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(gt, c, int(rng.integers(10, 80)), 255, int(rng.integers(1, 3)))
    shift = tuple(int(v) for v in rng.integers(-3, 4, 2))
    pred = cv2.GaussianBlur(np.roll(gt, shift, axis=(0, 1)), (5, 5), 1.5).astype(np.int16)
    pred += rng.integers(-25, 25, pred.shape, dtype=np.int16)
    for _ in range(int(rng.integers(3, 10))):  # false-positive blobs
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(pred, c, int(rng.integers(5, 40)), 200, -1)
    return np.clip(pred, 0, 255).astype(np.uint8), gt


def make_dataset(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "pred").mkdir(parents=True)
    (folder / "gt").mkdir(parents=True)
    for i in range(n):
        pred, gt = make_pair(rng)
        cv2.imwrite(str(folder / "pred" / f"{i:04d}.png"), pred)
        cv2.imwrite(str(folder / "gt" / f"{i:04d}.png"), gt)


def timed(pred_dir, gt_dir, workers, cache=None):
    t = time.perf_counter()
    out = evaluate_folders(pred_dir, gt_dir, workers=workers, progress=False, skeleton_cache=cache)
    return time.perf_counter() - t, out


def compare(label, pred_dir, gt_dir, workers, rows):
    t1, serial = timed(pred_dir, gt_dir, 1)
    tn, par = timed(pred_dir, gt_dir, workers)
    assert par["aggregate"] == serial["aggregate"], (label, serial["aggregate"], par["aggregate"])
    assert par["per_image"] == serial["per_image"], label
    n = serial["n_images"]
    rows.append((label, n, "1", t1, t1 / n))
    rows.append((label, n, str(workers), tn, tn / n))
    print(f"{label}: serial {t1:.1f} s, workers={workers} {tn:.1f} s, identical results", flush=True)
    return serial


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200, help="synthetic full-size pairs (default 200)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-pairs", type=int, default=20, help="pairs for the skeleton-cache timing")
    ap.add_argument("--json", help="the results file (default benchmarks/results/eval_speed.json)")
    args = ap.parse_args()

    rows: list[tuple] = []
    fixtures = ROOT / "tests" / "fixtures" / "metrics"
    compare("fixtures (18 pairs, 0.05-0.15 MP)", fixtures / "pred", fixtures / "gt", args.workers, rows)

    with tempfile.TemporaryDirectory(prefix="dissam-evalbench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make_dataset(tmp / "synth", args.pairs)
        print(f"generated {args.pairs} synthetic pairs in {time.perf_counter() - t:.1f} s", flush=True)
        mp = (
            np.mean([cv2.imread(str(p), 0).size for p in sorted((tmp / "synth" / "gt").iterdir())[:20]]) / 1e6
        )
        first = len(rows)
        synth = compare(
            f"synthetic ({args.pairs} pairs, ~{mp:.1f} MP)", tmp / "synth" / "pred", tmp / "synth" / "gt",
            args.workers, rows,
        )  # fmt: skip

        k = min(args.cache_pairs, args.pairs)
        (tmp / "sub" / "pred").mkdir(parents=True)
        (tmp / "sub" / "gt").mkdir(parents=True)
        for name in sorted(os.listdir(tmp / "synth" / "gt"))[:k]:
            for sub in ("pred", "gt"):
                os.link(tmp / "synth" / sub / name, tmp / "sub" / sub / name)
        cold, a = timed(tmp / "sub" / "pred", tmp / "sub" / "gt", 1, cache=tmp / "skel")
        warm, b = timed(tmp / "sub" / "pred", tmp / "sub" / "gt", 1, cache=tmp / "skel")
        assert a["aggregate"] == b["aggregate"]
        assert [r["HCE"] for r in a["per_image"]] == [r["HCE"] for r in synth["per_image"][:k]]
        rows.append((f"synthetic, first {k}, skeleton cache cold", k, "1", cold, cold / k))
        rows.append((f"synthetic, first {k}, skeleton cache warm", k, "1", warm, warm / k))
        print(f"skeleton cache: cold {cold:.1f} s, warm {warm:.1f} s", flush=True)

    v = library_versions()
    serial, parallel = rows[first][3], rows[first + 1][3]
    per_image = rows[first][4]
    results = {
        "pairs": args.pairs, "workers": args.workers, "mean_megapixels": float(mp), "versions": v,
        "rows": [dict(zip(("set", "images", "workers", "wall_s", "s_per_image"), r, strict=True)) for r in rows],
        "serial_s_per_image": per_image,
        "parallel_speedup": serial / parallel,
        "cache_cold_s_per_image": cold / k, "cache_warm_s_per_image": warm / k, "cache_speedup": cold / warm,
        # what one DIS-VD pass (470 images) would take at these rates
        "dis_vd_serial_min": 470 * per_image / 60, "dis_vd_warm_cache_min": 470 * warm / k / 60,
    }
    table = markdown_table(["set", "images", "workers", "wall time (s)", "s / image"],
                           [[label, n, w, f"{t:.1f}", f"{per:.2f}"] for label, n, w, t, per in rows])
    save("eval_speed", results, {"eval_speed": table}, out=args.json,
         notes=f"python {sys.version.split()[0]}, opencv {v['opencv']}, scikit-image {v['scikit-image']}, "
               f"pysodmetrics {v['pysodmetrics']}; serial and parallel results asserted identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
