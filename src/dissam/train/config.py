"""Typed training configuration: dataclasses overlaid from YAML files and ``key=value`` overrides.

``load_config(path, overrides)`` starts from the defaults below (the paper's settings), applies the
YAML file, then each ``section.field=value`` override (values parsed as YAML scalars, then checked
against the field's type). Unknown keys raise :class:`~dissam.errors.DisSamError` naming the known ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dissam.errors import DisSamError
from dissam.losses import ORTHO_MODES
from dissam.metrics import ALL_METRICS, LOWER_IS_BETTER
from dissam.models.isnet import REFINER_VARIANTS as NETWORK_VARIANTS

__all__ = [
    "DataConfig",
    "ModelConfig",
    "GTEncoderConfig",
    "OptimConfig",
    "LossConfig",
    "ScheduleConfig",
    "RuntimeConfig",
    "TrainConfig",
    "load_config",
    "apply_overrides",
    "config_from_dict",
    "HIGHER_IS_BETTER",
    "AMP_DTYPES",
]

# Direction of each paper metric, for model selection (the names and directions of dissam.metrics).
HIGHER_IS_BETTER = {m: m not in LOWER_IS_BETTER for m in ALL_METRICS}

# The allowed values of the config's choice fields. Those that other modules also know are read from
# there (ORTHO modes: dissam.losses; network variants: dissam.models.isnet), so a new one is added once.
REFINER_VARIANTS = tuple(k for k, c in NETWORK_VARIANTS.items() if c.arch == "isnet" and c.in_ch == 5)
GT_ENCODER_VARIANTS = tuple(k for k, c in NETWORK_VARIANTS.items() if c.arch == "gt_encoder")
BN_MODES = ("train", "eval")
AMP_DTYPES = {"none": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""``runtime.amp`` -> the name of the torch dtype the forward passes run at (float32: no autocast)."""
BACKENDS = ("auto", "gloo", "nccl")
LR_SCHEDULES = ("constant", "cosine")
LR_SCALINGS = ("none", "linear", "sqrt")
MASK_FALLBACKS = (None, "degrade")


@dataclass
class DataConfig:
    """Where the samples come from and how they are prepared (see ``dissam.data``)."""

    train: list[str] = field(default_factory=list)  # split folders (im/ gt/ mask/), concatenated
    valid: list[str] = field(default_factory=list)  # validation split folders (scores averaged)
    enrich_manifest: str | None = None  # enrichment manifest (dissam enrich) added to the training set
    size: int = 1024  # square network input side (the paper: 1024, squashed)
    mode: str = "faithful"  # preprocessing mode of dissam.data.dataset.DisDataset
    augment: bool = True  # the released four-way flip on training samples
    prompt_dropout: list[float] = field(default_factory=lambda: [0.0, 0.0])  # P(zero mask), P(zero box)
    cache_dir: str | None = None  # resized-uint8 cache (keyed by content, not only by name)
    mask_fallback: str | None = None  # None: every sample needs mask/; "degrade": degraded GT (synthetic data)
    num_workers: int = 0
    valid_batch_size: int = 1
    # training items as uint8 [R,G,B,mask,box,gt] + flip code, assembled and normalised on the
    # training device (bit-identical to the float items; only for DisDataset training sets)
    uint8_items: bool = True
    ram_cache: bool = False  # keep every training item's uint8 tensors in shared memory after its first read
    prefetch_factor: int = 2  # batches each DataLoader worker prepares ahead (with num_workers > 0)


@dataclass
class ModelConfig:
    variant: str = "dis-sam"  # dis-sam | dis-sam-compact
    # scratch | isnet:<path to a 3-channel IS-Net .pth> (channel inflation)
    # | refiner:<path to a refiner checkpoint with the same input channels> (fine-tuning)
    init: str = "scratch"
    # BatchNorm of the refiner while it trains: train (batch statistics, as released) | eval (running
    # statistics, e.g. fine-tuning with one or two images per GPU)
    bn_mode: str = "train"


@dataclass
class GTEncoderConfig:
    """Stage (a): the ground-truth encoder whose features supervise the refiner (``interm_sup``)."""

    enabled: bool = True  # False: no feature loss (IS-Net's released default)
    variant: str = "gt-encoder"  # gt-encoder | gt-encoder-compact
    checkpoint: str | None = None  # load a trained encoder instead of training one
    bn_mode: str = "train"  # BN of the frozen encoder in stage (b): train (as released) | eval
    lr: float = 1e-4
    max_steps: int = 100000  # step budget of stage (a)
    target_maxf: float = 0.99  # stop as soon as the validation maxF exceeds this
    valid_every: int = 3000
    early_stop: int = 20  # validations without gain before stage (a) gives up (and continues)


@dataclass
class OptimConfig:
    lr: float = 4e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    batch_size: int = 6  # per process and accumulation step (ignored when global_batch_size is set)
    # samples per optimizer step over all processes; 0 = batch_size x processes x accum_steps. When set,
    # the per-process batch is global_batch_size / (processes x accum_steps), which must divide exactly
    global_batch_size: int = 0
    accum_steps: int = 1  # micro-batches whose gradients are summed into one optimizer step
    # scale every learning rate (lr, min_lr, gt_encoder.lr) with the global batch against
    # lr_reference_batch: none (as configured) | linear (x G/ref) | sqrt (x sqrt(G/ref))
    lr_scaling: str = "none"
    lr_reference_batch: int = 6  # the paper's batch
    # learning-rate schedule over each stage's max_steps: constant (released code) | cosine
    lr_schedule: str = "constant"
    min_lr: float = 0.0  # cosine: the rate reached at the stage's last step
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps, under either schedule
    # refiner parameters (glob patterns on their names, e.g. "stage1.*") left out of training
    freeze: list[str] = field(default_factory=list)
    # learning-rate multipliers of refiner parameter groups: {glob pattern: factor}; the first
    # matching pattern wins, unmatched parameters keep factor 1
    lr_mult: dict[str, float] = field(default_factory=dict)


@dataclass
class LossConfig:
    bce_weight: float = 20.0
    iou_weight: float = 0.5
    feature_weight: float = 1.0
    ortho_mode: str = "all_nonbias"  # all_nonbias (released code) | conv_only (paper text) | none
    ortho_weight: float = 1e-8


@dataclass
class ScheduleConfig:
    max_steps: int = 0  # refiner optimizer steps; 0 = no limit
    max_epochs: int = 0  # 0 = no limit (at least one of the two budgets, or early stopping, ends a run)
    valid_every: int = 3000  # steps between validations
    early_stop: int = 20  # stop after this many validations without gain; 0 = never
    select_metric: str = "maxFm"  # best checkpoint by this metric (direction known per metric)
    valid_metrics: list[str] = field(default_factory=lambda: ["maxFm", "MAE"])
    valid_at_end: bool = True  # validate after the last step if the last step was not a validation


@dataclass
class RuntimeConfig:
    out_dir: str = "runs"
    run_name: str = ""  # default: a time stamp
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (CUDA; fp16 uses a GradScaler)
    compile: bool = False  # torch.compile the refiner
    deterministic: bool = False  # torch.use_deterministic_algorithms; ~10x slower backward on CPU
    num_threads: int = 0  # CPU threads for torch (0 = torch's default); 1 is fastest for tiny models
    state_every: int = 100  # steps between resume-state writes (also at each validation and the end)
    log_every: int = 10
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True  # when the tensorboard package is installed
    sync_bn: bool = False  # SyncBatchNorm in the refiner and the GT encoder under DDP (CUDA only)
    backend: str = "auto"  # DDP backend: auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    dist_timeout_s: int = 1800  # collective timeout of the process group
    # processes the run trains with: 0 = as torchrun starts it; recorded in config.yaml, so a
    # resume with another count is refused unless this is changed deliberately
    world_size: int = 0
    wandb: bool = False  # also log to Weights & Biases (pip install 'dissam[wandb]'; rank 0)
    wandb_project: str = "dissam"


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gt_encoder: GTEncoderConfig = field(default_factory=GTEncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> TrainConfig:
        """Check the choices that have a fixed set of values; returns self."""
        checks = [
            ("model.variant", self.model.variant, REFINER_VARIANTS),
            ("gt_encoder.variant", self.gt_encoder.variant, GT_ENCODER_VARIANTS),
            ("gt_encoder.bn_mode", self.gt_encoder.bn_mode, BN_MODES),
            ("loss.ortho_mode", self.loss.ortho_mode, ORTHO_MODES),
            ("runtime.amp", self.runtime.amp, tuple(AMP_DTYPES)),
            ("runtime.backend", self.runtime.backend, BACKENDS),
            ("schedule.select_metric", self.schedule.select_metric, tuple(HIGHER_IS_BETTER)),
            ("optim.lr_schedule", self.optim.lr_schedule, LR_SCHEDULES),
            ("optim.lr_scaling", self.optim.lr_scaling, LR_SCALINGS),
            ("model.bn_mode", self.model.bn_mode, BN_MODES),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise DisSamError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
        if self.data.mask_fallback not in MASK_FALLBACKS:
            raise DisSamError(f"data.mask_fallback={self.data.mask_fallback!r}: use null or 'degrade'")
        bad = [m for m in self.schedule.valid_metrics if m not in HIGHER_IS_BETTER]
        if bad:
            raise DisSamError(f"schedule.valid_metrics: unknown {bad}; known: {', '.join(HIGHER_IS_BETTER)}")
        if self.schedule.select_metric not in self.schedule.valid_metrics:
            raise DisSamError(
                f"schedule.select_metric={self.schedule.select_metric!r} must be one of "
                f"schedule.valid_metrics={self.schedule.valid_metrics}"
            )
        if not (self.model.init == "scratch" or self.model.init.startswith(("isnet:", "refiner:"))):
            raise DisSamError(
                f"model.init={self.model.init!r}: use 'scratch', 'isnet:<path to .pth>' or 'refiner:<path>'"
            )
        if self.optim.lr_schedule == "cosine" and not self.schedule.max_steps:
            raise DisSamError("optim.lr_schedule=cosine needs schedule.max_steps (the length of the decay)")
        o, rt = self.optim, self.runtime
        for key, value, low in (
            ("optim.batch_size", o.batch_size, 1),
            ("data.size", self.data.size, 1),
            ("optim.accum_steps", o.accum_steps, 1),
            ("optim.lr_reference_batch", o.lr_reference_batch, 1),
            ("data.prefetch_factor", self.data.prefetch_factor, 1),
            ("runtime.dist_timeout_s", rt.dist_timeout_s, 1),
            ("optim.global_batch_size", o.global_batch_size, 0),
            ("optim.warmup_steps", o.warmup_steps, 0),
            ("runtime.world_size", rt.world_size, 0),
        ):
            if value < low:
                raise DisSamError(f"{key} must be >= {low} (got {value})")
        if self.data.ram_cache and not self.data.uint8_items:
            raise DisSamError("data.ram_cache keeps uint8 items: it needs data.uint8_items=true")
        if o.min_lr < 0:
            raise DisSamError(f"optim.min_lr must be >= 0 (got {o.min_lr})")
        bad_mult = {k: v for k, v in o.lr_mult.items() if v < 0}
        if bad_mult:
            raise DisSamError(f"optim.lr_mult: factors must be >= 0 (got {bad_mult}); freeze with optim.freeze")
        if self.data.size % 32:
            raise DisSamError(f"data.size={self.data.size} must be a multiple of 32 (five 2x poolings)")
        return self


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` (int, float, bool, str, list[X],
    dict[str, X], X | None)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is dict:
        if not isinstance(value, dict):
            raise DisSamError(f"{key}: expected a mapping {{name: value}}, got {value!r}")
        return {_coerce(k, args[0], f"{key} key"): _coerce(v, args[1], f"{key}[{k!r}]") for k, v in value.items()}
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            value = [value]
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise DisSamError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _overlay(obj, values: dict, prefix: str = "") -> None:
    if not isinstance(values, dict):
        raise DisSamError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {values!r}")
    hints = _hints(type(obj))
    names = [f.name for f in fields(obj)]
    for key, value in values.items():
        if key not in names:
            raise DisSamError(
                f"unknown config key {(prefix + key)!r}; known keys under {prefix.rstrip('.') or 'the top level'}: "
                + ", ".join(names)
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _overlay(current, value, f"{prefix}{key}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{prefix}{key}"))


def config_from_dict(values: dict | None) -> TrainConfig:
    """Defaults overlaid with a nested dict (e.g. a resolved ``config.yaml``)."""
    cfg = TrainConfig()
    if values:
        _overlay(cfg, values)
    return cfg


def apply_overrides(cfg: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Apply ``section.field=value`` strings (``value`` read as a YAML scalar/list: ``1e-4``, ``true``,
    ``[a, b]``, ``null``). Raises DisSamError on a malformed or unknown key."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise DisSamError(f"override {item!r} is not of the form section.field=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node: dict = {}
        cur = node
        parts = key.split(".")
        if not all(parts):
            raise DisSamError(f"override {item!r}: empty key component")
        for part in parts[:-1]:
            cur[part] = {}
            cur = cur[part]
        cur[parts[-1]] = value
        _overlay(cfg, node)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults → YAML file (if given) → overrides; validated."""
    import yaml

    cfg = TrainConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DisSamError(f"config file not found: {p}")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DisSamError(f"{p} is not valid YAML: {exc}") from exc
        _overlay(cfg, values)
    apply_overrides(cfg, overrides)
    return cfg.validate()


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML text."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
