"""Image-encoder time per image for each stage 1, side by side in one run (docs/benchmarks.md,
docs/stage1.md).

Encoders, each with transformers' default full-size config and random weights (timing only, no
downloads), each in its own subprocess (so one model's memory and threads do not affect the next):

| name          | model                          | input  |
|---------------|--------------------------------|--------|
| sam-vit-b     | SamModel(SamConfig())          | 1024²  |
| sam-vit-l     | SamModel, ViT-L sizes          | 1024²  |
| sam2.1-tiny   | Sam2Model(Sam2Config())        | 1024²  |
| sam2.1-large  | Sam2Model, Hiera-L sizes       | 1024²  |
| sam3          | Sam3TrackerModel(Sam3TrackerConfig()) vision encoder (shared by SAM 3's detector) | 1008² |

Per encoder: one warm-up call, then ``--runs`` timed calls (default 2) under ``torch.inference_mode``;
the table gives the median, the ratio to SAM ViT-L (the paper's stage 1) and the peak memory.

Usage:
  PYTHONPATH=src python benchmarks/stage1_encoders.py            # all encoders, CPU
  PYTHONPATH=src python benchmarks/stage1_encoders.py --quick    # ViT-B and SAM 2.1 tiny, one timed run
  PYTHONPATH=src python benchmarks/stage1_encoders.py --device cuda --dtype bf16 --runs 10

Writes benchmarks/results/stage1_encoders.json (CPU, fp32; other devices and dtypes
stage1_encoders_DEVICE_DTYPE.json; ``--out``: elsewhere) with the table ``encoders``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from results_io import markdown_table, save

ENCODERS = ("sam-vit-b", "sam-vit-l", "sam2.1-tiny", "sam2.1-large", "sam3")
LABELS = {"sam-vit-l": "sam-vit-l (the paper's stage 1)", "sam3": "sam3 (tracker/detector vision encoder)"}
QUICK = ("sam-vit-b", "sam2.1-tiny")


def build(name: str):
    """``(encode(x) callable's module, input side, parameter count)`` for one encoder."""
    import torch

    torch.manual_seed(0)
    if name.startswith("sam-vit"):
        from transformers import SamConfig, SamModel

        cfg = SamConfig()  # ViT-B sizes by default
        if name == "sam-vit-l":  # sam_vit_l: 1024 wide, 24 blocks, 16 heads, MLP 4096
            cfg = SamConfig(vision_config=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                               global_attn_indexes=[5, 11, 17, 23]))
        model = SamModel(cfg).eval()
        return model.vision_encoder, 1024, lambda m, x: m(pixel_values=x)
    if name.startswith("sam2.1"):
        from transformers import Sam2Config, Sam2Model

        if name == "sam2.1-tiny":
            cfg = Sam2Config()  # Hiera-T sizes by default
        else:  # Hiera-L (sam2.1_hiera_large)
            cfg = Sam2Config(vision_config=dict(
                backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=144, num_attention_heads=2,
                                     blocks_per_stage=[2, 6, 36, 4], embed_dim_per_stage=[144, 288, 576, 1152],
                                     num_attention_heads_per_stage=[2, 4, 8, 16], window_size_per_stage=[8, 4, 16, 8],
                                     global_attention_blocks=[23, 33, 43],
                                     window_positional_embedding_background_size=[7, 7]),
                backbone_channel_list=[1152, 576, 288, 144]))
        model = Sam2Model(cfg).eval()
        return model, 1024, lambda m, x: m.get_image_embeddings(x)
    if name == "sam3":
        from transformers import Sam3TrackerConfig, Sam3TrackerModel

        model = Sam3TrackerModel(Sam3TrackerConfig()).eval()
        return model, int(model.config.vision_config.image_size), lambda m, x: m.get_image_embeddings(x)
    raise SystemExit(f"unknown encoder {name}")


def worker(name: str, device: str, dtype: str, runs: int) -> dict:
    import resource

    import torch

    model, side, call = build(name)
    params = sum(p.numel() for p in model.parameters())
    model = model.to(device)
    x = torch.randn(1, 3, side, side, device=device)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=dt, enabled=dtype != "fp32"):
        for i in range(runs + 1):
            sync()
            t0 = time.perf_counter()
            call(model, x)
            sync()
            if i:  # the first call is the warm-up
                times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return {"name": name, "side": side, "params": params, "times": times, "rss_mib": peak, "gpu_mib": gpu}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--runs", type=int, default=2, help="timed calls per encoder after one warm-up (default 2)")
    ap.add_argument("--only", nargs="+", choices=ENCODERS, help="a subset of the encoders")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, one timed call each")
    ap.add_argument("--out", help="the results file (default benchmarks/results/stage1_encoders.json on the CPU)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.dtype, args.runs)))
        return 0
    names = QUICK if args.quick else tuple(args.only or ENCODERS)
    runs = 1 if args.quick else args.runs
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--worker", name, "--device", args.device, "--dtype", args.dtype,
               "--runs", str(runs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{name}: {results[-1]['times']}", file=sys.stderr)
    if not results:
        return 1
    import statistics

    med = {r["name"]: statistics.median(r["times"]) for r in results}
    ref = "sam-vit-l" if "sam-vit-l" in med else results[0]["name"]
    cuda = args.device.startswith("cuda")
    mem = "peak GPU MiB" if cuda else "peak RSS MiB"
    table, encoders = [], {}
    for r in results:
        m = r["gpu_mib"] if cuda else r["rss_mib"]
        s = med[r["name"]]
        # keyed without dots ("sam2_1-tiny"), so that the docs can name a figure by its path
        encoders[r["name"].replace(".", "_")] = {**r, "median_s": s, "speed_vs_ref": med[ref] / s, "memory_mib": m}
        table.append([LABELS.get(r["name"], r["name"]), f"{r['side']}²", f"{r['params'] / 1e6:.1f} M", f"{s:.1f}" if s >= 1 else f"{s:.3f}",
                      f"{med[ref] / s:.2f}×", f"{m:.0f}"])
    summary = {"device": args.device, "dtype": args.dtype, "runs": runs, "reference": ref, "encoders": encoders}
    if "sam-vit-b" in med and "sam2.1-tiny" in med:  # what the docs say of the small SAM 2.1
        summary["tiny_vs_vit_b"] = med["sam-vit-b"] / med["sam2.1-tiny"]
        summary["tiny_memory_vs_vit_b"] = encoders["sam2_1-tiny"]["memory_mib"] / encoders["sam-vit-b"]["memory_mib"]
    name = "stage1_encoders" if (args.device, args.dtype) == ("cpu", "fp32") else \
        f"stage1_encoders_{args.device.split(':')[0]}_{args.dtype}"
    save(name, summary, {"encoders": markdown_table(["encoder", "input", "parameters", "s / image",
                                                      f"speed vs {ref}", mem], table, "lllrrr")}, out=args.out,
         notes=f"{args.device}, {args.dtype}, median of {runs} timed call(s) after one warm-up; each encoder in its "
               "own process; transformers' default full-size configs, random weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
