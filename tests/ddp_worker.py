"""Run under ``python -m torch.distributed.run --nproc_per_node 2 --max-restarts 1 tests/ddp_worker.py OUT``
(gloo, CPU). Each step below runs once: a step a rank has finished (``OUT/done/<step>.<rank>``) is
skipped when torchrun restarts the processes.

1. ``grads``: every rank computes the trainer's refiner loss on its half of a fixed batch of 4 and
   back-propagates through DistributedDataParallel; rank 0 saves the (all-reduced, averaged)
   gradients to ``OUT/ddp_grads.pt``. BatchNorm runs in eval mode (running statistics): in train mode
   each process would normalise with the statistics of its own half batch, which is what the released
   single-process code cannot produce either; SyncBatchNorm (runtime.sync_bn) is the option for that.
2. ``run``: a two-step training run through ``Trainer.fit()`` with rank-0 logging and saving in ``OUT/run``.
3. ``invariance``: three steps at a global batch of 4 (BatchNorm in eval mode, a loaded GT encoder
   ``OUT/gte.safetensors`` in eval mode) as 2 processes x 2 (``OUT/inv_accum1``) and as 2 processes
   x 1 x 2 accumulation steps (``OUT/inv_accum2``).
4. ``valid``: sharded validation of a fixed refiner on 5 items: rank r's numbers in ``OUT/valid<r>.json``.
5. ``full``: the training of the CLI arguments below on the split ``OUT/split`` (8 samples;
   DisDataset's uint8 path with a cache), uninterrupted, in ``OUT/runs/full``.
6. ``restarted``: the same CLI run in ``OUT/runs/restarted``, where rank 1 exits abruptly after refiner
   step 3 the first time (``OUT/crashed``); torchrun restarts both processes, which skip steps 1-5
   and continue this run with ``--resume auto``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_helpers import ThinDataset  # noqa: E402

from dissam.train import Trainer, load_config  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"
OVERRIDES = ["gt_encoder.max_steps=1", "gt_encoder.valid_every=0", "schedule.max_steps=2", "optim.batch_size=2"]
VALID_METRICS = ("maxFm", "MAE", "mIoU")


def invariance_overrides(gte_path: Path, accum_steps: int) -> list[str]:
    """Three refiner steps at a global batch of 4 (split as asked), BatchNorm in eval mode in both networks."""
    return [
        f"gt_encoder.checkpoint={gte_path}",
        "gt_encoder.bn_mode=eval",
        "model.bn_mode=eval",
        "optim.global_batch_size=4",
        "optim.lr=5e-4",  # small enough that Adam does not blow float rounding up past 1e-5 in 3 steps
        f"optim.accum_steps={accum_steps}",
        "schedule.max_steps=3",
        "schedule.valid_every=0",
        "runtime.state_every=0",
    ]


def cli_args(out: Path, name: str) -> list[str]:
    """``dissam train`` on ``out/split`` (8 samples: epochs of 2 steps at 2 per process on 2
    processes; state every 2 steps) in ``out/runs/<name>``."""
    return [
        "train", "--resume", "auto", "--config", str(TINY),
        f"data.train=[{out / 'split'}]", f"data.cache_dir={out / 'cache'}", "data.size=64",
        f"runtime.out_dir={out / 'runs'}", f"runtime.run_name={name}",
        "gt_encoder.max_steps=2", "gt_encoder.valid_every=0", "schedule.max_steps=5", "schedule.valid_every=0",
        "optim.batch_size=2", "runtime.state_every=2", "data.prompt_dropout=[0.3, 0.3]",
    ]


def fixed_batch(ds, indices):
    items = [ds[i] for i in indices]
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items])}


def refiner_grads(trainer: Trainer, indices) -> dict[str, torch.Tensor]:
    """Gradients of the trainer's refiner loss (side + feature + ORTHO) on ``indices``, BN in eval mode."""
    trainer.refiner.eval()
    trainer.gte.eval().requires_grad_(False)
    fwd = trainer._wrap(trainer.refiner)
    out = trainer._step_refiner(fwd, fixed_batch(trainer.train_dataset, indices))
    out["loss"].backward()
    return {n: p.grad.detach().clone() for n, p in trainer.refiner.named_parameters()}


def valid_model():
    from dissam.models.isnet import build_refiner

    torch.manual_seed(21)
    return build_refiner("dis-sam-compact")


def crash_once(out: Path):
    """A Trainer hook that kills rank 1 after refiner step 3, once (marker ``out/crashed``)."""
    marker = out / "crashed"

    def hook(trainer, stage, step):
        if (stage, step, trainer.dist.rank) == ("refiner", 3, 1) and not marker.exists():
            marker.write_text(str(step))
            os._exit(17)  # an abrupt death: no cleanup, the other rank is left in a collective

    return hook


def main(out: Path) -> None:
    import dissam.train.trainer as trainer_module
    from dissam.cli import main as cli_main
    from dissam.train.validation import evaluate_model

    rank = int(os.environ["RANK"])
    done = out / "done"
    done.mkdir(exist_ok=True)
    ds = ThinDataset(8, 64, seed=11, augment=True)
    cfg = load_config(TINY, OVERRIDES)

    def grads():
        t = Trainer(cfg, run_dir=out / "grad_run", train_dataset=ds, valid_datasets=[])
        g = refiner_grads(t, [2 * rank, 2 * rank + 1])
        if t.dist.is_main:
            torch.save({"world_size": t.dist.world_size, "grads": g}, out / "ddp_grads.pt")

    def run():
        t = Trainer(cfg, run_dir=out / "run", train_dataset=ds, valid_datasets=[ThinDataset(2, 64, seed=12)])
        summary = t.fit()
        if t.dist.is_main:
            (out / "summary.json").write_text(json.dumps(summary))

    def invariance():
        for accum in (1, 2):
            inv = load_config(TINY, invariance_overrides(out / "gte.safetensors", accum))
            Trainer(inv, run_dir=out / f"inv_accum{accum}", train_dataset=ds, valid_datasets=[]).fit()

    def valid():
        from dissam.train.distributed import init_distributed

        dist, _ = init_distributed("cpu")
        scores = evaluate_model(valid_model(), [ThinDataset(5, 64, seed=13)], VALID_METRICS, input_key="image",
                                device=torch.device("cpu"), dist=dist)
        (out / f"valid{rank}.json").write_text(json.dumps(scores))

    def full():  # what `dissam train` runs for these arguments, without ending the process group
        args = cli_args(out, "full")
        assert args[:5] == ["train", "--resume", "auto", "--config", str(TINY)]
        Trainer(load_config(TINY, args[5:])).fit()

    def restarted():
        class CrashingTrainer(trainer_module.Trainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.hooks.append(crash_once(out))

        trainer_module.Trainer = CrashingTrainer  # dissam.commands.train imports it when it runs
        assert cli_main(cli_args(out, "restarted")) == 0  # destroys the process group at the end

    for step in (grads, run, invariance, valid, full, restarted):
        marker = done / f"{step.__name__}.{rank}"
        if not marker.exists():
            step()
            marker.write_text("done")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
