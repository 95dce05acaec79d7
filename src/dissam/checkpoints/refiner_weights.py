"""Refiner weights: the network read off a state dict, and dissam's own checkpoint format.

* :func:`infer_refiner_config`: architecture, input channels and width from the tensors (never from a
  file name): GT encoder if ``conv_in.conv.weight`` exists; ``in_ch`` from ``conv_in.weight``
  (3 = IS-Net, 5 = DIS-SAM); width from its output channels.
* dissam's format: ``NAME.safetensors`` (weights; the model config is also stored in its header)
  plus ``NAME.json`` (config and metadata) beside it, both written atomically (temporary file, then
  rename), so an interrupted save never leaves a half-written checkpoint under the real name.
* :func:`inflate_refiner_input` starts a 5-channel refiner from 3-channel IS-Net weights (RGB filters
  copied, the coarse-mask and box-map filters zero): an option for faster fine-tuning; the paper
  trains the 5-channel refiner from scratch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from dissam.checkpoints.state_dict import build_with_weights, read_state_dict, strip_prefixes
from dissam.errors import CheckpointError
from dissam.models.isnet import RefinerConfig, build_refiner
from dissam.utils import atomic_write_bytes

__all__ = ["infer_refiner_config", "save_checkpoint", "load_checkpoint", "inflate_refiner_input"]


def infer_refiner_config(state_dict: Mapping[str, torch.Tensor]) -> RefinerConfig:
    """Architecture, input channels and width from the tensors (never from a file name)."""
    if "conv_in.conv.weight" in state_dict:
        w = state_dict["conv_in.conv.weight"]
        return RefinerConfig(
            "gt_encoder",
            int(w.shape[1]),
            int(state_dict["side1.weight"].shape[0]),
            _width(int(w.shape[0]), 16),
        )
    if "conv_in.weight" in state_dict and "stage1d.rebnconvin.conv_s1.weight" in state_dict:
        w = state_dict["conv_in.weight"]
        return RefinerConfig(
            "isnet", int(w.shape[1]), int(state_dict["side1.weight"].shape[0]), _width(int(w.shape[0]), 64)
        )
    raise CheckpointError(
        "cannot recognise the network in this state dict: expected IS-Net keys "
        "('conv_in.weight', 'stage1.rebnconvin.conv_s1.weight', ...) or GT-encoder keys ('conv_in.conv.weight', ...)"
    )


def _width(channels: int, full: int) -> float:
    return 1.0 if channels == full else round(channels / full, 4)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: RefinerConfig | dict | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` as ``path`` (``.safetensors``) and ``path.json`` beside it, atomically.

    ``config`` defaults to one inferred from the weights. ``metadata`` (JSON-serialisable: training
    config, step, metrics, ...) goes into the JSON file. Returns the ``.safetensors`` path.
    """
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(".safetensors")
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if config is None:
        config = infer_refiner_config(sd)
    cfg = config.to_dict() if isinstance(config, RefinerConfig) else dict(config)
    meta = {"format": "dissam-checkpoint", "version": 1, "config": cfg, "metadata": dict(metadata or {})}
    text = json.dumps(meta, indent=1, sort_keys=True, default=str)
    atomic_write_bytes(p, save(sd, metadata={"dissam": json.dumps({"config": cfg})}))
    atomic_write_bytes(p.with_suffix(".json"), text.encode())
    return p


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a dissam checkpoint written by :func:`save_checkpoint`: returns ``(model, info)`` where
    ``info`` is the JSON (``config`` and ``metadata``). A lone ``.safetensors`` without its JSON still
    loads (the config is also in the file header)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    info: dict = {}
    side = p.with_suffix(".json")
    if side.is_file():
        try:
            info = json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{side} is not valid JSON ({exc}); it may be truncated") from exc
    if "config" not in info:
        try:
            with safe_open(str(p), framework="pt") as fh:
                header = (fh.metadata() or {}).get("dissam")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read {p}: truncated or not a safetensors file ({exc})") from exc
        info.setdefault("config", json.loads(header)["config"] if header else None)
    sd = read_state_dict(p)
    config = RefinerConfig.from_dict(info["config"]) if info.get("config") else infer_refiner_config(sd)
    model = build_with_weights(lambda: build_refiner(config), sd, str(p))
    return model.to(device), info


def inflate_refiner_input(
    source: nn.Module | Mapping[str, torch.Tensor], in_ch: int = 5
) -> dict[str, torch.Tensor]:
    """State dict for an ``in_ch``-channel refiner started from 3-channel IS-Net weights.

    The RGB filters of ``conv_in`` are copied and the filters of the extra channels (SAM mask, box
    map) set to zero, so the inflated net computes exactly what the 3-channel net does until training
    moves those weights. (The paper trains the 5-channel refiner from scratch; this is an option.)
    """
    sd = source.state_dict() if isinstance(source, nn.Module) else strip_prefixes(source)
    w = sd.get("conv_in.weight")
    if w is None or w.ndim != 4:
        raise CheckpointError(
            "inflation needs an IS-Net state dict with a 'conv_in.weight' of shape (64, 3, 3, 3)"
        )
    if w.shape[1] > in_ch:
        raise CheckpointError(f"conv_in already has {w.shape[1]} input channels (> {in_ch})")
    new = torch.zeros((w.shape[0], in_ch, *w.shape[2:]), dtype=w.dtype)
    new[:, : w.shape[1]] = w
    out = dict(sd)
    out["conv_in.weight"] = new
    return out
