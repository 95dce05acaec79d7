"""Video mode on generated moving-object clips: per-frame accuracy of coarse vs refined masks, and
temporal stability, for three offline stage-1 trackers. Prints a markdown table (docs/video.md).

Clips: :func:`dissam.data.clips.moving_clip` (a thin object slides over a fixed background with
whole-pixel motion and fresh sensor noise per frame), encoded to H.264 and read back by the real
``dissam video`` pipeline (:class:`dissam.video.pipeline.VideoJob`) with the built-in refiner.

Stage 1 (no SAM 2 / SAM 3 weights exist here, so three stand-ins):
* ``degrade-per-frame``: ``degrade_mask(gt_t, seed=t)``: SAM-like errors drawn afresh every frame
  (an image model run frame by frame with no memory; the worst case for flicker);
* ``degrade-consistent``: ``degrade_mask(gt_t, seed=clip)``: the same error pattern every frame,
  moving with the object (a tracker whose errors persist, as a memory-based tracker's tend to);
* ``grabcut``: the real per-frame tracker (:class:`dissam.video.trackers.StageTracker` over GrabCut),
  re-prompted with the previous mask's box.

Metrics: maxF (dataset-mean F curve over all frames of all clips) and mean HCE of the coarse masks
and the refined soft maps vs the generated GT; temporal stability: mean IoU of consecutive masks
after exact motion compensation (GT: 1.000), and flicker: mean |change| of the soft map (8-bit
levels) after compensation, inside the GT dilated by 5 px.

Usage: PYTHONPATH=src python benchmarks/video_stability.py [--quick] [--frames 16] [--out runs/video_stability]
       [--json benchmarks/results/video_stability.json]
Writes the results file (``--json``; by default benchmarks/results/video_stability.json, ``--quick``
writes none unless asked) with the table ``stability`` that docs/video.md shows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from results_io import markdown_table, save


class GTTracker:
    """Stage 1 from the clip's ground truth, degraded (see the module docstring)."""

    def __init__(self, gts, per_frame: bool, seed: int):
        from dissam.coarse import degrade_mask

        self.name = "degrade-per-frame" if per_frame else "degrade-consistent"
        self.masks = [degrade_mask(gt, seed=(t if per_frame else seed)) > 127 for t, gt in enumerate(gts)]

    def start(self, frame, index, box=None, mask=None, reverse=False):
        return self.masks[index] if mask is None else np.asarray(mask, bool)

    def step(self, frame, index):
        return self.masks[index]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    ap.add_argument("--kinds", nargs="+", default=["tree", "fence", "wheel", "insect"])
    ap.add_argument("--out", default="runs/video_stability")
    ap.add_argument("--quick", action="store_true", help="2 clips of 6 frames (a smoke run)")
    ap.add_argument("--json", help="the results file (default benchmarks/results/video_stability.json; "
                                   "none for --quick unless given)")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.kinds = 6, args.kinds[:2]

    import cv2

    from dissam.data.clips import clip_frames, moving_clip, write_clip
    from dissam.io import read_mask
    from dissam.metrics import MetricSuite
    from dissam.predictor import DisSamPredictor, GrabCutStage
    from dissam.video.pipeline import VideoJob
    from dissam.video.stability import compensated_iou, flicker
    from dissam.video.trackers import StageTracker

    out = Path(args.out)
    predictor = DisSamPredictor.from_pretrained(refiner=None, device="cpu", stage1="grabcut")
    rows = {}
    for ci, kind in enumerate(args.kinds):
        spec = moving_clip(args.frames, tuple(args.size), kind=kind, seed=ci)
        clip = out / f"{kind}.mp4"
        clip.parent.mkdir(parents=True, exist_ok=True)
        write_clip(clip, spec, fps=10)
        gts = [gt for _, gt in clip_frames(spec)]
        trackers = [GTTracker(gts, True, ci), GTTracker(gts, False, ci), StageTracker(GrabCutStage())]
        for tracker in trackers:
            name = tracker.name if not isinstance(tracker, StageTracker) else "grabcut"
            folder = out / f"{kind}_{name}"
            t0 = time.perf_counter()
            ys, xs = np.nonzero(gts[0] > 127)
            job = VideoJob(clip, folder, predictor, tracker, box=[xs.min(), ys.min(), xs.max(), ys.max()],
                           batch_size=4, write_videos=False, progress=False)
            res = job.run()
            secs = (time.perf_counter() - t0) / max(1, res.computed)
            r = rows.setdefault(name, {"coarse": MetricSuite(("maxFm", "HCE")), "refined": MetricSuite(("maxFm", "HCE")),
                                       "iou_c": [], "iou_r": [], "iou_gt": [], "fl_c": [], "fl_r": [], "s": []})
            if res.computed:
                r["s"].append(secs)
            prev = None
            for t in range(spec.frames):
                c = read_mask(folder / "coarse" / f"{t:06d}.png")
                a = read_mask(folder / "alpha" / f"{t:06d}.png")
                m = read_mask(folder / "masks" / f"{t:06d}.png") > 127
                r["coarse"].step(c, gts[t])
                r["refined"].step(a, gts[t])
                if prev is not None:
                    d = spec.motion(t - 1)
                    band = cv2.dilate((gts[t] > 0).astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
                    r["iou_c"].append(compensated_iou(prev[0] > 127, c > 127, d))
                    r["iou_r"].append(compensated_iou(prev[2], m, d))
                    r["iou_gt"].append(compensated_iou(gts[t - 1] > 127, gts[t] > 127, d))
                    r["fl_c"].append(flicker(prev[0], c, d, band))
                    r["fl_r"].append(flicker(prev[1], a, d, band))
                prev = (c, a, m)
    header = ["stage 1", "maxF coarse", "maxF refined", "HCE coarse", "HCE refined", "IoU(t,t+1) coarse",
              "IoU(t,t+1) refined", "flicker coarse", "flicker refined", "s / frame, CPU"]
    results, table = {}, []
    for name, r in rows.items():
        c, f = r["coarse"].results(), r["refined"].results()
        res = {"maxF_coarse": c["maxFm"], "maxF_refined": f["maxFm"], "hce_coarse": c["HCE"], "hce_refined": f["HCE"],
               "iou_coarse": float(np.mean(r["iou_c"])), "iou_refined": float(np.mean(r["iou_r"])),
               "flicker_coarse": float(np.mean(r["fl_c"])), "flicker_refined": float(np.mean(r["fl_r"])),
               "s_per_frame": float(np.mean(r["s"])) if r["s"] else None}
        res["maxF_gain"] = res["maxF_refined"] - res["maxF_coarse"]
        res["hce_change"] = res["hce_refined"] - res["hce_coarse"]
        results[name.replace("-", "_")] = res
        table.append([name, f"{res['maxF_coarse']:.3f}", f"{res['maxF_refined']:.3f}", f"{res['hce_coarse']:.0f}",
                      f"{res['hce_refined']:.0f}", f"{res['iou_coarse']:.3f}", f"{res['iou_refined']:.3f}",
                      f"{res['flicker_coarse']:.1f}", f"{res['flicker_refined']:.1f}",
                      "–" if res["s_per_frame"] is None else f"{res['s_per_frame']:.2f}"])
    gt_iou = float(np.mean([v for r in rows.values() for v in r["iou_gt"]]))
    setup = (f"clips: {len(args.kinds)} ({', '.join(args.kinds)}), {args.frames} frames of {args.size[1]}x{args.size[0]}, "
             f"refiner: built-in dis-sam-compact at {predictor.size}²; GT IoU(t,t+1) after compensation: {gt_iou:.3f} "
             "(1.000 = the compensation is exact)")
    summary = {"clips": args.kinds, "frames": args.frames, "size_hw": list(args.size), "refiner_size": predictor.size,
               "gt_iou": gt_iou, "stage1": results}
    print(setup + "\n")
    if args.json or not args.quick:
        save("video_stability", summary, {"stability": markdown_table(header, table, "l" + "r" * 9)}, notes=setup,
             out=args.json)
    else:
        print(markdown_table(header, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
