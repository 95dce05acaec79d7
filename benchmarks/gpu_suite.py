"""Unattended GPU figures for the refiner and SAM's image encoder: one script, a few minutes.

Measures, on the chosen device (random weights throughout: speed does not depend on them):

* refiner ``ISNetDIS(5)`` (the paper's full refiner) at 1024², batch 1 and 8: fp32, fp16 and bf16
  autocast, each in contiguous and ``channels_last`` layout (IS-Net's published figure: 19.49 ms per
  1024² image, GPU not stated);
* SAM image encoder ViT-B / ViT-L / ViT-H at 1024², batch 1: fp32 and bf16 autocast;
* ONNX Runtime on the exported refiner with the TensorRT, CUDA and CPU execution providers that this
  onnxruntime has (skipped, with the reason, when onnx / onnxruntime / a provider is missing or fails).

Per path: median ms per call over ``--repeats`` after warm-ups (CUDA-synchronised), images/s, and the
peak CUDA memory (``torch.cuda.max_memory_allocated``; ``-`` on the CPU). Prints a Markdown table and
writes everything (device, versions, settings, errors) as JSON to ``--out``. Every path is guarded: an
error or an out-of-memory is recorded and the suite goes on; once ``--budget-s`` is spent the remaining
paths are skipped (recorded as such), so the whole run stays under the budget.

It imports only torch, transformers, numpy and (if present) onnx / onnxruntime; dissam's own modules are
imported lazily from ``src`` (run with ``PYTHONPATH=src``). Nothing is downloaded.

    PYTHONPATH=src python benchmarks/gpu_suite.py --out gpu.json            # full, ~3 minutes on an H200
    PYTHONPATH=src python benchmarks/gpu_suite.py --quick --out gpu.json    # ViT-B/L only, no TensorRT
    PYTHONPATH=src python benchmarks/gpu_suite.py --device cpu --quick --out cpu.json  # tiny sizes: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

VITS = {
    "vit_b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]),
}
TINY_VIT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1])
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench(fn, device: torch.device, warmup: int, repeats: int, budget: Budget) -> dict:
    """Median ms of ``fn()`` and the peak CUDA memory (MB) while it ran."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
        if budget.left() < 0:
            break
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"ms": statistics.median(times), "ms_all": [round(t, 3) for t in times], "peak_mb": peak}


def _guard(rows: list, name: str, budget: Budget, fn, **meta) -> None:
    """Run one measurement; record its result, error, out-of-memory or budget skip."""
    row = {"path": name, **meta}
    if budget.left() <= 0:
        row["skipped"] = "time budget spent"
    else:
        try:
            row.update(fn())
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
        except Exception as exc:  # one failing path must not stop the suite
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            row["traceback"] = traceback.format_exc()[-1500:]
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if "ms" in row and row.get("batch"):
        row["img_per_s"] = 1000.0 * row["batch"] / row["ms"]
    rows.append(row)
    status = f"{row['ms']:.2f} ms" if "ms" in row else row.get("error") or row.get("skipped")
    print(f"  {name}: {status}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------- refiner
def refiner_section(args, device, budget, rows) -> None:
    from dissam.models.isnet import build_refiner

    torch.manual_seed(0)
    net = build_refiner("dis-sam").eval().to(device)
    for batch in args.batches:
        x = torch.rand(batch, 5, args.size, args.size, device=device) - 0.5
        for prec in args.precisions:
            if prec == "fp16" and device.type != "cuda":
                continue
            for cl in (False, True):
                def run(x=x, prec=prec, cl=cl):
                    fmt = torch.channels_last if cl else torch.contiguous_format
                    net.to(memory_format=fmt)
                    xx = x.contiguous(memory_format=fmt)
                    dtype = DTYPES[prec]

                    def fn():
                        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                                    enabled=dtype != torch.float32):
                            return net(xx)[0][0]

                    return _bench(fn, device, args.warmup, args.repeats, budget)

                name = f"refiner {prec}{' channels_last' if cl else ''} b{batch}"
                _guard(rows, name, budget, run, group="refiner", batch=batch, precision=prec, channels_last=cl,
                       size=args.size)
    net.to(memory_format=torch.contiguous_format)
    if not args.no_onnx:
        ort_section(args, net, device, budget, rows)


def ort_section(args, net, device, budget, rows) -> None:
    """The exported refiner under every available ONNX Runtime execution provider."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        rows.append({"path": "refiner ORT", "group": "ort", "skipped": f"{', '.join(missing)} not installed"})
        return
    import numpy as np
    import onnxruntime as ort

    from dissam.runtime.onnx_export import export_refiner

    tmp = Path(tempfile.mkdtemp(prefix="dissam_gpu_"))
    path = tmp / "refiner.onnx"
    try:
        t0 = time.perf_counter()
        export_refiner(net.cpu() if args.export_on_cpu else net, path, size=args.size)
        export_s = time.perf_counter() - t0
    except Exception as exc:
        rows.append({"path": "refiner ORT", "group": "ort", "error": f"export failed: {type(exc).__name__}: {exc}"})
        return
    finally:
        net.to(device)
    available = ort.get_available_providers()
    wanted = []
    if device.type == "cuda":
        # a TensorRT engine build cannot be interrupted and may take minutes: only with time to spare
        if "TensorrtExecutionProvider" in available and not args.quick and budget.left() > 120:
            for fp16 in (False, True):
                wanted.append((f"TensorRT {'fp16' if fp16 else 'fp32'}", [("TensorrtExecutionProvider", {
                    "device_id": device.index or 0, "trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(tmp / "trt")}), "CUDAExecutionProvider", "CPUExecutionProvider"]))
        if "CUDAExecutionProvider" in available:
            wanted.append(("CUDA fp32", [("CUDAExecutionProvider", {"device_id": device.index or 0}),
                                         "CPUExecutionProvider"]))
    wanted.append(("CPU fp32", ["CPUExecutionProvider"]))
    for batch in args.batches[:1] if device.type == "cuda" else args.batches:
        x = (np.random.default_rng(0).random((batch, 5, args.size, args.size), dtype=np.float32) - 0.5)
        for label, providers in wanted:
            def run(providers=providers, x=x, label=label):
                t0 = time.perf_counter()
                sess = ort.InferenceSession(str(path), providers=providers)
                session_s = time.perf_counter() - t0
                used = sess.get_providers()[0]
                cpu_warm = 1 if label.startswith("CPU") else args.warmup
                reps = min(args.repeats, 3) if label.startswith("CPU") and device.type == "cuda" else args.repeats
                res = _bench(lambda: sess.run(["d1"], {"x": x}), torch.device("cpu"), cpu_warm, reps, budget)
                res["peak_mb"] = None
                return {**res, "provider_used": used, "session_s": session_s, "export_s": export_s}

            _guard(rows, f"refiner ORT {label} b{batch}", budget, run, group="ort", batch=batch, size=args.size)
    rows.append({"path": "ORT providers available", "group": "ort", "available": available})


# ------------------------------------------------------------------------------------------------ SAM
def sam_section(args, device, budget, rows) -> None:
    from transformers import SamConfig, SamModel

    for name in args.vits:
        if budget.left() <= 0:
            rows.append({"path": f"sam {name}", "group": "sam", "skipped": "time budget spent"})
            continue
        cfg = TINY_VIT if args.tiny else VITS[name]
        try:
            with torch.device(device):  # build on the device: no slow CPU init of ViT-H
                model = SamModel(SamConfig(vision_config=cfg)).eval()
        except Exception as exc:
            rows.append({"path": f"sam {name}", "group": "sam", "error": f"{type(exc).__name__}: {exc}"})
            continue
        px = torch.randn(1, 3, 1024, 1024, device=device)
        for prec in args.sam_precisions:
            if prec == "fp16" and device.type != "cuda":
                continue
            dtype = DTYPES[prec]

            def run(dtype=dtype, model=model, px=px):
                def fn():
                    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                                enabled=dtype != torch.float32):
                        return model.vision_encoder(pixel_values=px).last_hidden_state

                return _bench(fn, device, args.warmup, args.repeats, budget)

            _guard(rows, f"sam {name} encoder {prec}", budget, run, group="sam", batch=1, precision=prec,
                   tiny=args.tiny)
        del model, px


# ----------------------------------------------------------------------------------------------- main
def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    for mod in ("transformers", "onnx", "onnxruntime", "numpy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = "not installed"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    return env


def print_table(rows: list[dict]) -> None:
    print("| path | batch | ms / call | ms / image | images / s | peak CUDA MB | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "available" in r:
            print(f"| {r['path']} | | | | | | {', '.join(r['available'])} |")
            continue
        b = r.get("batch") or 1
        if "ms" in r:
            note = ", ".join(f"{k} {r[k]:.1f} s" for k in ("export_s", "session_s") if r.get(k) is not None)
            if r.get("provider_used"):
                note = f"ran on {r['provider_used']}; {note}"
            peak = f"{r['peak_mb']:.0f}" if r.get("peak_mb") is not None else "–"
            print(f"| {r['path']} | {b} | {r['ms']:.2f} | {r['ms'] / b:.2f} | {1000 * b / r['ms']:.1f} | {peak} | {note} |")
        else:
            print(f"| {r['path']} | {b} | – | – | – | – | {r.get('error') or r.get('skipped')} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu (default cuda)")
    ap.add_argument("--out", default="gpu_suite.json", help="JSON results (default gpu_suite.json)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, ViT-B/L only, no TensorRT; on the CPU also tiny sizes (a smoke test)")
    ap.add_argument("--budget-s", type=float, default=200.0, help="stop measuring after this many seconds")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    ap.add_argument("--no-sam", action="store_true", help="skip the SAM encoders")
    ap.add_argument("--no-cudnn-benchmark", action="store_true",
                    help="leave torch.backends.cudnn.benchmark off (PyTorch's default, as dissam's predictor runs)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: CUDA is not available here; use --device cpu", file=sys.stderr)
        return 2
    if device.type == "cuda":
        # fixed shapes: let cuDNN pick its fastest kernels (--no-cudnn-benchmark: what dissam's
        # predictor gets, which leaves PyTorch's default, benchmark off)
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    args.tiny = args.quick and device.type == "cpu"
    args.size = 64 if args.tiny else 1024
    args.batches = [1, 2] if args.tiny else [1, 8]
    args.precisions = ["fp32", "fp16", "bf16"]
    args.sam_precisions = ["fp32", "bf16"]
    args.vits = ["vit_b", "vit_l"] if args.quick else ["vit_b", "vit_l", "vit_h"]
    if args.tiny:
        args.vits = ["vit_b"]
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.warmup = 1 if args.tiny else (2 if args.quick else 3)
    args.export_on_cpu = False
    budget = Budget(args.budget_s)
    rows: list[dict] = []
    env = environment(device)
    print(f"gpu_suite on {env.get('gpu', env['device'])}, torch {env['torch']}", file=sys.stderr)
    refiner_section(args, device, budget, rows)
    if not args.no_sam:
        sam_section(args, device, budget, rows)
    result = {"environment": env, "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "rows": rows, "total_s": time.perf_counter() - t_start,
              "notes": "random weights; ms are medians after warm-ups, CUDA-synchronised; refiner = ISNetDIS(5)"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\n{env.get('gpu', env['device'])}, torch {env['torch']}, transformers {env['transformers']}, "
          f"onnxruntime {env['onnxruntime']}; total {result['total_s']:.0f} s\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
