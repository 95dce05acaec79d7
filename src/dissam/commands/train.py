"""``dissam train``: the two-stage DIS-SAM training (GT encoder, then refiner)."""

from __future__ import annotations

import argparse

HELP = "train the refiner (GT-encoder stage, then refiner), single process or under torchrun"

DESCRIPTION = """\
Start a run from a YAML config with key=value overrides, or continue one:

  dissam train --config configs/dis_sam.yaml data.train=[DIS5K/DIS-TR] data.valid=[DIS5K/DIS-VD]
  dissam train --config configs/tiny_cpu.yaml runtime.run_name=try1 optim.lr=1e-3
  dissam train --resume runs/try1                 # continue exactly where it stopped
  torchrun --nproc_per_node 4 -m dissam train --config configs/dis_sam.yaml   # DDP
  # restarted processes continue the run (the variable keeps PyTorch from reusing stale addresses)
  TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone --nproc_per_node 8 --max-restarts 3 \\
      -m dissam train --resume auto --config configs/dis_sam.yaml runtime.run_name=dis_sam

The run folder holds config.yaml, metrics.jsonl, state.pt (resume), gt_encoder/best/final
.safetensors (+ .json). Unknown keys and badly typed values are reported with the known keys.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="config file (defaults: the paper's settings)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue the run in RUN_DIR from its state.pt; 'auto': continue the run folder of --config and "
        "runtime.run_name if it holds a state, else start it (for torchrun --max-restarts and requeued jobs)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. optim.lr=1e-4 schedule.max_steps=500"
    )


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from dissam.errors import DisSamError
    from dissam.train.config import apply_overrides, config_from_dict, load_config
    from dissam.train.distributed import cleanup_distributed
    from dissam.train.resume import STATE_FILE
    from dissam.train.trainer import Trainer

    run_dir = None
    if args.resume == "auto":
        cfg = load_config(args.config, args.overrides)
        if not cfg.runtime.run_name:
            raise DisSamError("--resume auto needs a fixed run folder: set runtime.run_name (and runtime.out_dir)")
        run_dir = Path(cfg.runtime.out_dir) / cfg.runtime.run_name
        if not (run_dir / STATE_FILE).is_file():
            run_dir = None  # nothing to resume yet: start the run in that folder
    elif args.resume:
        if args.config:
            raise DisSamError("--resume RUN_DIR uses the run's own config.yaml; do not pass --config with it")
        run_dir = Path(args.resume)
    if run_dir is not None:
        import yaml

        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise DisSamError(f"cannot resume: {cfg_path} does not exist (is {run_dir} a dissam run folder?)")
        cfg = config_from_dict(yaml.safe_load(cfg_path.read_text()) or {})
        cfg = apply_overrides(cfg, args.overrides).validate()
        trainer = Trainer(cfg, run_dir=run_dir, resume=True)
    else:
        cfg = cfg if args.resume == "auto" else load_config(args.config, args.overrides)
        trainer = Trainer(cfg)
    if trainer.dist.is_main:
        resumed = "" if trainer.resumed_from is None else f", resumed at refiner step {trainer.resumed_from}"
        print(f"dissam train: {trainer.run_dir} ({trainer.layout.describe()}{resumed})", file=sys.stderr)
    try:
        summary = trainer.fit()
    finally:
        cleanup_distributed()
    if trainer.dist.is_main:
        print(json.dumps(summary, indent=1))
    return 0
