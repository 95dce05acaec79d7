"""NoC@85 / NoC@90 and IoU after 1, 3, 5 clicks on generated data and on the project's hand-made real
masks, for chosen stage 1s, written to ``benchmarks/results/click_noc.json`` (``results_io``).

Two data sets, each as one split in the benchmark's layout under ``OUT/data/``:

* ``generated``: ``dissam synth`` samples (``--synth N`` of them, seed 0: DIS-like thin objects on
  generated backgrounds, with exact ground truth);
* ``real-masks``: the photographs with a hand-made mask in ``examples/real_photos.json``
  (scikit-image's bundled samples; the motorcycle's mask is built from its annotation when it is
  not on disk, as ``benchmarks/real_photo_check.py`` does; the case name ``<photo>_<mask stem>``).

``dissam clicks``' own code (:func:`dissam.paper_tables.clicks.run_clicks`) then simulates the clicks
for each stage 1 from the whole-GT box, with the built-in refiner. Each stage's results go to
``OUT/<data set>/<stage>/`` (``clicks.md``, ``clicks.json``, per-case files; a rerun reuses finished
cases). Stages with weights (SAM and its kin) are not run here: with no real weights the tests' tiny
random SAM would measure nothing.

Usage: PYTHONPATH=src python benchmarks/click_noc.py [--stage1 u2netp-auto grabcut ...] [--synth 12] -o runs/clicks
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


def write_synth(folder: Path, n: int) -> int:
    """``n`` generated samples (``dissam synth``, seed 0) as ``folder/{im,gt}``; returns how many."""
    from dissam.cli import main as dissam_main

    if not (folder / "gt").is_dir() or len(list((folder / "gt").iterdir())) < n:
        code = dissam_main(["synth", str(folder), "-n", str(n), "--seed", "0", "--no-progress"])
        if code:
            raise SystemExit(f"dissam synth failed ({code})")
    return len(list((folder / "gt").iterdir()))


def _cell(col: str, v) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else (f"{v:.2f}" if "NoC" in col or col == "s/click" else f"{v:.3f}")


COLUMNS = ["cases", "NoC@85", "NoC@90", "NoF@90", "IoU@0", "IoU@1", "IoU@3", "IoU@5", "s/click"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", nargs="+", default=["u2netp-auto"])
    ap.add_argument("--start", choices=("box", "none"), default="box")
    ap.add_argument("--synth", type=int, default=12, help="generated samples (default 12)")
    ap.add_argument("--photos", default=str(ROOT / "examples" / "real_photos.json"))
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--results", default=None, help="results file (default: benchmarks/results/click_noc.json)")
    args = ap.parse_args()

    from results_io import markdown_table, save

    from dissam.paper_tables.clicks import ClicksConfig, run_clicks

    out = Path(args.out)
    sets = {"generated": out / "data" / "generated", "real-masks": out / "data" / "real-masks"}
    counts = {"generated": write_synth(sets["generated"], args.synth),
              "real-masks": write_cases(Path(args.photos), sets["real-masks"])}
    print(f"cases: {counts}")
    results: dict = {}
    rows = []
    for name, data in sets.items():
        for kind in args.stage1:
            result = run_clicks(ClicksConfig(data=str(data), run_dir=str(out / name / kind), stage1=kind,
                                             start=args.start, device="cpu", progress=False))
            for f in result["failures"]:
                print(f"  {name} {kind}: failed: {f['stem']}: {f['error']}", file=sys.stderr)
            summary = result["summary"]["all"]
            per_case = {p.stem: json.loads(p.read_text())["trace"]["ious"]
                        for p in sorted((out / name / kind / "clicks").rglob("*.json"))}
            results.setdefault(name, {})[kind] = {"summary": summary, "ious": per_case,
                                                  "failures": result["failures"]}
            rows.append([name, kind, *(_cell(c, summary.get(c)) for c in COLUMNS)])
    table = markdown_table(["data", "stage 1", *COLUMNS], rows, align="ll" + "r" * len(COLUMNS))
    notes = (f"start: {args.start} (the whole-GT box), at most 20 clicks, the built-in refiner at its own size; "
             "IoU@0 is the box alone; NoF@90: cases that never reach 0.90")
    save("click_noc", {"cases": counts, "start": args.start, "by_data": results},
         {"noc": table}, notes=notes, out=args.results)


if __name__ == "__main__":
    main()
