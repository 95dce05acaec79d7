"""Seconds per training step at 1024² (and per validation forward): our step vs the authors' loop.

Both steps: ISNetDIS(in_ch=5) forward, frozen GT encoder forward on the label (train-mode BN, as
released), six-side 20·BCE + 0.5·IoU, feature MSE, ORTHO over all non-bias parameters, one backward,
one AdamW step, fp32. Differences measured:
  * ORTHO: ours sums |G - I| without building an identity (dissam.losses.OrthoRegularizer); the
    authors build ``torch.eye`` for every parameter at every step.
  * validation forward: ours under ``torch.inference_mode()``; the authors' has no no_grad.

    .venv/bin/python benchmarks/train_step.py --size 1024 --batch 1 2 --reps 1

Writes benchmarks/results/train_step.json (``--out``: elsewhere) with the table ``steps``.

``--memory-table``: the memory and speed of the trainer's own refiner step (dissam.train.objectives
.refiner_loss: refiner + frozen GT encoder in train-mode BN, side + feature + ORTHO losses, one
backward, one AdamW step) for each batch x AMP dtype, each in its own process: peak memory
(``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on the CPU), seconds per step
(median of ``--reps`` after one warm-up) and samples per second::

    python benchmarks/train_step.py --memory-table --device cuda --batch 1 2 6 --amp none bf16 --reps 5
    .venv/bin/python benchmarks/train_step.py --memory-table --device cpu --batch 1 2 --amp none bf16 --reps 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
from results_io import markdown_table, save

from dissam.losses import OrthoRegularizer, feature_loss, side_loss
from dissam.models.isnet import build_refiner


def authors_ortho(model, weight=1e-8):
    total = 0.0
    for name, p in model.named_parameters():
        if "bias" not in name:
            w = p.view(p.shape[0], -1)
            total = total + weight * (w @ w.t() - torch.eye(w.shape[0])).abs().sum()
    return total


def make_step(net, gte, opt, ortho):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        sides, feats = net(x)
        _, teacher = gte(y)
        loss = side_loss(sides, y)[0] + feature_loss(feats, teacher) + ortho()
        loss.backward()
        opt.step()

    return step


def timed(fn, reps):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def trainer_step_cell(args) -> dict:
    """One (batch, amp) cell of the memory table, in this process."""
    from dissam.train.config import LossConfig
    from dissam.train.objectives import refiner_loss

    dev = torch.device(args.device)
    torch.manual_seed(0)
    net = build_refiner(args.variant).to(dev).train()
    gte = build_refiner("gt-encoder" if args.variant == "dis-sam" else "gt-encoder-compact").to(dev).train()
    gte.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=4e-5, weight_decay=0)
    ortho = OrthoRegularizer(net, "all_nonbias", 1e-8)
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.cell_amp]
    scaler = torch.amp.GradScaler("cuda", enabled=args.cell_amp == "fp16")

    def autocast():
        return nullcontext() if dtype is None else torch.autocast(dev.type, dtype=dtype)

    b, s = args.cell_batch, args.size
    batch = {"image": torch.randn(b, 5, s, s, device=dev), "label": (torch.rand(b, 1, s, s, device=dev) > 0.5).float()}

    def step():
        opt.zero_grad(set_to_none=True)
        out = refiner_loss(net, batch, gte=gte, ortho=ortho, lc=LossConfig(), device=dev, autocast=autocast)
        scaler.scale(out["loss"]).backward()
        scaler.step(opt)
        scaler.update()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(1 + args.reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    step_s = statistics.median(times[1:]) if args.reps else times[0]
    return {"batch": b, "amp": args.cell_amp, "step_s": step_s, "peak_mb": peak}


def memory_table(args) -> None:
    rows = []
    for amp in args.amp:
        for b in args.batch:
            cmd = [sys.executable, __file__, "--cell-batch", str(b), "--cell-amp", amp, "--device", args.device,
                   "--size", str(args.size), "--reps", str(args.reps), "--variant", args.variant]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"batch": b, "amp": amp, "error": tail[:120]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    mem = "peak CUDA memory allocated" if args.device.startswith("cuda") else "peak RSS of the process"
    print(f"{name}, torch {torch.__version__}, {args.variant} + GT encoder, {args.size}^2, "
          f"median of {args.reps} step(s) after a warm-up")
    print(f"| batch | AMP | {mem} MiB | s / step | samples / s |\n|---:|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['batch']} | {r['amp']} | – | – | {r['error']} |")
        else:
            print(f"| {r['batch']} | {r['amp']} | {r['peak_mb']:,.0f} | {r['step_s']:.3f} | {r['batch'] / r['step_s']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--variant", default="dis-sam")
    ap.add_argument("--memory-table", action="store_true", help="the trainer step's memory and speed per batch x AMP")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", nargs="+", default=["none", "bf16"], choices=["none", "bf16", "fp16"])
    ap.add_argument("--out", help="the results file of the default mode (default benchmarks/results/train_step.json)")
    ap.add_argument("--cell-batch", type=int, help=argparse.SUPPRESS)  # one cell, in a subprocess
    ap.add_argument("--cell-amp", default="none", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cell_batch:
        print(json.dumps(trainer_step_cell(args)))
        return
    if args.memory_table:
        memory_table(args)
        return
    torch.manual_seed(0)
    net = build_refiner(args.variant).train()
    gte = build_refiner("gt-encoder" if args.variant == "dis-sam" else "gt-encoder-compact").train()
    gte.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=4e-5, weight_decay=0)
    ours = make_step(net, gte, opt, OrthoRegularizer(net, "all_nonbias", 1e-8))
    theirs = make_step(net, gte, opt, lambda: authors_ortho(net))
    steps, table = {}, []
    for b in args.batch:
        x = torch.randn(b, 5, args.size, args.size)
        y = (torch.rand(b, 1, args.size, args.size) > 0.5).float()
        t_theirs = timed(lambda x=x, y=y: theirs(x, y), args.reps)
        t_ours = timed(lambda x=x, y=y: ours(x, y), args.reps)
        reg = OrthoRegularizer(net, "all_nonbias", 1e-8)
        o_ours = timed(lambda reg=reg: reg().backward(), 2)
        o_theirs = timed(lambda: authors_ortho(net).backward(), 2)
        steps[str(b)] = {"ours_s": t_ours, "authors_s": t_theirs, "authors_over_ours": t_theirs / t_ours,
                         "ortho_ours_s": o_ours, "ortho_authors_s": o_theirs,
                         "ortho_saving": 1 - o_ours / o_theirs, "ortho_share_of_step": o_ours / t_ours}
        table.append([b, f"{t_ours:.2f}", f"{t_theirs:.2f}", f"{t_theirs / t_ours:.2f}", f"{o_ours:.3f}",
                      f"{o_theirs:.3f}"])
        print(f"batch {b}: {steps[str(b)]}", flush=True)
    net.eval()
    x = torch.randn(1, 5, args.size, args.size)

    def valid_ours():
        with torch.inference_mode():
            net(x)

    t_vo = timed(valid_ours, args.reps)
    t_vt = timed(lambda: net(x), args.reps)
    results = {"size": args.size, "reps": args.reps, "variant": args.variant, "threads": torch.get_num_threads(),
               "batches": steps, "validation": {"ours_s": t_vo, "authors_s": t_vt, "speedup": t_vt / t_vo}}
    save("train_step", results, {"steps": markdown_table(
        ["batch", "ours s/step", "authors s/step", "authors/ours", "ORTHO ours (s)", "ORTHO authors (s)"], table,
        "r" * 6)}, out=args.out,
        notes=f"refiner {args.variant} + GT encoder, fp32, {args.size}², one warm-up + {args.reps} timed step(s) each")

if __name__ == "__main__":
    main()
