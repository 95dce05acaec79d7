"""Tiny networks for the salient-object stage tests (no downloads): a probe that returns its input's
red channel, and a random 1/16-width ``ISNetDIS(3)`` saved as the authors' ``.pth`` and exported to
ONNX at IS-Net general-use's 1024² input, as rembg's file is."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def export_onnx(module: nn.Module, size: int, path) -> Path:
    """``module`` on a ``1 x 3 x size x size`` input, as ONNX (the TorchScript exporter, as
    dissam.runtime.onnx_export uses)."""
    torch.onnx.export(module.eval(), (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    return Path(path)


class RedChannel(nn.Module):
    """The probe network: its input's first channel."""

    def forward(self, x):
        return x[:, :1]


class IsNetD1(nn.Module):
    """An ``ISNetDIS``'s first side output (d1, a probability map): what rembg's IS-Net file returns."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0][0]


def tiny_isnet(folder: Path, seed: int = 3):
    """``(net, .pth path)``: a random ``ISNetDIS(3)`` at 1/16 width and its state dict."""
    from dissam.models.isnet import ISNetDIS

    torch.manual_seed(seed)
    net = ISNetDIS(3, 1, 1 / 16).eval()
    path = Path(folder) / "isnet-general-use.pth"
    torch.save(net.state_dict(), path)
    return net, path
