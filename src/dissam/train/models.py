"""The networks of a training run: the refiner as ``model.*`` asks, the GT encoder as
``gt_encoder.*`` asks, and the wrappers of a training forward pass (DDP, ``torch.compile``).

Built on the CPU with the caller's random state (the trainer seeds it so that every rank starts from
the same weights), then moved to ``device``.
"""

from __future__ import annotations

import torch
from torch import nn

from dissam.checkpoints import inflate_refiner_input, load_state_dict_strict, read_state_dict
from dissam.errors import DisSamError
from dissam.hub import resolve_weights_file
from dissam.hub.loading import load_refiner
from dissam.models.isnet import REFINER_VARIANTS, RefinerConfig, build_refiner
from dissam.train.config import TrainConfig
from dissam.train.distributed import DistInfo

__all__ = ["training_refiner", "training_gt_encoder", "convert_sync_bn", "set_bn_eval", "wrap_for_training"]


def training_refiner(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, RefinerConfig]:
    """The refiner of ``model.variant`` and its config. ``model.init``: ``scratch`` (random init),
    ``isnet:<path or name>`` (a 3-channel IS-Net: RGB filters copied, mask/box filters zero) or
    ``refiner:<path or name>`` (a refiner with the same input channels); both loads are strict."""
    config = REFINER_VARIANTS[cfg.model.variant]
    net = build_refiner(config)
    if cfg.model.init.startswith(("isnet:", "refiner:")):
        kind, source = cfg.model.init.split(":", 1)
        path = resolve_weights_file(source)  # a path or a registry name (dissam models list)
        sd = read_state_dict(path)
        if kind == "isnet":
            sd = inflate_refiner_input(sd, config.in_ch)
        load_state_dict_strict(net, sd, path)
    return net.to(device), config


def training_gt_encoder(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    """The GT encoder: ``None`` when ``gt_encoder.enabled`` is false, the trained one of
    ``gt_encoder.checkpoint`` (train mode, as stage (b) expects), else a new ``gt_encoder.variant``."""
    g = cfg.gt_encoder
    if not g.enabled:
        return None
    if not g.checkpoint:
        return build_refiner(g.variant).to(device)
    net = load_refiner(g.checkpoint, device=device, eval_mode=False).net
    if not hasattr(net, "conv_in") or not hasattr(net.conv_in, "conv"):
        raise DisSamError(f"gt_encoder.checkpoint={g.checkpoint} is not a GT encoder")
    return net


def convert_sync_bn(*models: nn.Module | None) -> None:
    """Replace the BatchNorm layers of each model by SyncBatchNorm, in place (the parameters and
    buffers are the same tensors, the state-dict keys unchanged). Applied to the refiner and the GT
    encoder alike under ``runtime.sync_bn``, so that both normalise with the statistics of the
    global batch: the refiner while it trains, the GT encoder while it trains (stage a) and while it
    gives the feature targets in train-mode BN (stage b, ``gt_encoder.bn_mode=train``)."""
    for model in models:
        if model is None:
            continue
        for name, child in list(model.named_children()):
            setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


def set_bn_eval(model: nn.Module) -> None:
    """Put every BatchNorm layer of ``model`` in eval mode (running statistics), the rest untouched."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def wrap_for_training(model: nn.Module, dist: DistInfo, device: torch.device, *, compile: bool = False) -> nn.Module:
    """``model`` for the forward pass of training: in DistributedDataParallel under torchrun, and
    ``torch.compile``\\ d when ``compile``. Parameters stay shared with ``model``."""
    out = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        out = nn.parallel.DistributedDataParallel(out, device_ids=ids)
    if compile:
        out = torch.compile(out)
    return out
