"""The loaded refiner: the network together with what inference must know about it.

:func:`dissam.checkpoints.load_refiner` returns a :class:`Refiner`: the IS-Net module, its
:class:`~dissam.models.isnet.RefinerConfig`, the input size it was trained at, the prompt channels it
was trained without (Table 2 ablation models) and where it came from. :func:`forward_d1` is the one
refiner forward pass of the package: the predictor, the benchmark and training validation all call it,
so autocast, ``inference_mode`` and the zeroing of dropped prompt channels happen in one place.

Shapes: inputs are ``(N, C, S, S)`` float32 normalised tensors (``C = 5``: ``[R, G, B, coarse mask,
box map]`` from :mod:`dissam.transforms`; ``C = 3`` for plain IS-Net); the output is side output d1,
``(N, 1, S, S)`` float32 probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dissam.checkpoints import infer_refiner_config, tensor_versions
from dissam.models.isnet import RefinerConfig

__all__ = ["Refiner", "forward_d1", "zero_dropped", "merge_edits", "PROMPT_CHANNELS"]

PROMPT_CHANNELS = {"mask": 3, "box": 4}
"""Input channel of each prompt in the 5-channel refiner input."""


def zero_dropped(x: torch.Tensor, dropped_channels: Sequence[int]) -> torch.Tensor:
    """``x`` (``(N, C, S, S)``) with the prompt channels a refiner was trained without set to zero,
    on a copy (the caller's tensor is untouched); ``x`` itself when there are none."""
    if not dropped_channels:
        return x
    x = x.clone()
    x[:, list(dropped_channels)] = 0.0
    return x


def forward_d1(
    net: nn.Module,
    x: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    dropped_channels: Sequence[int] = (),
) -> torch.Tensor:
    """Side output d1 of ``net`` for ``x`` (``(N, C, S, S)``, on the net's device): ``(N, 1, S, S)``
    float32 probabilities.

    ``dropped_channels`` are set to zero first (on a copy: the caller's tensor is untouched), as the
    model saw them in training. ``dtype`` other than float32 runs under autocast (bf16 on CPU and GPU,
    fp16 on GPU). Gradients are not tracked; the caller decides train/eval mode."""
    x = zero_dropped(x, dropped_channels)
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        return net(x)[0][0].float()


@dataclass
class Refiner:
    """A refiner ready for inference.

    Attributes:
        net: the :class:`~dissam.models.isnet.ISNetDIS` (or GT encoder) module, eval mode.
        config: its architecture (kind, input channels, width).
        input_size: the square input size ``S`` it works at: what a dissam checkpoint records it was
            trained at, else 1024 (the paper's; official ``.pth`` files record nothing).
        dropped_channels: prompt channels (3 = coarse mask, 4 = box map) it was trained without; they
            are zeroed at inference as in training. ``()`` for official checkpoints.
        source: the path (or ``"state dict"``) it was loaded from.
        metadata: the dissam checkpoint's metadata (training config, step, metrics), ``{}`` otherwise.
        loaded_versions: :func:`~dissam.checkpoints.tensor_versions` of ``net`` right after it was read
            from ``source`` (``None`` for a network built in Python): :attr:`weights_are_source` compares.
    """

    net: nn.Module = field(repr=False)
    config: RefinerConfig
    input_size: int = 1024
    dropped_channels: tuple[int, ...] = ()
    source: str = "model"
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    loaded_versions: dict[str, tuple[int, int]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_module(cls, net: nn.Module, input_size: int = 1024, source: str = "model") -> Refiner:
        """Wrap a network built in Python (its config is read off its weights)."""
        return cls(net, infer_refiner_config(net.state_dict()), int(input_size), (), source)

    @classmethod
    def from_checkpoint_info(cls, net: nn.Module, config: RefinerConfig, info: Mapping[str, Any],
                             source: str) -> Refiner:
        """Wrap a network loaded from a dissam checkpoint whose JSON is ``info``."""
        meta = dict(info.get("metadata") or {})
        return cls(net, config, int(meta.get("input_size", 1024)), dropped_prompt_channels(meta), source, meta)

    @property
    def weights_are_source(self) -> bool:
        """Whether ``net`` still holds exactly the weights read from ``source`` (no tensor replaced or
        changed in place since): then what was exported from that file applies to it."""
        return self.loaded_versions is not None and tensor_versions(self.net) == self.loaded_versions

    @property
    def in_ch(self) -> int:
        """Input channels: 5 for DIS-SAM's refiner, 3 for IS-Net."""
        return int(self.config.in_ch)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> Refiner:
        self.net.to(device)
        return self

    def eval(self) -> Refiner:
        self.net.eval()
        return self

    def requires_grad_(self, flag: bool = False) -> Refiner:
        for p in self.net.parameters():
            p.requires_grad_(flag)
        return self

    def forward_d1(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """d1 ``(N, 1, S, S)`` float32 for ``x`` ``(N, C, S, S)`` (moved to the refiner's device)."""
        return forward_d1(self.net, x.to(self.device), dtype=dtype, dropped_channels=self.dropped_channels)

    @property
    def edit_threshold(self) -> float | None:
        """The :func:`merge_edits` threshold this refiner was calibrated with (its checkpoint's metadata
        ``edit_threshold``), or ``None``: use the refined map as it is (the paper's model, and every
        checkpoint that records none)."""
        value = self.metadata.get("edit_threshold")
        return None if value is None else float(value)


def merge_edits(soft: np.ndarray, coarse: np.ndarray, threshold: float) -> np.ndarray:
    """The coarse mask, except where the refiner confidently changes it.

    A refiner that runs at a low resolution (the built-in compact model: 384²) blurs what it does not
    change, and one that is unsure of a texture it never saw draws it grey; the stage-1 mask is crisp and
    at full resolution. Each pixel keeps the coarse value unless the refined probability differs from
    it by more than ``threshold`` (with ``threshold >= 0.5`` that is a confident flip of the decision:
    a thin part drawn back, a leak removed), where it takes the refined value.

    Args:
        soft: refined probabilities, ``(..., H, W)`` float in [0, 1].
        coarse: the coarse masks, same shape, bool (or 0/1).
        threshold: in [0, 1); 0 returns ``soft`` itself.
    Returns:
        float32 array of ``soft``'s shape.
    """
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"edit threshold must be in [0, 1), got {threshold}")
    soft = np.asarray(soft, dtype=np.float32)
    c = np.asarray(coarse).astype(np.float32)
    if soft.shape != c.shape:
        raise ValueError(f"soft {soft.shape} and coarse {c.shape} differ in shape")
    if threshold == 0:
        return soft
    return np.where(np.abs(soft - c) > float(threshold), soft, c)


def dropped_prompt_channels(metadata: Mapping[str, Any]) -> tuple[int, ...]:
    """Input channels a refiner was trained without, from its checkpoint metadata: ``3`` (coarse
    mask) and/or ``4`` (box map).

    A dissam checkpoint trained with ``data.prompt_dropout`` probability 1 for a prompt never saw that
    prompt (the Table 2 ablation rows "box only", "mask only", "no prompt"); inference zeroes the
    channel as training did. Checkpoints trained with both prompts give ``()``."""
    pd = (metadata.get("train_config") or {}).get("data", {}).get("prompt_dropout") or [0.0, 0.0]
    # prompt_dropout is [p(mask dropped), p(box dropped)] (dissam.train.config)
    channels = (PROMPT_CHANNELS["mask"], PROMPT_CHANNELS["box"])
    return tuple(ch for ch, p in zip(channels, pd) if float(p) >= 1.0)
