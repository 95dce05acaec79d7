"""The two-stage DIS-SAM training loop, one code path for one process and torchrun.

Stage (a), ``gt_encoder``: train ``ISNetGTEncoder`` on the ground truths (input = label, six-side
``20·BCE + 0.5·IoU`` + ORTHO, AdamW 1e-4) until the validation maxF exceeds ``target_maxf``, its step
budget runs out or ``early_stop`` validations bring no gain; or load it from ``gt_encoder.checkpoint``.
The frozen encoder then runs in ``bn_mode`` (``train`` as released: batch statistics, running stats
keep moving; ``eval``: running stats).

Stage (b), ``refiner``: ``ISNetDIS(in_ch=5)``; loss = side loss + feature MSE against the encoder's
features of the label + ORTHO; AdamW 4e-5; validation every ``schedule.valid_every`` steps with the
paper's metrics on the authors' saved-map protocol; best checkpoint by ``schedule.select_metric``;
early stop.

The parts live in their own modules of :mod:`dissam.train` (schedule, models, objectives,
validation, datasets and datapath, batching, step, param_groups, run_folder, resume, runlog); this
one holds the trainer's setup and its loop, one named step at a time.

Run folder: ``config.yaml``, ``metrics.jsonl`` (appended), ``state.pt`` (resume state, atomic,
``torch.load(weights_only=True)``), ``gt_encoder.safetensors``, ``best.safetensors``,
``final.safetensors`` (+ ``.json``; ``dissam.checkpoints.load_refiner`` reads them), ``tb/``.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dissam.checkpoints import save_checkpoint
from dissam.errors import TrainingError
from dissam.losses import OrthoRegularizer
from dissam.models.isnet import REFINER_VARIANTS
from dissam.train.config import AMP_DTYPES, TrainConfig
from dissam.train.datapath import StageBatches, share_file_digests
from dissam.train.datasets import build_datasets
from dissam.train.distributed import all_finite, barrier, check_device_options, init_distributed
from dissam.train.models import (
    convert_sync_bn,
    set_bn_eval,
    training_gt_encoder,
    training_refiner,
    wrap_for_training,
)
from dissam.train.objectives import gt_encoder_loss, refiner_loss
from dissam.train.param_groups import param_groups
from dissam.train.resume import (
    STATE_FILE,
    Resumable,
    StageState,
    pack_state,
    restore_state,
    seed_everything,
    write_state,
)
from dissam.train.run_folder import open_run_folder
from dissam.train.runlog import LossMeter, RunLog, Throughput
from dissam.train.schedule import StageSchedule, scheduled_lr, stage_schedule
from dissam.train.step import accumulated_step, non_finite_error
from dissam.train.validation import authors_u8, evaluate_model
from dissam.train.wandb_logger import WandbLogger

# build_datasets, scheduled_lr and authors_u8 are re-exported: they were defined here before the split.
__all__ = ["Trainer", "TrainingError", "train", "build_datasets", "scheduled_lr", "authors_u8", "STATE_FILE"]

LossFn = Callable[[nn.Module, dict], dict[str, torch.Tensor]]


class Trainer:
    """Runs both stages. ``fit()`` returns a summary dict and never calls ``exit()``.

    Args:
        cfg: the resolved :class:`TrainConfig`.
        run_dir: the run folder (default ``runtime.out_dir / runtime.run_name``).
        train_dataset, valid_datasets: datasets of the item format of :mod:`dissam.train.datasets`;
            default: built from ``cfg.data`` with ``dissam.data``.
        resume: continue from ``run_dir/state.pt``.
        hooks: callables ``hook(trainer, stage, step)`` run after every optimizer step (after the
            resume state of that step, if any, is written) — for tests and custom logging.
    """

    assemble_on_device: bool | None = None
    """Assemble uint8 items (flip, normalise) on the training device; default: on a GPU, not on the CPU."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path | None = None,
        train_dataset=None,
        valid_datasets: Sequence | None = None,
        resume: bool = False,
        hooks: Sequence[Callable] = (),
    ):
        self.cfg = cfg = copy.deepcopy(cfg).validate()  # the layout below is recorded in it
        self.hooks = list(hooks)
        rt = cfg.runtime
        self.dist, self.device = init_distributed(rt.device, rt.backend, rt.dist_timeout_s)
        check_device_options(rt.amp, rt.sync_bn, self.dist, self.device)
        if self.assemble_on_device is None:
            self.assemble_on_device = self.device.type != "cpu"
        self.amp_dtype: torch.dtype = getattr(torch, AMP_DTYPES[rt.amp])
        if rt.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if run_dir is None:
            run_dir = Path(rt.out_dir) / (rt.run_name or time.strftime("%Y%m%d-%H%M%S"))
        self.run_dir = Path(run_dir)
        self.state_path = self.run_dir / STATE_FILE
        # the batch layout, checked against a resumed state and recorded in config.yaml
        self.layout, saved = open_run_folder(cfg, self.dist, self.run_dir, resume)

        if train_dataset is None:
            train_dataset, built_valid = build_datasets(cfg)
            valid_datasets = built_valid if valid_datasets is None else valid_datasets
        self.train_dataset = train_dataset
        self.valid_datasets = list(valid_datasets or [])
        share_file_digests([self.train_dataset, *self.valid_datasets], self.dist)

        seed_everything(rt.seed)  # the same initial weights on every rank
        self.refiner, self.refiner_config = training_refiner(cfg, self.device)
        torch.manual_seed(rt.seed + 1)
        self.gte = training_gt_encoder(cfg, self.device)
        if rt.sync_bn and self.dist.enabled:
            convert_sync_bn(self.refiner, self.gte)
        # after the init, each rank its own random stream (prompt dropout differs between shards)
        seed_everything(rt.seed + 7919 * self.dist.rank)

        self.stage_state = {"gt_encoder": StageState(), "refiner": StageState()}
        if self.gte is None or cfg.gt_encoder.checkpoint:
            self.stage_state["gt_encoder"].done = True
            self.stage_state["gt_encoder"].stop_reason = "loaded" if self.gte is not None else "disabled"
        self.scaler = torch.amp.GradScaler("cuda", enabled=(rt.amp == "fp16" and self.device.type == "cuda"))
        self.refiner_groups = param_groups(self.refiner, cfg.optim.freeze, cfg.optim.lr_mult)
        self.opt_refiner = self._adamw(self.refiner_groups.groups, cfg.optim.lr)
        self.opt_gte = self._adamw(self.gte.parameters(), cfg.gt_encoder.lr) if self.gte is not None else None
        self.ortho_refiner = OrthoRegularizer(self.refiner, cfg.loss.ortho_mode, cfg.loss.ortho_weight)
        self.ortho_gte = (
            OrthoRegularizer(self.gte, cfg.loss.ortho_mode, cfg.loss.ortho_weight) if self.gte is not None else None
        )
        self.resumed_from: int | None = None
        if saved is not None:
            self._load_state(saved)
        wandb = None
        if rt.wandb:
            wandb = WandbLogger(self.run_dir, rt.wandb_project, cfg.to_dict())
        self.runlog = RunLog(self.run_dir, enabled=self.dist.is_main, tensorboard=rt.tensorboard,
                             progress=rt.progress, wandb=wandb)

    # ---------------------------------------------------------------------------------- helpers
    def _adamw(self, params, lr: float) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.AdamW(params, lr=lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)

    def _autocast(self):
        if self.amp_dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP (and torch.compile) around ``model`` for the forward pass of training."""
        return wrap_for_training(model, self.dist, self.device, compile=self.cfg.runtime.compile)

    def _train_mode(self, model: nn.Module) -> None:
        """Train mode for the model of a stage; the refiner's BatchNorm in eval mode under
        ``model.bn_mode=eval``."""
        model.train()
        if model is self.refiner and self.cfg.model.bn_mode == "eval":
            set_bn_eval(model)

    def _gte_forward_mode(self) -> None:
        self.gte.requires_grad_(False)
        self.gte.train(self.cfg.gt_encoder.bn_mode == "train")

    # ---------------------------------------------------------------------------- resume state
    def _resumable(self) -> Resumable:
        return Resumable(self.refiner, self.opt_refiner, self.gte, self.opt_gte, self.scaler)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (tensors and primitives only; :mod:`dissam.train.resume`)."""
        state = pack_state(self.cfg.to_dict(), self.stage_state, self._resumable(), self.dist.world_size)
        state["global_batch"] = self.layout.global_batch
        return state

    def save_state(self) -> None:
        """Write ``state.pt`` atomically (rank 0)."""
        if self.dist.is_main:
            write_state(self.state_path, self.state_dict())

    def _load_state(self, saved: dict) -> None:
        restore_state(saved, self.stage_state, self._resumable(), self.dist.world_size)
        self.resumed_from = self.stage_state["refiner"].step

    def _save_model(self, name: str, model: nn.Module, config, stage: str, extra: dict) -> Path | None:
        if not self.dist.is_main:
            return None
        meta = {"stage": stage, "train_config": self.cfg.to_dict(), "input_size": self.cfg.data.size, **extra}
        return save_checkpoint(self.run_dir / f"{name}.safetensors", model, config, meta)

    # ------------------------------------------------------------------------------ validation
    def validate(self, stage: str, metrics: Sequence[str]) -> dict[str, float]:
        """Paper metrics of the current model on every validation set, averaged over the sets
        (every rank scores its share, every rank receives the numbers; ``{}`` without validation
        data). The refiner gets the 5-channel image, the GT encoder its label, as in the released
        code."""
        if not self.valid_datasets:
            return {}
        model = self.refiner if stage == "refiner" else self.gte
        result = evaluate_model(
            model,
            self.valid_datasets,
            metrics,
            input_key="image" if stage == "refiner" else "label",
            device=self.device,
            dtype=self.amp_dtype,
            batch_size=self.cfg.data.valid_batch_size,
            num_workers=self.cfg.data.num_workers,
            dist=self.dist,
        )
        if model.training:
            self._train_mode(model)  # evaluate_model restores train mode on every layer
        return result

    # ------------------------------------------------------------------------------ the losses
    def _step_refiner(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Stage (b) loss parts of ``batch`` (:func:`dissam.train.objectives.refiner_loss`)."""
        return refiner_loss(model, batch, gte=self.gte, ortho=self.ortho_refiner, lc=self.cfg.loss,
                            device=self.device, autocast=self._autocast)

    def _step_gte(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Stage (a) loss parts of ``batch`` (:func:`dissam.train.objectives.gt_encoder_loss`)."""
        return gt_encoder_loss(model, batch, ortho=self.ortho_gte, lc=self.cfg.loss, device=self.device,
                               autocast=self._autocast)

    # ------------------------------------------------------------------------------ one stage
    def _stage_parts(self, stage: str) -> tuple[nn.Module, torch.optim.Optimizer, LossFn]:
        """The model trained in ``stage``, its optimizer and its loss; sets which networks learn
        (in stage (b) the GT encoder is frozen and runs in ``bn_mode``)."""
        if stage == "refiner":
            if self.gte is not None:
                self._gte_forward_mode()
            return self.refiner, self.opt_refiner, self._step_refiner
        self.gte.requires_grad_(True)
        return self.gte, self.opt_gte, self._step_gte

    def _begin(self, sched: StageSchedule, st: StageState) -> bool:
        """False when the stage has nothing left to do: it ended, and a resume did not raise its
        budget (nor may it: stage (a) is not reopened once the refiner has started)."""
        if not st.done:
            return True
        if not sched.extends(st.stop_reason, st.step, st.epoch) or (
            sched.stage == "gt_encoder" and self.stage_state["refiner"].step > 0
        ):
            return False
        st.done, st.stop_reason = False, ""
        return True

    def _stage_batches(self, stage: str) -> StageBatches:
        d = self.cfg.data
        return StageBatches(
            self.train_dataset, batch_size=self.layout.per_process, num_workers=d.num_workers,
            seed=self.cfg.runtime.seed + (0 if stage == "refiner" else 1000), rank=self.dist.rank,
            world_size=self.dist.world_size, pin_memory=self.device.type == "cuda",
            prefetch_factor=d.prefetch_factor, ram_cache=d.ram_cache, uint8=d.uint8_items,
            assemble_in_workers=not self.assemble_on_device,
        )

    def _check_finite(self, sched: StageSchedule, st: StageState, loss: torch.Tensor, out: dict) -> None:
        """Stop every rank with :class:`TrainingError` when the loss is not finite on any of them."""
        if not all_finite(self.dist, loss):
            self.runlog.write({"stage": sched.stage, "step": st.step, "error": "non-finite loss"})
            raise non_finite_error(sched.stage, st.step + 1, loss, out, self.state_path)

    def _optimizer_step(
        self, sched: StageSchedule, st: StageState, opt: torch.optim.Optimizer, loss_fn: LossFn, fwd, batches,
        micro_batches: int, meter: Throughput,
    ) -> tuple[dict[str, float], float]:
        """One optimizer step on ``micro_batches`` batches of ``batches`` at the scheduled learning
        rate (times each group's factor); returns the loss parts and the scheduled rate."""
        lr = scheduled_lr(self.cfg.optim, sched.base_lr, st.step, sched.max_steps, sched.min_lr)
        factors = self.refiner_groups.factors if opt is self.opt_refiner else [1.0]
        for group, factor in zip(opt.param_groups, factors):
            group["lr"] = lr if factor == 1.0 else lr * factor
        res = accumulated_step(
            fwd, batches, micro_batches, loss_fn=loss_fn, opt=opt, scaler=self.scaler, device=self.device,
            check_finite=lambda loss, out: self._check_finite(sched, st, loss, out),
        )
        meter.add(res.samples * self.dist.world_size, res.wait_s, res.total_s)
        st.step += 1
        st.batch_in_epoch += micro_batches
        return res.parts, lr

    def _report_step(
        self, sched: StageSchedule, st: StageState, lr: float, meter: LossMeter, parts: dict, speed: Throughput
    ) -> None:
        """Progress bar, and every ``runtime.log_every`` steps a line of mean loss parts, the
        learning rate and the rates (:class:`~dissam.train.runlog.Throughput`)."""
        meter.add(parts)
        self.runlog.bar_step(parts["loss"])
        every = self.cfg.runtime.log_every
        if every and st.step % every == 0:
            self.runlog.write(
                {"stage": sched.stage, "step": st.step, "epoch": st.epoch, **meter.means(), "lr": lr, **speed.take()}
            )

    def _validate_and_select(self, sched: StageSchedule, st: StageState) -> bool:
        """Validate, keep the best (``best.safetensors`` for the refiner), count validations without
        gain; True when the stage should stop (GT encoder good enough, or early stop)."""
        res = self.validate(sched.stage, sched.metrics)
        st.last_valid_step = st.step
        if not res:
            return False
        value = res[sched.select]
        improved = sched.improves(value, st.best)
        if improved:
            st.best, st.best_step, st.bad_validations = value, st.step, 0
            if sched.stage == "refiner":
                extra = {"step": st.step, "valid": res}
                self._save_model("best", self.refiner, self.refiner_config, sched.stage, extra)
        else:
            st.bad_validations += 1
        self.runlog.write(
            {"stage": sched.stage, "step": st.step, "epoch": st.epoch, "valid": res, "best": st.best, "improved": improved}
        )
        target = self.cfg.gt_encoder.target_maxf
        if sched.stage == "gt_encoder" and value > target:
            st.stop_reason = f"valid maxF {value:.4f} > {target}"
            return True
        if sched.early_stop and st.bad_validations >= sched.early_stop:
            st.stop_reason = f"early stop: {st.bad_validations} validations without gain"
            return True
        return False

    def _check_step(self, sched: StageSchedule, st: StageState) -> tuple[bool, bool]:
        """After a step: validate when due, stop at the step budget. Returns ``(validated, stop)``."""
        validated = stop = False
        if sched.valid_every and st.step % sched.valid_every == 0 and self.valid_datasets:
            stop = self._validate_and_select(sched, st)
            validated = True
        if sched.max_steps and st.step >= sched.max_steps:
            st.stop_reason = st.stop_reason or f"step budget {sched.max_steps}"
            stop = True
        return validated, stop

    def _end_stage(self, sched: StageSchedule, st: StageState) -> None:
        """A last validation if the last step was not one, the stage's checkpoint
        (``gt_encoder`` / ``final``), and the state."""
        cfg, stage = self.cfg, sched.stage
        if (
            cfg.schedule.valid_at_end
            and self.valid_datasets
            and st.last_valid_step != st.step
            and not (stage == "gt_encoder" and st.stop_reason.startswith("valid"))
        ):
            self._validate_and_select(sched, st)
        st.done = True
        self.runlog.close_bar()
        self.runlog.write({"stage": stage, "step": st.step, "event": "stage end", "reason": st.stop_reason, "best": st.best})
        if stage == "gt_encoder":
            if st.stop_reason.startswith("early stop"):
                warnings.warn(
                    f"GT encoder: {st.stop_reason} (best maxF {st.best}); continuing with it", stacklevel=3
                )
            extra = {"step": st.step, "best_maxFm": st.best}
            self._save_model("gt_encoder", self.gte, REFINER_VARIANTS[cfg.gt_encoder.variant], stage, extra)
        else:
            extra = {"step": st.step, "best": st.best, "best_step": st.best_step}
            self._save_model("final", self.refiner, self.refiner_config, stage, extra)
        self.save_state()
        barrier(self.dist)

    def _run_stage(self, stage: str) -> None:
        """Train ``stage`` from where its :class:`StageState` stands until a budget, the GT
        encoder's target or early stopping ends it; state every ``runtime.state_every`` steps, at
        every validation and at the end."""
        st = self.stage_state[stage]
        if st.done and st.stop_reason in ("loaded", "disabled"):
            return
        sched = stage_schedule(self.cfg, stage, self.layout.lr_factor)
        model, opt, loss_fn = self._stage_parts(stage)
        sched.check_has_end(bool(self.valid_datasets))
        if not self._begin(sched, st):
            return
        self._train_mode(model)
        fwd = self._wrap(model)
        self.runlog.start_bar(stage, sched.max_steps, st.step)
        meter, speed = LossMeter(), Throughput(self.device)
        state_every = self.cfg.runtime.state_every
        batches = self._stage_batches(stage)
        stop = bool(sched.max_steps and st.step >= sched.max_steps)  # a resumed run that had just finished
        try:
            while not stop:
                if sched.max_epochs and st.epoch >= sched.max_epochs:
                    st.stop_reason = st.stop_reason or f"epoch budget {sched.max_epochs}"
                    break
                loader = batches.epoch(st.epoch, st.batch_in_epoch)
                remaining, it = len(loader), iter(loader)
                while remaining > 0:
                    group = min(self.layout.accum_steps, remaining)  # an epoch's last step may have fewer
                    parts, lr = self._optimizer_step(sched, st, opt, loss_fn, fwd, it, group, speed)
                    remaining -= group
                    self._report_step(sched, st, lr, meter, parts, speed)
                    validated, stop = self._check_step(sched, st)
                    if validated or stop or (state_every and st.step % state_every == 0):
                        self.save_state()
                    for hook in self.hooks:
                        hook(self, stage, st.step)
                    if stop:
                        break
                else:
                    st.epoch += 1
                    st.batch_in_epoch = 0
        finally:
            batches.close()
        self._end_stage(sched, st)

    def fit(self) -> dict[str, Any]:
        """Run stage (a) (unless loaded/disabled/finished) and stage (b); returns a summary."""
        self.runlog.open()
        threads = torch.get_num_threads()
        if self.cfg.runtime.num_threads > 0:
            torch.set_num_threads(self.cfg.runtime.num_threads)
        self.runlog.write({"event": "start", **self.layout.record(), "param_groups": self.refiner_groups.describe(),
                           "resumed_from": self.resumed_from})
        try:
            if self.gte is not None:
                self._run_stage("gt_encoder")
            self._run_stage("refiner")
        finally:
            torch.set_num_threads(threads)
            self.runlog.close()
        r, g = self.stage_state["refiner"], self.stage_state["gt_encoder"]
        return {
            "run_dir": str(self.run_dir),
            "steps": r.step,
            "epochs": r.epoch,
            "best": r.best,
            "best_step": r.best_step,
            "select_metric": self.cfg.schedule.select_metric,
            "stop_reason": r.stop_reason,
            "gt_encoder_steps": g.step,
            "gt_encoder_maxFm": g.best,
            "gt_encoder_stop_reason": g.stop_reason,
        }


def train(cfg: TrainConfig, run_dir=None, resume: bool = False, **kwargs) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it; returns its summary."""
    return Trainer(cfg, run_dir=run_dir, resume=resume, **kwargs).fit()
