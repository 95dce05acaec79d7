"""NoC@85 / NoC@90 on the project's hand-made real masks (``examples/real_masks/``) for chosen stage 1s.

The six photographs with a hand-made mask in ``examples/real_photos.json`` (scikit-image's bundled
samples; the motorcycle's mask is built from its annotation when it is not on disk, as
``benchmarks/real_photo_check.py`` does) are written as one split in the benchmark's layout
(``OUT/data/real-masks/{im,gt}``, the case name ``<photo>_<mask stem>``), then ``dissam clicks``' own
code (:func:`dissam.benchmark.clicks.run_clicks`) simulates the clicks for each stage 1, starting
from the whole-GT box, with the built-in refiner. Each stage's results go to ``OUT/<stage>/``
(``clicks.md``, ``clicks.json``, per-case files; a rerun reuses finished cases), and one table of all
stages is printed.

Usage: PYTHONPATH=src python benchmarks/click_noc.py [--stage1 u2netp-auto grabcut] [--start box] -o runs/clicks-real
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_real_masks import load_photo  # noqa: E402
from real_photo_check import load_gt  # noqa: E402


def write_cases(photos_path: Path, folder: Path) -> int:
    """The photos with a hand-made mask as ``folder/{im,gt}`` PNGs; returns how many."""
    photos = json.loads(photos_path.read_text())["photos"]
    n = 0
    for entry in photos:
        gt = load_gt(entry, photos_path)
        if gt is None:
            continue
        name = f"{entry['image']}_{Path(entry['gt']).stem}"
        for sub, arr in (("im", load_photo(entry["image"])), ("gt", gt)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(arr, np.uint8)).save(folder / sub / f"{name}.png")
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", nargs="+", default=["u2netp-auto", "grabcut"])
    ap.add_argument("--start", choices=("box", "none"), default="box")
    ap.add_argument("--photos", default=str(ROOT / "examples" / "real_photos.json"))
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()

    from dissam.benchmark.clicks import ClicksConfig, run_clicks, summary_table

    out = Path(args.out)
    data = out / "data" / "real-masks"
    print(f"{write_cases(Path(args.photos), data)} cases in {data}")
    rows = {}
    for kind in args.stage1:
        result = run_clicks(ClicksConfig(data=str(data), run_dir=str(out / kind), stage1=kind, start=args.start,
                                         device="cpu"))
        for f in result["failures"]:
            print(f"  {kind}: failed: {f['stem']}: {f['error']}", file=sys.stderr)
        rows[kind] = result["summary"]["all"]
        per_case = {p.stem: json.loads(p.read_text())["trace"] for p in sorted((out / kind / "clicks").rglob("*.json"))}
        for stem, trace in per_case.items():
            ious = ["-" if v is None else f"{v:.3f}" for v in trace["ious"]]
            print(f"  {kind} {stem}: IoU start {ious[0]}, after 1/3/5/20 clicks "
                  + "/".join(ious[min(k, len(ious) - 1)] for k in (1, 3, 5, 20)))
    print(summary_table(rows), end="")


if __name__ == "__main__":
    main()
