"""Refiner forward at 1024² on this machine: the authors' way versus ours.

Modes (each in a fresh subprocess so peak RSS is per mode):
  authors        fp32, autograd on, eval mode (their valid(): net.eval() but no torch.no_grad())
  inference      fp32, torch.inference_mode()
  inference_cl   fp32, torch.inference_mode(), channels_last memory format

Usage:  .venv/bin/python benchmarks/refiner_forward.py [--size 1024] [--repeats 3] [--variant dis-sam]
Writes benchmarks/results/refiner_forward.json (``--out``: elsewhere) with the table ``modes``
(median seconds per forward, peak RSS, ratios against "authors").
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from results_io import markdown_table, save

MODES = ("authors", "inference", "inference_cl")
LABELS = {"authors": "authors (fp32, eval mode, autograd on: their `valid()` has no `no_grad`)",
          "inference": "`torch.inference_mode()`", "inference_cl": "`inference_mode` + `channels_last`"}


def _child(mode: str, size: int, repeats: int, variant: str, threads: int) -> dict:
    import torch

    from dissam.models.isnet import build_refiner

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_refiner(variant).eval()
    x = torch.rand(1, net.in_ch, size, size)
    if mode == "inference_cl":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(repeats + 1):  # first call is warm-up
        t0 = time.perf_counter()
        if mode == "authors":
            d1 = net(x)[0][0]
            d1 = d1.detach()
        else:
            with torch.inference_mode():
                d1 = net(x)[0][0]
        times.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "seconds": statistics.median(times[1:]), "all": times[1:], "peak_rss_mb": peak_kb / 1024,
            "checksum": float(d1.double().sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", default="dis-sam")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="the results file (default benchmarks/results/refiner_forward.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.size, args.repeats, args.variant, args.threads)))
        return
    rows = []
    for mode in MODES:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--size", str(args.size), "--repeats", str(args.repeats),
             "--variant", args.variant, "--threads", str(args.threads)],
            check=True, capture_output=True, text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    table = []
    for r in rows:
        r["speedup_vs_authors"] = base["seconds"] / r["seconds"]
        r["memory_vs_authors"] = r["peak_rss_mb"] / base["peak_rss_mb"]
        table.append([LABELS[r["mode"]], f"{r['seconds']:.2f}", f"{r['peak_rss_mb']:.0f}",
                      f"{r['speedup_vs_authors']:.2f}×", f"{r['memory_vs_authors']:.2f}×"])
    results = {"variant": args.variant, "size": args.size, "threads": args.threads, "repeats": args.repeats,
               "modes": {r["mode"]: r for r in rows},
               "memory_saved_mb": base["peak_rss_mb"] - rows[1]["peak_rss_mb"],
               "checksum_spread": max(r["checksum"] for r in rows) - min(r["checksum"] for r in rows)}
    save("refiner_forward", results, {"modes": markdown_table(
        ["mode", "s / forward", "peak RSS (MB)", "speed vs authors", "memory vs authors"], table)}, out=args.out,
        notes=f"refiner {args.variant} (random weights), one 1x5x{args.size}x{args.size} input, {args.threads} threads, "
              f"each mode in its own process, median of {args.repeats} after one warm-up")


if __name__ == "__main__":
    main()
