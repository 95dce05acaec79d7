"""``dissam benchmark``: predict and evaluate the paper's Tables 1 and 3 in one command."""

from __future__ import annotations

import argparse
import sys

from dissam.commands.engine_flags import add_engine_arguments, ray_options_from_args
from dissam.commands.weights import add_runtime_arguments, add_stage1_arguments

HELP = "reproduce the paper's tables: GT-box prompts, DIS-SAM and baselines, box-jitter robustness"

DESCRIPTION = """\
Run the paper's benchmark protocol end to end (see docs/paper-tables.md):

  dissam benchmark --data DIS5K --sam sam_vit_l_0b3195.pth --refiner dis-sam.pth -o runs/table1
  dissam benchmark --data ZEROSHOT --splits DIS-VD,COIFT,HRSOD,ThinObject --sam ... --refiner ... -o runs/table3

For each image of ROOT/<split>/{im,gt,[mask]}: the SAM box is the whole-GT box, the SAM mask is
mask/<stem>.png when present (else computed with SAM and cached in RUN_DIR), the refiner input is
built as the authors' loader builds it, and d1 is saved as they save it (min-max, x255, uint8) to
RUN_DIR/predictions/<method>/<split>/<stem>.png. Then the paper's metrics go to
RUN_DIR/table.{md,csv,json} (DIS-TE(1-4) = mean of DIS-TE1..4) and RUN_DIR/per_image/.

The zero-shot sets as distributed (COIFT, HRSOD, ThinObject-5K: <split>/images, masks with instance IDs,
list/test.txt) are read too, one sample per instance, their ground truths converted into RUN_DIR/gt/<split>
(docs/paper-tables.md):
  dissam benchmark --data zeroshot --splits COIFT,HRSOD,ThinObject5K --sam ... --refiner ... -o runs/table3

Existing predictions are reused: re-running only computes what is missing.
Sharding: torchrun --nproc-per-node 4 -m dissam benchmark ...  (each rank its slice; rank 0 evaluates),
or --engine ray (pip install 'dissam[ray]'): CPU tasks read, an actor pool predicts, the driver evaluates.
Exit status 1 if any image failed (they are listed at the end and in RUN_DIR/failures.json).
"""


def _split_list(values):
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dissam.metrics import ALL_METRICS

    parser.add_argument(
        "--data", required=True, metavar="ROOT", help="dataset root holding <split>/im, gt[, mask]"
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        metavar="SPLIT",
        help="splits under ROOT (comma or space separated; default: the DIS-5K ones present, DIS-VD,DIS-TE1..4)",
    )
    parser.add_argument("-o", "--run-dir", required=True, metavar="RUN_DIR", help="output folder (resumable)")
    add_stage1_arguments(parser)  # the "sam" column and dis-sam's coarse masks (when mask/ has none)
    parser.add_argument(
        "--refiner", metavar="CKPT", help="DIS-SAM refiner checkpoint (.pth or dissam .safetensors)"
    )
    parser.add_argument(
        "--hq-sam", metavar="SOURCE", help="HQ-SAM (Hugging Face folder or hub id) for the hq-sam baseline"
    )
    parser.add_argument(
        "--isnet", metavar="PTH", help="IS-Net DIS weights (isnet.pth) for the isnet baseline"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="subset of dis-sam,sam,hq-sam,isnet (default: every one whose weights are given; "
        "naming one without its weights is an error)",
    )
    parser.add_argument(
        "--box-jitter",
        action="append",
        metavar="PCT",
        help="also run with each box side moved by up to PCT%% of the box size (repeatable or 5,10)",
    )
    parser.add_argument(
        "--jitter-seed", type=int, default=0, metavar="S", help="seed of the box jitter (default 0)"
    )
    parser.add_argument(
        "--size", type=int, default=1024, help="refiner input size (default 1024, the paper's)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps (default: best available)")
    add_runtime_arguments(parser)  # default: the faithful torch fp32 path
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="evaluation processes (default 1)"
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        help=f"subset of {','.join(ALL_METRICS)} (default all)",
    )
    parser.add_argument(
        "--skeleton-cache", metavar="DIR", help="HCE skeleton cache folder (default: user cache)"
    )
    parser.add_argument("--no-eval", action="store_true", help="predict only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dissam.errors import DisSamError
    from dissam.paper_tables import BenchmarkConfig, parse_jitters, run_benchmark
    from dissam.sharding import dist_env

    if args.workers < 1:
        raise DisSamError(f"--workers must be >= 1, got {args.workers}")
    env = dist_env()
    rank, world = env.rank, env.world_size
    cfg = BenchmarkConfig(
        data=args.data,
        run_dir=args.run_dir,
        splits=_split_list(args.splits),
        sam=args.sam,
        stage1=args.stage1,
        refiner=args.refiner,
        hq_sam=args.hq_sam,
        isnet=args.isnet,
        methods=_split_list(args.methods),
        jitters=parse_jitters(args.box_jitter),
        jitter_seed=args.jitter_seed,
        size=args.size,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        workers=args.workers,
        metrics=_split_list(args.metrics),
        progress=not args.no_progress,
        skeleton_cache=args.skeleton_cache or "auto",
        evaluate=not args.no_eval,
        rank=rank,
        world_size=world,
        local_rank=env.local_rank,
    )
    if args.engine == "ray":
        if world > 1:
            raise DisSamError("--engine ray runs as one driver: do not start it under torchrun")
        from dissam.engines.ray_benchmark import run_benchmark_ray

        out = run_benchmark_ray(cfg, ray_options_from_args(args))
        n, secs = out["images"], out["seconds"]
        print(f"dissam benchmark [ray]: {n} image(s) predicted, {out['stats']['computed']} map(s), "
              f"{len(out['failures'])} failure(s) in {secs:.1f} s ({n / max(secs, 1e-9):.2f} images/s)")
    else:
        out = run_benchmark(cfg)
    st = out["stats"]
    prefix = f"[rank {rank}] " if world > 1 else ""
    print(
        f"{prefix}{st['computed']} prediction(s) computed, {st['reused']} reused, "
        f"{st['sam_calls']} SAM image(s) encoded"
    )
    table = out["table"]
    if table is not None:
        print(table["markdown"], end="")
        for line in table["incomplete"]:
            print(f"not evaluated (incomplete): {line}", file=sys.stderr)
        print(f"wrote {args.run_dir}/table.md, table.csv, table.json and per_image/")
    failures = out["failures"]
    if failures:
        print(f"\n{len(failures)} prediction(s) failed:", file=sys.stderr)
        for f in failures[:50]:
            print(f"  {f['method']} {f['split']}/{f['stem']}: {f['error']}", file=sys.stderr)
        if len(failures) > 50:
            print(f"  ... {len(failures) - 50} more in {args.run_dir}/failures.json", file=sys.stderr)
        return 1
    return 0
