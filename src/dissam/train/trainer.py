"""The two-stage DIS-SAM training loop (docs/training.md), one code path for one process and torchrun.

Stage (a), ``gt_encoder``: train ``ISNetGTEncoder`` on the ground truths (input = label, six-side
``20·BCE + 0.5·IoU`` + ORTHO, AdamW 1e-4) until the validation maxF exceeds ``target_maxf``, its step
budget runs out or ``early_stop`` validations bring no gain; or load it from ``gt_encoder.checkpoint``.
The frozen encoder then runs in ``bn_mode`` (``train`` as released: batch statistics, running stats
keep moving; ``eval``: running stats).

Stage (b), ``refiner``: ``ISNetDIS(in_ch=5)``; loss = side loss + feature MSE against the encoder's
features of the label + ORTHO; AdamW 4e-5; validation every ``schedule.valid_every`` steps with the
paper's metrics on the authors' saved-map protocol (d1 resized to the original size, min-max, ×255,
uint8), under ``torch.inference_mode()``; best checkpoint by ``schedule.select_metric``; early stop.

Run folder: ``config.yaml``, ``metrics.jsonl`` (appended), ``state.pt`` (resume state, atomic,
``torch.load(weights_only=True)``), ``gt_encoder.safetensors``, ``best.safetensors``,
``final.safetensors`` (+ ``.json``; ``dissam.checkpoints.load_refiner`` reads them), ``tb/``.

Datasets yield dicts ``{"image": (5,S,S) float32, "label": (1,S,S) float32, "name": str,
"orig_hw": (H, W), "index": int}`` (``dissam.data.dataset.DisDataset``) and may have
``set_epoch(epoch)``. The validation ground truth at the original size comes from the dataset's
``gt_u8(index)`` method if it has one, else from ``dataset.samples[index].gt`` (a mask file), else
from the label itself (when the label is already at the original size).
"""

from __future__ import annotations

import io
import json
import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dissam.errors import DisSamError
from dissam.losses import OrthoRegularizer, feature_loss, side_loss
from dissam.train.config import HIGHER_IS_BETTER, TrainConfig, dump_config
from dissam.train.distributed import all_finite, barrier, broadcast_object, init_distributed
from dissam.utils import atomic_write_bytes

__all__ = ["Trainer", "TrainingError", "train", "authors_u8", "STATE_FILE"]

STATE_FILE = "state.pt"


class TrainingError(DisSamError):
    """Training cannot go on (non-finite loss, inconsistent resume state, ...)."""


def authors_u8(d1: torch.Tensor, orig_hw: tuple[int, int]) -> np.ndarray:
    """A prediction as the authors save it: ``d1`` (``(1, h, w)`` or ``(h, w)`` probabilities) resized
    bilinearly (align_corners False) to ``orig_hw = (H, W)``, min-max normalised per image (a constant
    map gives zeros instead of the released NaN), ×255 and truncated to ``uint8``: ``(H, W)``
    (:func:`dissam.transforms.postprocess` then :func:`dissam.transforms.to_authors_png`)."""
    from dissam.transforms import postprocess, to_authors_png

    return to_authors_png(postprocess(d1.detach().float().cpu().reshape(d1.shape[-2:]), orig_hw))


def _orig_hw_list(value, n: int) -> list[tuple[int, int]]:
    """The collated ``orig_hw`` (a (B,2) tensor, a [H(B), W(B)] pair or a list of pairs) as pairs."""
    if isinstance(value, torch.Tensor):
        return [(int(a), int(b)) for a, b in value.reshape(n, 2).tolist()]
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], torch.Tensor):
        return [(int(a), int(b)) for a, b in zip(value[0].tolist(), value[1].tolist())]
    return [(int(a), int(b)) for a, b in value]


def _gt_u8(dataset, index: int, label: torch.Tensor, orig_hw: tuple[int, int]) -> np.ndarray:
    fn = getattr(dataset, "gt_u8", None)
    if callable(fn):
        return np.asarray(fn(index))
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        gt = getattr(samples[index], "gt", None)
        if gt is not None:
            from dissam.io import read_mask

            return read_mask(gt)
    lab = label.reshape(label.shape[-2:])
    if tuple(lab.shape) != tuple(orig_hw):
        raise DisSamError(
            "the validation dataset gives neither gt_u8(index) nor samples[index].gt, and its labels are "
            "not at the original size: cannot evaluate on the paper's protocol"
        )
    return (lab.float() * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def _finite_maps(maps: Sequence[torch.Tensor]) -> bool:
    """False when a side map holds NaN/inf (BCE would raise instead of returning a NaN loss)."""
    return bool(torch.stack([torch.isfinite(m).all() for m in maps]).all())


def _nan_parts(device) -> dict[str, torch.Tensor]:
    nan = torch.full((), float("nan"), device=device)
    return {"loss": nan, "side": nan, "d1": nan}


def scheduled_lr(optim_cfg, base_lr: float, step: int, max_steps: int) -> float:
    """Learning rate for the optimizer step that follows ``step`` completed steps of a stage.

    ``constant`` (the released code) is ``base_lr`` throughout. ``cosine`` warms up linearly over
    ``warmup_steps`` and then follows half a cosine from ``base_lr`` down to ``min_lr`` at the stage's
    last step (``max_steps``); with no step budget it stays at ``base_lr``. Being a pure function of
    the step count, it resumes exactly.
    """
    if optim_cfg.lr_schedule == "constant" or max_steps <= 0:
        return base_lr
    warm = optim_cfg.warmup_steps
    if warm and step < warm:
        return base_lr * (step + 1) / warm
    span = max(1, max_steps - warm)
    t = min(1.0, max(0.0, (step - warm) / span))
    return optim_cfg.min_lr + 0.5 * (base_lr - optim_cfg.min_lr) * (1.0 + math.cos(math.pi * t))


class _SkipSampler(torch.utils.data.Sampler):
    """The indices of ``base`` (a DistributedSampler) after the first ``skip`` (to resume mid-epoch)."""

    def __init__(self, base, skip: int = 0):
        self.base, self.skip = base, skip

    def __iter__(self):
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def _rng_state() -> dict:
    st = np.random.get_state()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(st[1].astype(np.int64)),
        "numpy_pos": int(st[2]),
        "numpy_has_gauss": int(st[3]),
        "numpy_cached": float(st[4]),
        "python": [int(st) for st in random.getstate()[1]],
        "python_version": int(random.getstate()[0]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(
        ("MT19937", st["numpy_keys"].numpy().astype(np.uint32), st["numpy_pos"], st["numpy_has_gauss"], st["numpy_cached"])
    )
    random.setstate((st["python_version"], tuple(st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _StageState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    best_step: int = -1
    bad_validations: int = 0
    last_valid_step: int = -1
    done: bool = False
    stop_reason: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Trainer:
    """Runs both stages. ``fit()`` returns a summary dict and never calls ``exit()``.

    Args:
        cfg: the resolved :class:`TrainConfig`.
        run_dir: the run folder (default ``runtime.out_dir / runtime.run_name``).
        train_dataset, valid_datasets: datasets of the item format above; default: built from
            ``cfg.data`` with ``dissam.data``.
        resume: continue from ``run_dir/state.pt``.
        hooks: callables ``hook(trainer, stage, step)`` run after every optimizer step (after the
            resume state of that step, if any, is written) — for tests and custom logging.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path | None = None,
        train_dataset=None,
        valid_datasets: Sequence | None = None,
        resume: bool = False,
        hooks: Sequence[Callable] = (),
    ):
        self.cfg = cfg.validate()
        self.hooks = list(hooks)
        rt = cfg.runtime
        self.dist, self.device = init_distributed(rt.device, rt.backend)
        if self.device.type == "cuda" or rt.amp == "none":
            pass
        elif rt.amp == "fp16":
            raise DisSamError("runtime.amp=fp16 needs CUDA; use runtime.amp=bf16 or none on the CPU")
        if rt.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if run_dir is None:
            name = rt.run_name or time.strftime("%Y%m%d-%H%M%S")
            run_dir = Path(rt.out_dir) / name
        self.run_dir = Path(run_dir)
        self.state_path = self.run_dir / STATE_FILE
        if self.dist.is_main:
            if not resume and self.state_path.exists():
                raise DisSamError(
                    f"{self.run_dir} already holds a run; continue it with `dissam train --resume {self.run_dir}` "
                    "or choose another runtime.run_name"
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_config(cfg))
        barrier(self.dist)

        if train_dataset is None:
            train_dataset, built_valid = build_datasets(cfg)
            valid_datasets = built_valid if valid_datasets is None else valid_datasets
        self.train_dataset = train_dataset
        self.valid_datasets = list(valid_datasets or [])

        # Models: seeded init, identical on every rank.
        from dissam.models.isnet import REFINER_VARIANTS, build_refiner

        _seed_everything(rt.seed)
        self.refiner_config = REFINER_VARIANTS[cfg.model.variant]
        self.refiner = build_refiner(self.refiner_config)
        if cfg.model.init.startswith("isnet:"):
            from dissam.checkpoints import inflate_refiner_input, load_state_dict_strict, read_state_dict
            from dissam.hub import resolve_weights_file

            path = resolve_weights_file(cfg.model.init.split(":", 1)[1])  # a path or a registry name
            sd = inflate_refiner_input(read_state_dict(path), self.refiner_config.in_ch)
            load_state_dict_strict(self.refiner, sd, path)
        elif cfg.model.init.startswith("refiner:"):
            from dissam.checkpoints import load_state_dict_strict, read_state_dict
            from dissam.hub import resolve_weights_file

            path = resolve_weights_file(cfg.model.init.split(":", 1)[1])
            load_state_dict_strict(self.refiner, read_state_dict(path), path)
        self.refiner.to(self.device)
        self.gte = None
        if cfg.gt_encoder.enabled:
            torch.manual_seed(rt.seed + 1)
            if cfg.gt_encoder.checkpoint:
                from dissam.checkpoints import load_refiner

                self.gte = load_refiner(cfg.gt_encoder.checkpoint, device=self.device, eval_mode=False).net
                if not hasattr(self.gte, "conv_in") or not hasattr(self.gte.conv_in, "conv"):
                    raise DisSamError(f"gt_encoder.checkpoint={cfg.gt_encoder.checkpoint} is not a GT encoder")
            else:
                self.gte = build_refiner(cfg.gt_encoder.variant).to(self.device)
        _seed_everything(rt.seed + 7919 * self.dist.rank)

        self.stage_state = {"gt_encoder": _StageState(), "refiner": _StageState()}
        if self.gte is None or cfg.gt_encoder.checkpoint:
            self.stage_state["gt_encoder"].done = True
            self.stage_state["gt_encoder"].stop_reason = "loaded" if self.gte is not None else "disabled"
        self.scaler = torch.amp.GradScaler("cuda", enabled=(rt.amp == "fp16" and self.device.type == "cuda"))
        self.opt_refiner = self._adamw(self.refiner.parameters(), cfg.optim.lr)
        self.opt_gte = self._adamw(self.gte.parameters(), cfg.gt_encoder.lr) if self.gte is not None else None
        self.ortho_refiner = OrthoRegularizer(self.refiner, cfg.loss.ortho_mode, cfg.loss.ortho_weight)
        self.ortho_gte = (
            OrthoRegularizer(self.gte, cfg.loss.ortho_mode, cfg.loss.ortho_weight) if self.gte is not None else None
        )
        self.resumed_from: int | None = None
        if resume:
            self._load_state()
        self._tb = None
        self._bar = None

    # ------------------------------------------------------------------------------------- helpers
    def _adamw(self, params, lr: float) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.AdamW(params, lr=lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)

    def _autocast(self):
        amp = self.cfg.runtime.amp
        if amp == "none":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP (and torch.compile) around ``model`` for the forward pass of training."""
        out = model
        if self.dist.enabled:
            if self.cfg.runtime.sync_bn:
                out = nn.SyncBatchNorm.convert_sync_batchnorm(out)
            ids = [self.device.index] if self.device.type == "cuda" else None
            out = nn.parallel.DistributedDataParallel(out, device_ids=ids)
        if self.cfg.runtime.compile:
            out = torch.compile(out)
        return out

    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            stage, step = record.get("stage", ""), record.get("step", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "time"):
                    self._tb.add_scalar(f"{stage}/{k}", v, step)
            for k, v in (record.get("valid") or {}).items():
                self._tb.add_scalar(f"{stage}/valid_{k}", v, step)

    def _open_tensorboard(self) -> None:
        if self.dist.is_main and self.cfg.runtime.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency
                return
            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    # ------------------------------------------------------------------------------ resume state
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (tensors and primitives only)."""
        return {
            "format": "dissam-train-state",
            "version": 1,
            "config": self.cfg.to_dict(),
            "stages": {k: v.to_dict() for k, v in self.stage_state.items()},
            "refiner": self.refiner.state_dict(),
            "opt_refiner": self.opt_refiner.state_dict(),
            "gt_encoder": self.gte.state_dict() if self.gte is not None else {},
            "opt_gt_encoder": self.opt_gte.state_dict() if self.opt_gte is not None else {},
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "world_size": self.dist.world_size,
        }

    def save_state(self) -> None:
        """Write ``state.pt`` atomically (rank 0)."""
        if not self.dist.is_main:
            return
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic_write_bytes(self.state_path, buf.getvalue())

    def _load_state(self) -> None:
        if not self.state_path.is_file():
            raise DisSamError(f"cannot resume: {self.state_path} does not exist")
        try:
            st = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
            raise DisSamError(f"cannot resume: {self.state_path} is unreadable ({exc})") from exc
        if st.get("format") != "dissam-train-state":
            raise DisSamError(f"{self.state_path} is not a dissam training state")
        for k, v in st["stages"].items():
            self.stage_state[k] = _StageState(**v)
        self.refiner.load_state_dict(st["refiner"])
        self.opt_refiner.load_state_dict(st["opt_refiner"])
        if self.gte is not None and st["gt_encoder"]:
            self.gte.load_state_dict(st["gt_encoder"])
            if st["opt_gt_encoder"]:
                self.opt_gte.load_state_dict(st["opt_gt_encoder"])
        if st["scaler"]:
            self.scaler.load_state_dict(st["scaler"])
        if st.get("world_size", 1) == self.dist.world_size and self.dist.world_size == 1:
            _set_rng_state(st["rng"])
        self.resumed_from = self.stage_state["refiner"].step

    def _save_model(self, name: str, model: nn.Module, config, stage: str, extra: dict) -> Path | None:
        if not self.dist.is_main:
            return None
        from dissam.checkpoints import save_checkpoint

        meta = {
            "stage": stage,
            "train_config": self.cfg.to_dict(),
            "input_size": self.cfg.data.size,
            **extra,
        }
        return save_checkpoint(self.run_dir / f"{name}.safetensors", model, config, meta)

    # -------------------------------------------------------------------------------- validation
    def _valid_loaders(self):
        return [
            torch.utils.data.DataLoader(
                ds, batch_size=self.cfg.data.valid_batch_size, shuffle=False, num_workers=self.cfg.data.num_workers
            )
            for ds in self.valid_datasets
        ]

    def validate(self, stage: str, metrics: Sequence[str]) -> dict[str, float]:
        """Paper metrics of the current model on every validation set, averaged over the sets
        (rank 0 computes, every rank receives the numbers). The refiner gets the 5-channel image, the
        GT encoder its label, as in the released code."""
        from dissam.metrics import MetricSuite

        result: dict[str, float] = {}
        if self.dist.is_main and self.valid_datasets:
            model = self.refiner if stage == "refiner" else self.gte
            was_training = model.training
            model.eval()
            per_set = []
            with torch.inference_mode():
                for ds, loader in zip(self.valid_datasets, self._valid_loaders()):
                    suite = MetricSuite(metrics=tuple(metrics))
                    for batch in loader:
                        key = "image" if stage == "refiner" else "label"
                        x = batch[key].to(self.device)
                        with self._autocast():
                            d1 = model(x)[0][0]
                        n = x.shape[0]
                        hws = _orig_hw_list(batch["orig_hw"], n)
                        idx = batch["index"].tolist() if isinstance(batch["index"], torch.Tensor) else list(batch["index"])
                        for b in range(n):
                            gt = _gt_u8(ds, int(idx[b]), batch["label"][b], hws[b])
                            suite.step(authors_u8(d1[b], gt.shape), gt)
                    per_set.append(suite.results())
            model.train(was_training)
            result = {m: float(np.mean([r[m] for r in per_set])) for m in metrics}
        return broadcast_object(self.dist, result)

    # ------------------------------------------------------------------------------------ stages
    def _train_loader(self, stage: str, st: _StageState):
        from torch.utils.data import DataLoader, DistributedSampler

        seed = self.cfg.runtime.seed + (0 if stage == "refiner" else 1000)
        base = DistributedSampler(
            self.train_dataset,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
        base.set_epoch(st.epoch)
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(st.epoch)
        bs = self.cfg.optim.batch_size
        return DataLoader(
            self.train_dataset,
            batch_size=bs,
            sampler=_SkipSampler(base, st.batch_in_epoch * bs),
            num_workers=self.cfg.data.num_workers,
            drop_last=False,
        )

    def _gte_forward_mode(self) -> None:
        self.gte.requires_grad_(False)
        self.gte.train(self.cfg.gt_encoder.bn_mode == "train")

    def _step_refiner(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        lc = self.cfg.loss
        x = batch["image"].to(self.device, non_blocking=True)
        y = batch["label"].to(self.device, non_blocking=True)
        with self._autocast():
            sides, feats = model(x)
        sides = [s.float() for s in sides]
        if not _finite_maps(sides):
            return _nan_parts(y.device)
        side, d1 = side_loss(sides, y, lc.bce_weight, lc.iou_weight)
        loss = side
        out = {"side": side, "d1": d1}
        if self.gte is not None and lc.feature_weight:
            with torch.no_grad(), self._autocast():
                _, teacher = self.gte(y)
            fl = feature_loss([f.float() for f in feats], [t.float() for t in teacher])
            loss = loss + lc.feature_weight * fl
            out["feature"] = fl
        ortho = self.ortho_refiner().to(loss.device)
        out["ortho"] = ortho
        out["loss"] = loss + ortho
        return out

    def _step_gte(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        lc = self.cfg.loss
        y = batch["label"].to(self.device, non_blocking=True)
        with self._autocast():
            sides, _ = model(y)
        sides = [s.float() for s in sides]
        if not _finite_maps(sides):
            return _nan_parts(y.device)
        side, d1 = side_loss(sides, y, lc.bce_weight, lc.iou_weight)
        ortho = self.ortho_gte().to(side.device)
        return {"loss": side + ortho, "side": side, "d1": d1, "ortho": ortho}

    def _run_stage(self, stage: str) -> None:
        cfg = self.cfg
        st = self.stage_state[stage]
        if st.done and st.stop_reason in ("loaded", "disabled"):
            return
        if stage == "refiner":
            model, opt, step_fn = self.refiner, self.opt_refiner, self._step_refiner
            max_steps, max_epochs = cfg.schedule.max_steps, cfg.schedule.max_epochs
            valid_every, early_stop = cfg.schedule.valid_every, cfg.schedule.early_stop
            metrics, select = list(cfg.schedule.valid_metrics), cfg.schedule.select_metric
            base_lr = cfg.optim.lr
            if self.gte is not None:
                self._gte_forward_mode()
        else:
            model, opt, step_fn = self.gte, self.opt_gte, self._step_gte
            max_steps, max_epochs = cfg.gt_encoder.max_steps, 0
            valid_every, early_stop = cfg.gt_encoder.valid_every, cfg.gt_encoder.early_stop
            metrics, select = ["maxFm"], "maxFm"
            base_lr = cfg.gt_encoder.lr
            model.requires_grad_(True)
        if not max_steps and not max_epochs and not (early_stop and valid_every and self.valid_datasets):
            raise DisSamError(
                f"stage {stage} has no end: set schedule.max_steps, schedule.max_epochs or early stopping "
                "with validation data"
            )
        if st.done:
            extended = (st.stop_reason.startswith("step budget") and max_steps > st.step) or (
                st.stop_reason.startswith("epoch budget") and max_epochs > st.epoch
            )
            if not extended or (stage == "gt_encoder" and self.stage_state["refiner"].step > 0):
                return
            st.done, st.stop_reason = False, ""  # a resumed run with a larger budget goes on
        higher = HIGHER_IS_BETTER[select]
        model.train()
        fwd = self._wrap(model)
        if self.dist.is_main and cfg.runtime.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=max_steps or None, initial=st.step, desc=stage, dynamic_ncols=True, file=sys.stderr)
        sums: dict[str, float] = {}
        count = 0

        def do_validate() -> bool:
            """Validate, keep the best, return True when the stage should stop."""
            res = self.validate(stage, metrics)
            st.last_valid_step = st.step
            if not res:
                return False
            value = res[select]
            improved = st.best is None or (value > st.best if higher else value < st.best)
            if improved:
                st.best, st.best_step, st.bad_validations = value, st.step, 0
                if stage == "refiner":
                    self._save_model(
                        "best", self.refiner, self.refiner_config, stage, {"step": st.step, "valid": res}
                    )
            else:
                st.bad_validations += 1
            self._log({"stage": stage, "step": st.step, "epoch": st.epoch, "valid": res, "best": st.best, "improved": improved})
            if stage == "gt_encoder" and value > cfg.gt_encoder.target_maxf:
                st.stop_reason = f"valid maxF {value:.4f} > {cfg.gt_encoder.target_maxf}"
                return True
            if early_stop and st.bad_validations >= early_stop:
                st.stop_reason = f"early stop: {st.bad_validations} validations without gain"
                return True
            return False

        stop = bool(max_steps and st.step >= max_steps)  # a resumed run that had just finished
        while not stop:
            if max_epochs and st.epoch >= max_epochs:
                st.stop_reason = st.stop_reason or f"epoch budget {max_epochs}"
                break
            loader = self._train_loader(stage, st)
            for batch in loader:
                for group in opt.param_groups:
                    group["lr"] = scheduled_lr(cfg.optim, base_lr, st.step, max_steps)
                opt.zero_grad(set_to_none=True)
                out = step_fn(fwd, batch)
                loss = out["loss"]
                if not all_finite(self.dist, loss):
                    self._log({"stage": stage, "step": st.step, "error": "non-finite loss"})
                    raise TrainingError(
                        f"{stage}: the loss became {float(loss.detach())} at step {st.step + 1} "
                        f"(parts: { {k: float(v.detach()) for k, v in out.items()} }). The last good state is "
                        f"{self.state_path} (step of its last write); lower the learning rate, disable AMP "
                        "(runtime.amp=none) or check the data, then resume."
                    )
                self.scaler.scale(loss).backward()
                self.scaler.step(opt)
                self.scaler.update()
                st.step += 1
                st.batch_in_epoch += 1
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                count += 1
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
                if cfg.runtime.log_every and st.step % cfg.runtime.log_every == 0:
                    self._log(
                        {
                            "stage": stage,
                            "step": st.step,
                            "epoch": st.epoch,
                            **{k: v / count for k, v in sums.items()},
                            "lr": opt.param_groups[0]["lr"],
                        }
                    )
                    sums, count = {}, 0
                validated = False
                if valid_every and st.step % valid_every == 0 and self.valid_datasets:
                    stop = do_validate()
                    validated = True
                if max_steps and st.step >= max_steps:
                    st.stop_reason = st.stop_reason or f"step budget {max_steps}"
                    stop = True
                if validated or stop or (cfg.runtime.state_every and st.step % cfg.runtime.state_every == 0):
                    self.save_state()
                for hook in self.hooks:
                    hook(self, stage, st.step)
                if stop:
                    break
            else:
                st.epoch += 1
                st.batch_in_epoch = 0
        if (
            cfg.schedule.valid_at_end
            and self.valid_datasets
            and st.last_valid_step != st.step
            and not (stage == "gt_encoder" and st.stop_reason.startswith("valid"))
        ):
            do_validate()
        st.done = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._log({"stage": stage, "step": st.step, "event": "stage end", "reason": st.stop_reason, "best": st.best})
        if stage == "gt_encoder":
            if st.stop_reason.startswith("early stop"):
                warnings.warn(
                    f"GT encoder: {st.stop_reason} (best maxF {st.best}); continuing with it", stacklevel=2
                )
            from dissam.models.isnet import REFINER_VARIANTS

            self._save_model(
                "gt_encoder", self.gte, REFINER_VARIANTS[cfg.gt_encoder.variant], stage, {"step": st.step, "best_maxFm": st.best}
            )
        else:
            self._save_model(
                "final", self.refiner, self.refiner_config, stage, {"step": st.step, "best": st.best, "best_step": st.best_step}
            )
        self.save_state()
        barrier(self.dist)

    def fit(self) -> dict[str, Any]:
        """Run stage (a) (unless loaded/disabled/finished) and stage (b); returns a summary."""
        self._open_tensorboard()
        threads = torch.get_num_threads()
        if self.cfg.runtime.num_threads > 0:
            torch.set_num_threads(self.cfg.runtime.num_threads)
        try:
            if self.gte is not None:
                self._run_stage("gt_encoder")
            self._run_stage("refiner")
        finally:
            torch.set_num_threads(threads)
            if self._tb is not None:
                self._tb.close()
            if self._bar is not None:
                self._bar.close()
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


def build_datasets(cfg: TrainConfig):
    """Training dataset (the concatenated ``data.train`` splits plus the enrichment manifest) and the
    validation datasets, from ``dissam.data``."""
    try:
        from dissam.data.dataset import DisDataset
        from dissam.data.layout import discover_split
    except ImportError as exc:  # pragma: no cover - depends on the installed package state
        raise DisSamError(f"dissam.data is not available ({exc}); pass datasets to Trainer directly") from exc
    d = cfg.data
    if not d.train:
        raise DisSamError("data.train is empty: list the training split folders (im/, gt/, mask/)")
    samples = []
    for folder in d.train:
        samples.extend(discover_split(folder))
    if d.enrich_manifest:
        try:
            from dissam.data.enrich import read_manifest
        except ImportError as exc:
            raise DisSamError(f"cannot read data.enrich_manifest ({exc})") from exc
        samples.extend(read_manifest(d.enrich_manifest))
    fallback = None
    if d.mask_fallback == "degrade":
        from dissam.coarse import degrade_mask

        def fallback(gt_u8, sample):  # a SAM-like coarse mask from the GT, fixed per sample name
            import zlib

            return degrade_mask(gt_u8, seed=zlib.crc32(sample.name.encode()))

    common = {
        "size": d.size,
        "mode": d.mode,
        "cache_dir": d.cache_dir,
        "seed": cfg.runtime.seed,
        "mask_fallback": fallback,
    }
    train_ds = DisDataset(samples, augment=d.augment, prompt_dropout=tuple(d.prompt_dropout), **common)
    # a prompt dropped with probability 1 (the ablation rows) is dropped in validation too
    always = tuple(1.0 if float(p) >= 1.0 else 0.0 for p in d.prompt_dropout)
    valid = [DisDataset(discover_split(f), augment=False, prompt_dropout=always, **common) for f in d.valid]
    return train_ds, valid


def train(cfg: TrainConfig, run_dir=None, resume: bool = False, **kwargs) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it; returns its summary."""
    return Trainer(cfg, run_dir=run_dir, resume=resume, **kwargs).fit()

