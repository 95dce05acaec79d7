"""SAM 2.1 video session memory per frame, transformers' default versus dissam's pruning
(docs/video.md).

Builds ``Sam2VideoModel(Sam2VideoConfig())`` (SAM 2.1 tiny sizes, random weights: the state's size
does not depend on the weights), streams ``--frames`` frames through
:class:`dissam.video.trackers.SamVideoTracker` with ``prune=False`` and ``prune=True`` (each in its
own process) and prints the bytes the session holds after each frame and the process's peak RSS.

Usage: PYTHONPATH=src python benchmarks/video_memory.py [--frames 24] [--device cpu]
Writes benchmarks/results/video_memory.json (``--out``: elsewhere) with the table ``session``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from results_io import markdown_table, save


def worker(prune: bool, frames: int, device: str) -> dict:
    import resource

    import numpy as np
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    from dissam.video.trackers import SamVideoTracker

    torch.manual_seed(0)
    tracker = SamVideoTracker(Sam2VideoModel(Sam2VideoConfig()).eval(), device, prune=prune)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    sizes = []
    tracker.start(frame, 0, box=[200, 100, 440, 300])
    sizes.append(tracker.state_bytes())
    for i in range(1, frames):
        tracker.step(frame, i)
        sizes.append(tracker.state_bytes())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"prune": prune, "bytes": sizes, "rss_mib": rss, "window": tracker.window}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="the results file (default benchmarks/results/video_memory.json)")
    ap.add_argument("--worker", choices=["prune", "keep"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker == "prune", args.frames, args.device)))
        return 0
    res = {}
    for mode in ("keep", "prune"):
        proc = subprocess.run([sys.executable, __file__, "--worker", mode, "--frames", str(args.frames),
                               "--device", args.device], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        res[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    keep, prune = res["keep"]["bytes"], res["prune"]["bytes"]
    mib = 2**20
    per_frame = (keep[-1] - keep[1]) / max(1, len(keep) - 2) / mib
    rows = [[i, f"{keep[i] / mib:.1f}", f"{prune[i] / mib:.1f}"]
            for i in sorted({0, 1, 4, 8, 16, args.frames - 1} & set(range(args.frames)))]
    rows.append(["peak RSS of the process", f"{res['keep']['rss_mib']:.0f}", f"{res['prune']['rss_mib']:.0f}"])
    results = {"frames": args.frames, "device": args.device, "window": res["prune"]["window"],
               "keep_mib": [b / mib for b in keep], "prune_mib": [b / mib for b in prune],
               "rss_mib": {"keep": res["keep"]["rss_mib"], "prune": res["prune"]["rss_mib"]},
               "growth_mib_per_frame": per_frame, "growth_gib_per_1000_frames": per_frame * 1000 / 1024}
    save("video_memory", results, {"session": markdown_table(
        ["session state after frame", "transformers (keep all) MiB", "dissam (pruned) MiB"], rows)}, out=args.out,
        notes=f"Sam2VideoModel with SAM 2.1 tiny sizes (random weights), {args.frames} frames of 640x360, each mode "
              f"in its own process; memory window {res['prune']['window']} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
