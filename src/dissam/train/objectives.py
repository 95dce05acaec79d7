"""The loss of each training stage on one batch, as the released code computes it.

Stage (a), GT encoder: ``side_loss`` of its six side maps of the label against the label, + ORTHO.
Stage (b), refiner: ``side_loss`` of its six side maps of the image against the label
+ ``feature_weight`` · ``feature_loss`` against the frozen GT encoder's features of the label
+ ORTHO (:mod:`dissam.losses`).

Forward passes run under the run's autocast; the losses are computed in float32 outside it (BCE is
unsafe under fp16 autocast). A batch whose side maps are not finite gives NaN parts instead of an
error from BCE, so the trainer's non-finite check reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import nn

from dissam.losses import OrthoRegularizer, feature_loss, side_loss
from dissam.train.config import LossConfig

__all__ = ["refiner_loss", "gt_encoder_loss"]


def _finite_maps(maps: Sequence[torch.Tensor]) -> bool:
    """False when a side map holds NaN/inf (BCE would raise instead of returning a NaN loss)."""
    return bool(torch.stack([torch.isfinite(m).all() for m in maps]).all())


def _nan_parts(device) -> dict[str, torch.Tensor]:
    nan = torch.full((), float("nan"), device=device)
    return {"loss": nan, "side": nan, "d1": nan}


def _side_parts(model: nn.Module, inp: torch.Tensor, y: torch.Tensor, lc: LossConfig, autocast):
    """``(side loss, d1 loss, features)`` of ``model`` on ``inp`` against the label ``y``, or ``None``
    when a side map is not finite."""
    with autocast():
        sides, feats = model(inp)
    sides = [s.float() for s in sides]
    if not _finite_maps(sides):
        return None
    side, d1 = side_loss(sides, y, lc.bce_weight, lc.iou_weight)
    return side, d1, feats


def refiner_loss(
    model: nn.Module,
    batch: dict,
    *,
    gte: nn.Module | None,
    ortho: OrthoRegularizer,
    lc: LossConfig,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
) -> dict[str, torch.Tensor]:
    """Stage (b) loss parts of ``batch`` (``image`` ``(B,5,S,S)``, ``label`` ``(B,1,S,S)``): ``side``,
    ``d1``, ``feature`` (with a GT encoder and a non-zero weight), ``ortho`` and their sum ``loss``
    (float32 scalars)."""
    x = batch["image"].to(device, non_blocking=True)
    y = batch["label"].to(device, non_blocking=True)
    parts = _side_parts(model, x, y, lc, autocast)
    if parts is None:
        return _nan_parts(y.device)
    side, d1, feats = parts
    loss = side
    out = {"side": side, "d1": d1}
    if gte is not None and lc.feature_weight:
        with torch.no_grad(), autocast():
            _, teacher = gte(y)
        fl = feature_loss([f.float() for f in feats], [t.float() for t in teacher])
        loss = loss + lc.feature_weight * fl
        out["feature"] = fl
    out["ortho"] = ortho().to(loss.device)
    out["loss"] = loss + out["ortho"]
    return out


def gt_encoder_loss(
    model: nn.Module,
    batch: dict,
    *,
    ortho: OrthoRegularizer,
    lc: LossConfig,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
) -> dict[str, torch.Tensor]:
    """Stage (a) loss parts of ``batch``: the GT encoder reproduces the label ``(B,1,S,S)`` from the
    label; ``side``, ``d1``, ``ortho`` and their sum ``loss``."""
    y = batch["label"].to(device, non_blocking=True)
    parts = _side_parts(model, y, y, lc, autocast)
    if parts is None:
        return _nan_parts(y.device)
    side, d1, _ = parts
    ortho_value = ortho().to(side.device)
    return {"loss": side + ortho_value, "side": side, "d1": d1, "ortho": ortho_value}
