"""Speed and peak memory of every runtime path, side by side in one run, each path in its own process.

Groups (``--groups``, default all):
  refiner   ``ISNetDIS(5)`` (the paper's full refiner, random weights: speed does not depend on them) at
            1024², batch 1: torch fp32 as the predictor ran it before this change (contiguous),
            ``channels_last``, bf16 autocast with ``channels_last`` (bf16 in the contiguous layout is
            several times slower on this CPU: oneDNN has no fast NCHW bf16 path), ONNX Runtime fp32.
  sam       SAM ViT-B image encoder at 1024² (random weights, re-initialised N(0, 0.02) so that the
            encoder does not output zeros): torch fp32, ORT fp32, ORT dynamic int8 (bf16 autocast is
            left out: emulated on CPUs without bf16 instructions, minutes per call); with
            the embedding's max abs diff and cosine and the box mask IoU against torch fp32.
  vitl      SAM ViT-L encoder, one call each (after one warm-up) for torch fp32 and ORT int8.
  process   the whole ``dissam predict`` process for one 480x640 image and one box with ViT-B SAM and
            the full refiner (random weights, saved to a temporary folder): today's default (the code
            of ``--base``, a git revision), and this tree's default, bf16, onnx fp32 (first run,
            exporting; then cached) and onnx int8 (first run quantising; then cached).

Timings: median of ``--repeats`` calls after one warm-up; threads ``--threads``. Peak memory: the
child process's max RSS. Ratios are against the first path of each group.

Usage:  PYTHONPATH=src python benchmarks/runtime_paths.py --threads 2 --repeats 3 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

REFINER_PATHS = ("torch fp32 (before)", "torch fp32 channels_last", "torch bf16 channels_last",
                 "ORT fp32")
SAM_PATHS = ("torch fp32", "ORT fp32", "ORT int8")
VITL_PATHS = ("torch fp32", "ORT int8")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), times


# ------------------------------------------------------------------------------------------ children
def child_refiner(path: str, size: int, repeats: int, tmp: Path) -> dict:
    import torch

    from dissam.models.isnet import build_refiner
    from dissam.refiner import Refiner, forward_d1
    from dissam.runtime.runners import OnnxRefinerRunner, TorchRefinerRunner

    torch.manual_seed(0)
    ref = Refiner.from_module(build_refiner("dis-sam").eval(), input_size=size)
    x = torch.rand(1, 5, size, size) - 0.5
    extra = {}
    if path == "torch fp32 (before)":
        def run():
            return forward_d1(ref.net, x)
    elif path.startswith("torch"):
        runner = TorchRefinerRunner(ref, "bf16" if "bf16" in path else "fp32", channels_last="channels_last" in path)
        run = lambda: runner(x)  # noqa: E731
    else:
        from dissam.runtime.onnx_export import export_refiner

        onnx_path = tmp / f"refiner{size}.onnx"
        if not onnx_path.is_file():
            t0 = time.perf_counter()
            export_refiner(ref, onnx_path)
            extra["export_s"] = time.perf_counter() - t0
        runner = OnnxRefinerRunner(ref, "fp32", path=onnx_path)
        run = lambda: runner(x)  # noqa: E731
    med, times = _time(run, repeats)
    out = run().float().numpy()
    np.save(tmp / f"refiner_{path.replace(' ', '_')}.npy", out)
    return {"seconds": med, "times": times, "peak_rss_mb": _peak_mb(), **extra}


def _vit(size: str):
    import torch
    from transformers import SamConfig, SamModel

    cfg = {"b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]),
           "l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     global_attn_indexes=[5, 11, 17, 23])}[size]
    torch.manual_seed(0)
    model = SamModel(SamConfig(vision_config=cfg)).eval()
    with torch.no_grad():  # transformers' init leaves the blocks outputting zeros: re-initialise
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.split(".")[-2].endswith("norm"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.normal_(0, 0.02)
    return model


def child_sam(path: str, size: str, repeats: int, tmp: Path) -> dict:
    import torch

    from dissam.runtime.runners import OnnxSamEncoderRunner, TorchSamEncoderRunner

    model = _vit(size)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, 1024, 1024, generator=g)
    extra = {}
    if path.startswith("torch"):
        runner = TorchSamEncoderRunner(model, "bf16" if "bf16" in path else "fp32")
    else:
        from dissam.runtime.onnx_export import export_sam_encoder, quantize_int8

        fp32 = tmp / f"sam_{size}.onnx"
        if not fp32.is_file():
            t0 = time.perf_counter()
            export_sam_encoder(model, fp32)
            extra["export_s"] = time.perf_counter() - t0
        onnx_path = fp32
        if "int8" in path:
            onnx_path = tmp / f"sam_{size}.int8.onnx"
            if not onnx_path.is_file():
                t0 = time.perf_counter()
                quantize_int8(fp32, onnx_path)
                extra["quantize_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner = OnnxSamEncoderRunner(model, None, path=onnx_path)
        extra["session_s"] = time.perf_counter() - t0
    med, times = _time(lambda: runner(pixels), repeats)
    emb, _ = runner(pixels)
    boxes = torch.tensor([[[100.0, 150.0, 700.0, 800.0], [300.0, 200.0, 600.0, 500.0]]])
    with torch.inference_mode():
        masks = model(image_embeddings=emb.float(), input_boxes=boxes, multimask_output=True).pred_masks[0] > 0
    np.save(tmp / f"sam{size}_{path.replace(' ', '_')}_emb.npy", emb.float().numpy())
    np.save(tmp / f"sam{size}_{path.replace(' ', '_')}_masks.npy", masks.numpy())
    return {"seconds": med, "times": times, "peak_rss_mb": _peak_mb(), **extra}


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(args.tmp)
    group, path = args.child.split(":", 1)
    if group == "refiner":
        res = child_refiner(path, args.size, args.repeats, tmp)
    elif group == "sam":
        res = child_sam(path, "b", args.repeats, tmp)
    else:
        res = child_sam(path, "l", 1, tmp)
    print("RESULT " + json.dumps(res))


def _run_child(group: str, path: str, args, tmp: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", f"{group}:{path}", "--tmp", str(tmp), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--size", str(args.size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (p.stderr or p.stdout)[-800:]}


def _iou(a, b) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


# ------------------------------------------------------------------------------------------ process
def process_group(args, tmp: Path) -> dict:
    """Wall time of whole `dissam predict` processes."""
    import torch
    from PIL import Image

    from dissam.checkpoints import save_checkpoint
    from dissam.models.isnet import build_refiner

    weights = tmp / "weights"
    weights.mkdir(exist_ok=True)
    _vit("b").save_pretrained(weights / "sam-vit-b-random")
    torch.manual_seed(0)
    save_checkpoint(weights / "dis-sam-random.safetensors", build_refiner("dis-sam").eval(),
                    metadata={"input_size": 1024})
    rng = np.random.default_rng(0)
    img = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp / "photo.png")
    base_src = tmp / "base_src"
    subprocess.run(f"git -C {ROOT} archive {args.base} src | tar -x -C {tmp} && mv {tmp}/src {base_src}",
                   shell=True, check=True)
    common = [str(tmp / "photo.png"), "--box", "100,80,540,420", "--sam", str(weights / "sam-vit-b-random"),
              "--refiner", str(weights / "dis-sam-random.safetensors"), "--device", "cpu"]
    runs = [
        (f"today's default ({args.base})", str(base_src), []),
        ("this tree, default (torch fp32, channels_last)", str(ROOT / "src"), []),
        ("--backend onnx (first run: exports)", str(ROOT / "src"), ["--backend", "onnx"]),
        ("--backend onnx (cached)", str(ROOT / "src"), ["--backend", "onnx"]),
        ("--backend onnx --precision int8 (first run: quantises, fp32 graphs cached)", str(ROOT / "src"),
         ["--backend", "onnx", "--precision", "int8"]),
        ("--backend onnx --precision int8 (cached)", str(ROOT / "src"), ["--backend", "onnx", "--precision", "int8"]),
    ]
    out: dict = {}
    masks = {}
    for i, (name, src, extra) in enumerate(runs):
        env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(args.threads),
               "DISSAM_CACHE": str(tmp / "cache")}
        o = tmp / f"out{i}"
        cmd = [sys.executable, "-c",
               f"import torch,sys; torch.set_num_threads({args.threads}); from dissam.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "predict", *common, "-o", str(o), *extra]
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        rss = [int(x.split()[1]) for x in p.stderr.splitlines() if x.startswith("MAXRSS")]
        out[name] = {"seconds": wall, "peak_rss_mb": rss[0] / 1024 if rss else None, "rc": p.returncode}
        if p.returncode != 0:
            out[name]["error"] = p.stderr[-800:]
        elif (o / "photo_0.png").is_file():
            masks[name] = np.asarray(Image.open(o / "photo_0.png")) > 127
        print(f"  {name}: {wall:.1f} s", file=sys.stderr)
    first = next(iter(masks.values()), None)
    for name, m in masks.items():
        out[name]["mask_iou_vs_today"] = _iou(m, first)
    return out


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", default="refiner,sam,vitl,process")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="refiner input size")
    ap.add_argument("--base", default="d8e29e5", help="git revision whose default is 'today's default'")
    ap.add_argument("--out", help="write JSON results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    tmp = Path(tempfile.mkdtemp(prefix="dissam_rt_"))
    groups = args.groups.split(",")
    load = os.getloadavg()
    results: dict = {"threads": args.threads, "repeats": args.repeats, "loadavg_start": load}
    import torch

    results["torch"] = torch.__version__
    for group, paths in (("refiner", REFINER_PATHS), ("sam", SAM_PATHS), ("vitl", VITL_PATHS)):
        if group not in groups:
            continue
        res = {}
        for path in paths:
            res[path] = _run_child(group, path, args, tmp)
            print(f"  {group} {path}: {res[path].get('seconds', res[path].get('error'))}", file=sys.stderr)
        # agreement with the first (fp32) path
        if group == "refiner":
            ref = np.load(tmp / f"refiner_{paths[0].replace(' ', '_')}.npy")
            for path in paths:
                f = tmp / f"refiner_{path.replace(' ', '_')}.npy"
                if f.is_file():
                    d = np.load(f)
                    res[path]["max_abs_diff"] = float(np.abs(d - ref).max())
                    res[path]["mask_iou"] = _iou(d > 0.5, ref > 0.5)
        else:
            tag = "b" if group == "sam" else "l"
            if not (tmp / f"sam{tag}_{paths[0].replace(' ', '_')}_emb.npy").is_file():
                results[group] = res
                continue
            e0 = np.load(tmp / f"sam{tag}_{paths[0].replace(' ', '_')}_emb.npy")
            m0 = np.load(tmp / f"sam{tag}_{paths[0].replace(' ', '_')}_masks.npy")
            for path in paths:
                f = tmp / f"sam{tag}_{path.replace(' ', '_')}_emb.npy"
                if f.is_file():
                    e = np.load(f)
                    m = np.load(str(f).replace("_emb", "_masks"))
                    res[path]["emb_max_abs_diff"] = float(np.abs(e - e0).max())
                    res[path]["emb_cosine"] = float((e * e0).sum() / np.linalg.norm(e) / np.linalg.norm(e0))
                    res[path]["mask_iou_min"] = min(_iou(a, b) for a, b in zip(m.reshape(-1, *m.shape[-2:]),
                                                                            m0.reshape(-1, *m0.shape[-2:])))
        results[group] = res
    if "process" in groups:
        results["process"] = process_group(args, tmp)
    results["loadavg_end"] = os.getloadavg()
    print_tables(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


def print_tables(results: dict) -> None:
    print(f"\nthreads {results['threads']}, median of {results['repeats']} after a warm-up; load average "
          f"{results['loadavg_start'][0]:.1f} at start, {results['loadavg_end'][0]:.1f} at end\n")
    for group in ("refiner", "sam", "vitl", "process"):
        if group not in results:
            continue
        res = results[group]
        first = next(iter(res.values()))
        print(f"\n### {group}\n")
        print("| path | s | speed-up | peak RSS MB | agreement with the first row |")
        print("|---|---:|---:|---:|---|")
        for name, r in res.items():
            if "seconds" not in r:
                print(f"| {name} | failed | | | {r.get('error', '')[:120]!r} |")
                continue
            agree = ""
            if "max_abs_diff" in r:
                agree = f"max abs {r['max_abs_diff']:.1e}, mask IoU {r['mask_iou']:.4f}"
            elif "emb_cosine" in r:
                agree = (f"emb max abs {r['emb_max_abs_diff']:.1e}, cosine {r['emb_cosine']:.5f}, "
                         f"mask IoU ≥ {r['mask_iou_min']:.4f}")
            elif "mask_iou_vs_today" in r:
                agree = f"mask IoU {r['mask_iou_vs_today']:.4f}"
            extra = ", ".join(f"{k} {r[k]:.1f}" for k in ("export_s", "quantize_s", "session_s") if k in r)
            rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "–"
            print(f"| {name} | {r['seconds']:.2f} | {first['seconds'] / r['seconds']:.2f}× | {rss} | {agree}"
                  f"{' (' + extra + ')' if extra else ''} |")


if __name__ == "__main__":
    main()
