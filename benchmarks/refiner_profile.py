"""Where the refiner's time goes: torch (contiguous, channels_last, channels_last with BatchNorm folded
into the convolutions) against ONNX Runtime fp32, with a per-operator profile of each.

``ISNetDIS(5)`` with random weights, one image of ``--size``², ``--threads`` threads, median of
``--repeats`` after a warm-up, all paths in this one process (alternating, so that load changes hit
them alike). The profiles group time by operator type: torch's from ``torch.profiler`` (self CPU
time), ONNX Runtime's from its session profiling (``enable_profiling``).

    PYTHONPATH=src python benchmarks/refiner_profile.py --size 512 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch


def fold_bn(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` with every REBNCONV's BatchNorm folded into its convolution (eval mode)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from dissam.models.isnet import REBNCONV

    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, REBNCONV):
            m.conv_s1 = fuse_conv_bn_eval(m.conv_s1, m.bn_s1)
            m.bn_s1 = torch.nn.Identity()
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="JSON results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    from dissam.models.isnet import build_refiner
    from dissam.runtime.onnx_export import export_refiner

    torch.manual_seed(0)
    net = build_refiner("dis-sam").eval()
    x = torch.rand(1, 5, args.size, args.size) - 0.5
    xcl = x.contiguous(memory_format=torch.channels_last)
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    folded = fold_bn(net).to(memory_format=torch.channels_last)
    tmp = Path(tempfile.mkdtemp(prefix="dissam_prof_"))
    onnx_path = export_refiner(net, tmp / "r.onnx", size=args.size)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    paths = {
        "torch fp32 contiguous": lambda: net(x),
        "torch fp32 channels_last": lambda: cl(xcl),
        "torch fp32 channels_last + BN folded": lambda: folded(xcl),
        "ORT fp32": lambda: sess.run(["d1"], {"x": xn}),
    }
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        ref = net(x)[0][0]
        diff = float((folded(xcl)[0][0] - ref).abs().max())
        for fn in paths.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in paths.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        profiles = {}
        for name in ("torch fp32 channels_last", "torch fp32 channels_last + BN folded"):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                paths[name]()
            by_op = defaultdict(float)
            for ev in prof.key_averages():
                if ev.key.startswith("aten::") and ev.key not in ("aten::empty", "aten::to"):
                    by_op[ev.key] += ev.self_cpu_time_total / 1e6
            profiles[name] = dict(sorted(by_op.items(), key=lambda kv: -kv[1])[:8])
    popts = ort.SessionOptions()
    popts.intra_op_num_threads = args.threads
    popts.enable_profiling = True
    popts.profile_file_prefix = str(tmp / "ort_prof")
    psess = ort.InferenceSession(str(onnx_path), popts, providers=["CPUExecutionProvider"])
    psess.run(["d1"], {"x": xn})
    psess.run(["d1"], {"x": xn})
    prof_file = psess.end_profiling()
    events = json.loads(Path(prof_file).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last_start = runs[-1]["ts"] if runs else 0
    by_type = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= last_start:
            by_type[e["args"].get("op_name", "?")] += e["dur"] / 1e6
    profiles["ORT fp32"] = dict(sorted(by_type.items(), key=lambda kv: -kv[1])[:8])
    med = {k: statistics.median(v) for k, v in times.items()}
    ort_s = med["ORT fp32"]
    print(f"\nISNetDIS(5), {args.size}², {args.threads} thread(s), median of {args.repeats}; BN folding max abs "
          f"diff {diff:.1e}\n")
    print("| path | s | vs ORT fp32 |")
    print("|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {v / ort_s:.2f}× |")
    for name, ops in profiles.items():
        print(f"\n{name}: " + ", ".join(f"{op} {s:.3f} s" for op, s in ops.items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"median_s": med, "profiles": profiles, "fold_diff": diff,
                                              "size": args.size, "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
