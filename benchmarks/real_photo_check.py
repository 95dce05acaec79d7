"""Real-photo check with no ground truth: does the built-in refiner keep what stage 1 found?

For each photograph and hand-chosen box of ``examples/real_photos.json`` (scikit-image's bundled
public-domain / CC0 samples) and each stage 1 (``grabcut``, ``u2netp``, ``u2netp-auto``: the offline default), the built-in refiner refines
the stage-1 mask and three numbers compare them (all inside the box, where the object is):

* ``IoU far``: IoU of the stage-1 mask and the refined binary mask (threshold 0.5) on the pixels more
  than ``--band`` px away from the stage-1 boundary. A refiner should move edges, not flip regions
  far from them, so a low value means it is rewriting what stage 1 said (for better or worse: with
  no ground truth this is agreement, not accuracy).
* ``washed``: share of pixels whose refined probability is in [0.2, 0.8] (unsure, grey output).
* ``|ref-coarse|``: mean absolute difference of the refined probability and the stage-1 mask.

Entries with a ``gt`` field (hand-made masks, ``examples/real_masks/``) are also scored against it,
on the whole photo, for the stage-1 mask and the refined map: IoU (``dissam.metrics``, both binarised at
>= 128, as ``dissam eval``'s mIoU), MAE (mean |map - GT/255|, the refined map as a soft map, no
min-max normalisation) and HCE (``dissam.metrics.hce``: maps binarised at > 128, relax 5, RDP epsilon 2,
the package defaults ``dissam eval`` uses; the refined map is quantised to uint8 as a saved PNG); and
the pixels whose decision the refiner flipped (refined >= 128 against the stage-1 mask) with the share
of them the ground truth agrees with (flip precision: below 0.5, the refiner's edits are worse than
leaving stage 1's mask alone).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/real_photo_check.py [--stage1 grabcut u2netp u2netp-auto]
       [--band 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from make_real_masks import build_mask, load_annotations, load_photo  # noqa: E402


def boundary_band(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` px (chessboard) of ``mask``'s boundary."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, k) != cv2.erode(m, k)


def measures(coarse: np.ndarray, soft: np.ndarray, box: np.ndarray, band: int) -> dict:
    x0, y0, x1, y1 = (int(v) for v in box)
    c, s = coarse[y0:y1 + 1, x0:x1 + 1], soft[y0:y1 + 1, x0:x1 + 1]
    far = ~boundary_band(c, band)
    r = s > 0.5
    inter, union = (c & r & far).sum(), ((c | r) & far).sum()
    return {
        "coarse_share": float(c.mean()),
        "iou_far": float(inter / union) if union else 1.0,
        "washed": float(((s >= 0.2) & (s <= 0.8)).mean()),
        "mad": float(np.abs(s - c.astype(np.float32)).mean()),
    }


def to_uint8(soft: np.ndarray) -> np.ndarray:
    """A probability map in [0, 1] as the uint8 PNG ``dissam predict`` would save."""
    return np.clip(np.rint(soft.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def gt_measures(coarse: np.ndarray, soft: np.ndarray, gt: np.ndarray) -> dict:
    """IoU / MAE / HCE of the stage-1 mask (``coarse``, bool ``HxW``) and the refined map (``soft``,
    float ``HxW`` in [0, 1]) against the ground truth (``gt``, uint8 ``HxW``, 0..255)."""
    from dissam.metrics import hce, iou_and_boundary_iou

    out = {}
    g01 = gt.astype(np.float64) / 255.0
    for key, u8, mapped in (("s1", coarse.astype(np.uint8) * 255, coarse.astype(np.float64)),
                            ("ref", to_uint8(soft), soft.astype(np.float64))):
        out[f"{key}_iou"] = iou_and_boundary_iou(u8, gt)[0]
        out[f"{key}_mae"] = float(np.abs(mapped - g01).mean())
        out[f"{key}_hce"] = hce(u8, gt)
    # the refiner's decisions that differ from stage 1's: how many, and the share that the GT agrees with
    flipped = (to_uint8(soft) >= 128) != coarse.astype(bool)
    out["flips"] = int(flipped.sum())
    out["flips_right"] = int((flipped & ((to_uint8(soft) >= 128) == (gt >= 128))).sum())
    return out


GT_KEYS = ("s1_iou", "ref_iou", "s1_mae", "ref_mae", "s1_hce", "ref_hce")


def table(header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def load_gt(entry: dict, photos_path: Path) -> np.ndarray | None:
    """The entry's ground truth (uint8 ``HxW``), its ``gt`` path relative to the JSON's folder; or None.

    A mask that is not kept in the repository (``gt`` names a missing file; the motorcycle's, whose
    source states no licence) is built from its annotation (``examples/make_real_masks.py``).
    """
    if "gt" not in entry:
        return None
    path = photos_path.parent / entry["gt"]
    if not path.is_file():
        annotations = {a["name"]: a for a in load_annotations()}
        if path.stem not in annotations:
            raise SystemExit(f"no ground truth {entry['gt']} for {entry['image']}, and no annotation {path.stem!r}")
        return build_mask(annotations[path.stem], load_photo(entry["image"]), annotations)
    gt = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gt is None:
        raise SystemExit(f"cannot read the ground truth {entry['gt']} of {entry['image']}")
    return gt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", nargs="+", default=["grabcut", "u2netp", "u2netp-auto"])
    ap.add_argument("--photos", default=str(ROOT / "examples" / "real_photos.json"))
    ap.add_argument("--band", type=int, default=5, help="px around the stage-1 boundary left out of IoU far")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()

    from dissam.predictor import DisSamPredictor

    photos = json.loads(Path(args.photos).read_text())["photos"]
    rows = []
    for kind in args.stage1:
        pred = DisSamPredictor.from_pretrained(sam=None, refiner=None, device="cpu", stage1=kind)
        for p in photos:
            image, box = load_photo(p["image"]), np.asarray(p["box"], dtype=np.float64)
            t = time.perf_counter()
            pred.set_image(image)
            out = pred.predict(box)
            row = {"stage1": kind, "image": p["image"], "object": p["object"], "box": p["box"],
                   "seconds": time.perf_counter() - t, **measures(out.coarse, out.soft, box, args.band)}
            gt = load_gt(p, Path(args.photos))
            if gt is not None:
                row.update(gt_measures(out.coarse, out.soft, gt))
            rows.append(row)
    table(["stage 1", "photo", "object", "stage-1 share of box", f"IoU far (>{args.band} px)", "washed [0.2, 0.8]",
           "mean abs(refined - coarse)"],
          [[r["stage1"], r["image"], r["object"], f"{r['coarse_share']:.2f}", f"{r['iou_far']:.3f}",
            f"{r['washed']:.3f}", f"{r['mad']:.3f}"] for r in rows]
          + [[f"**{kind}, mean**", "", "", *(f"{np.mean([r[k] for r in rows if r['stage1'] == kind]):{fmt}}"
                                             for k, fmt in (("coarse_share", ".2f"), ("iou_far", ".3f"),
                                                            ("washed", ".3f"), ("mad", ".3f")))]
             for kind in args.stage1])
    scored = [r for r in rows if "s1_iou" in r]
    if scored:
        print()
        means = []
        for kind in args.stage1:
            sel = [r for r in scored if r["stage1"] == kind]
            if sel:
                m = {k: np.mean([r[k] for r in sel]) for k in GT_KEYS}
                flips = sum(r["flips"] for r in sel)
                means.append([f"**{kind}, mean**", "", "", f"{m['s1_iou']:.3f}", f"{m['ref_iou']:.3f}",
                              f"{m['s1_mae']:.4f}", f"{m['ref_mae']:.4f}", f"{m['s1_hce']:.0f}", f"{m['ref_hce']:.0f}",
                              f"{sum(r['flips_right'] for r in sel) / flips:.2f} of {flips}" if flips else "-"])
        table(["stage 1", "photo", "object", "IoU stage 1", "IoU refined", "MAE stage 1", "MAE refined",
               "HCE stage 1", "HCE refined", "flips right"],
              [[r["stage1"], r["image"], r["object"], f"{r['s1_iou']:.3f}", f"{r['ref_iou']:.3f}",
                f"{r['s1_mae']:.4f}", f"{r['ref_mae']:.4f}", str(r["s1_hce"]), str(r["ref_hce"]),
                f"{r['flips_right'] / r['flips']:.2f} of {r['flips']}" if r["flips"] else "-"] for r in scored]
              + means)
        print(f"(HCE with OpenCV {cv2.__version__})")
    if args.json:
        from dissam.utils import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(rows, indent=1).encode())


if __name__ == "__main__":
    main()
