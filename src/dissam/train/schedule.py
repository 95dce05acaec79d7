"""What each stage runs for: its budgets, validation cadence and selection metric, and the
learning-rate schedule (a pure function of the step count, so a resumed run follows it exactly).

Stage (a), ``gt_encoder``, takes its numbers from ``cfg.gt_encoder`` (validated on maxF only, no
epoch budget); stage (b), ``refiner``, from ``cfg.schedule`` and ``cfg.optim``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dissam.errors import DisSamError
from dissam.train.config import HIGHER_IS_BETTER, TrainConfig

__all__ = ["STAGES", "StageSchedule", "stage_schedule", "scheduled_lr"]

STAGES = ("gt_encoder", "refiner")
"""The two stages, in the order they run."""


@dataclass(frozen=True)
class StageSchedule:
    """One stage's budgets: ``max_steps`` / ``max_epochs`` (0 = no limit), validation every
    ``valid_every`` steps (0 = never) on ``metrics``, the best model by ``select``, early stop after
    ``early_stop`` validations without gain (0 = never), the base learning rate and the cosine
    schedule's final rate (both scaled by the batch layout's ``lr_factor``)."""

    stage: str
    base_lr: float
    max_steps: int
    max_epochs: int
    valid_every: int
    early_stop: int
    metrics: tuple[str, ...]
    select: str
    min_lr: float = 0.0

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.select]

    def improves(self, value: float, best: float | None) -> bool:
        """True when ``value`` beats ``best`` (any value beats ``None``) in the metric's direction."""
        return best is None or (value > best if self.higher_is_better else value < best)

    def check_has_end(self, can_validate: bool) -> None:
        """Raise when nothing would ever end the stage (no budget and no early stopping)."""
        if not self.max_steps and not self.max_epochs and not (self.early_stop and self.valid_every and can_validate):
            raise DisSamError(
                f"stage {self.stage} has no end: set schedule.max_steps, schedule.max_epochs or early stopping "
                "with validation data"
            )

    def extends(self, stop_reason: str, step: int, epoch: int) -> bool:
        """True when a stage that ended on a budget (``stop_reason``) at ``step`` / ``epoch`` has a
        larger budget now (a finished run resumed with ``schedule.max_steps`` raised goes on)."""
        return (stop_reason.startswith("step budget") and self.max_steps > step) or (
            stop_reason.startswith("epoch budget") and self.max_epochs > epoch
        )


def stage_schedule(cfg: TrainConfig, stage: str, lr_factor: float = 1.0) -> StageSchedule:
    """The :class:`StageSchedule` of ``stage`` (``"gt_encoder"`` or ``"refiner"``) under ``cfg``, its
    learning rates (``lr``, ``min_lr``) multiplied by ``lr_factor`` (``optim.lr_scaling``)."""

    def scaled(lr: float) -> float:
        return lr if lr_factor == 1.0 else lr * lr_factor

    min_lr = scaled(cfg.optim.min_lr)
    if stage == "refiner":
        s = cfg.schedule
        return StageSchedule(
            stage, scaled(cfg.optim.lr), s.max_steps, s.max_epochs, s.valid_every, s.early_stop,
            tuple(s.valid_metrics), s.select_metric, min_lr,
        )
    if stage == "gt_encoder":
        g = cfg.gt_encoder
        return StageSchedule(
            stage, scaled(g.lr), g.max_steps, 0, g.valid_every, g.early_stop, ("maxFm",), "maxFm", min_lr
        )
    raise DisSamError(f"unknown training stage {stage!r}; known: {', '.join(STAGES)}")


def scheduled_lr(optim_cfg, base_lr: float, step: int, max_steps: int, min_lr: float | None = None) -> float:
    """Learning rate for the optimizer step that follows ``step`` completed steps of a stage.

    Both schedules first warm up linearly over ``optim_cfg.warmup_steps`` steps (the rate of step
    ``s < warmup`` is ``base_lr * (s + 1) / warmup``). ``constant`` (the released code, without
    warm-up) then stays at ``base_lr``. ``cosine`` follows half a cosine from ``base_lr`` down to
    ``min_lr`` (default ``optim_cfg.min_lr``) at the stage's last step (``max_steps``); with no step
    budget it stays at ``base_lr``. Being a pure function of the step count, it resumes exactly.
    """
    warm = optim_cfg.warmup_steps
    if warm and step < warm:
        return base_lr * (step + 1) / warm
    if optim_cfg.lr_schedule == "constant" or max_steps <= 0:
        return base_lr
    low = optim_cfg.min_lr if min_lr is None else min_lr
    span = max(1, max_steps - warm)
    t = min(1.0, max(0.0, (step - warm) / span))
    return low + 0.5 * (base_lr - low) * (1.0 + math.cos(math.pi * t))
