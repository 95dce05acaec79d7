"""Refiner forward at 1024² on this machine: the authors' way versus ours.

Modes (each in a fresh subprocess so peak RSS is per mode):
  authors        fp32, autograd on, eval mode (their valid(): net.eval() but no torch.no_grad())
  inference      fp32, torch.inference_mode()
  inference_cl   fp32, torch.inference_mode(), channels_last memory format

Usage:  .venv/bin/python benchmarks/refiner_forward.py [--size 1024] [--repeats 3] [--variant dis-sam]
Prints a Markdown table (median seconds per forward, peak RSS) and ratios against "authors".
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODES = ("authors", "inference", "inference_cl")


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
    print(f"refiner {args.variant}, input 1x{5}x{args.size}x{args.size}, {args.threads} threads, "
          f"median of {args.repeats} after 1 warm-up\n")
    print("| mode | s / forward | peak RSS (MB) | speed-up vs authors | memory vs authors |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {base['seconds'] / r['seconds']:.2f}x "
              f"| {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x |")
    sums = {r["mode"]: r["checksum"] for r in rows}
    print(f"\noutput checksums (must agree to float32 noise): {sums}")


if __name__ == "__main__":
    main()
