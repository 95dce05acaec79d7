"""Seconds per training step at 1024² (and per validation forward): our step vs the authors' loop.

Both steps: ISNetDIS(in_ch=5) forward, frozen GT encoder forward on the label (train-mode BN, as
released), six-side 20·BCE + 0.5·IoU, feature MSE, ORTHO over all non-bias parameters, one backward,
one AdamW step, fp32. Differences measured:
  * ORTHO: ours sums |G - I| without building an identity (dissam.losses.OrthoRegularizer); the
    authors build ``torch.eye`` for every parameter at every step.
  * validation forward: ours under ``torch.inference_mode()``; the authors' has no no_grad.

    .venv/bin/python benchmarks/train_step.py --size 1024 --batch 1 2 --reps 1
"""

from __future__ import annotations

import argparse
import time

import torch

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--variant", default="dis-sam")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = build_refiner(args.variant).train()
    gte = build_refiner("gt-encoder" if args.variant == "dis-sam" else "gt-encoder-compact").train()
    gte.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=4e-5, weight_decay=0)
    ours = make_step(net, gte, opt, OrthoRegularizer(net, "all_nonbias", 1e-8))
    theirs = make_step(net, gte, opt, lambda: authors_ortho(net))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}, reps {args.reps}")
    print("| batch | ours s/step | authors s/step | ratio authors/ours | ORTHO ours s | ORTHO authors s |")
    print("|---|---|---|---|---|---|")
    for b in args.batch:
        x = torch.randn(b, 5, args.size, args.size)
        y = (torch.rand(b, 1, args.size, args.size) > 0.5).float()
        t_theirs = timed(lambda x=x, y=y: theirs(x, y), args.reps)
        t_ours = timed(lambda x=x, y=y: ours(x, y), args.reps)
        reg = OrthoRegularizer(net, "all_nonbias", 1e-8)
        o_ours = timed(lambda reg=reg: reg().backward(), 2)
        o_theirs = timed(lambda: authors_ortho(net).backward(), 2)
        print(f"| {b} | {t_ours:.2f} | {t_theirs:.2f} | {t_theirs / t_ours:.3f} | {o_ours:.3f} | {o_theirs:.3f} |")
    net.eval()
    x = torch.randn(1, 5, args.size, args.size)

    def valid_ours():
        with torch.inference_mode():
            net(x)

    t_vo = timed(valid_ours, args.reps)
    t_vt = timed(lambda: net(x), args.reps)
    print(f"validation forward (batch 1): ours (inference_mode) {t_vo:.2f} s, authors (grad graph) {t_vt:.2f} s, ratio {t_vt / t_vo:.3f}")


if __name__ == "__main__":
    main()
