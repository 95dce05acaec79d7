"""IS-Net (Qin et al., ECCV 2022) as used by DIS-SAM: the refiner ``ISNetDIS`` and the ground-truth
encoder ``ISNetGTEncoder``.

Module and attribute names, parameter order and forward logic are those of the released code
(``IS_Net/models/isnet.py``), so the official ``isnet.pth``, ``isnet-general-use.pth`` and the
DIS-SAM checkpoint load with ``strict=True``. All upsampling is
bilinear with ``align_corners=False``; all pooling is 2x2 max
pooling with ``ceil_mode=True`` so any input size (odd sizes included) works.

Shapes (input ``B x C x H x W``):

* ``ISNetDIS.forward`` -> ``(sides, features)``: ``sides`` is a list of six ``B x out_ch x H x W``
  sigmoid maps d1..d6 (d1 is the prediction); ``features`` is ``[hx1d, hx2d, hx3d, hx4d, hx5d, hx6]``
  at strides 2, 4, 8, 16, 32, 64 with 64, 64, 128, 256, 512, 512 channels (full width).
* ``ISNetGTEncoder.forward`` -> ``(sides, features)`` with features ``[hx1 .. hx6]`` of the same
  shapes, so they pair one-to-one with the refiner's for the feature loss.

``width`` scales every channel count (1.0 = the paper's network); smaller widths give the compact
variants registered in :data:`REFINER_VARIANTS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "REBNCONV",
    "RSU4",
    "RSU4F",
    "RSU5",
    "RSU6",
    "RSU7",
    "ISNetDIS",
    "ISNetGTEncoder",
    "RefinerConfig",
    "REFINER_VARIANTS",
    "build_refiner",
]


def _upsample_like(src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
    return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=False)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class REBNCONV(nn.Module):
    """3x3 conv (dilation ``dirate``) -> BatchNorm -> ReLU. Keys: ``conv_s1``, ``bn_s1``."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, dirate: int = 1, stride: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=1 * dirate, dilation=1 * dirate, stride=stride)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class myrebnconv(nn.Module):  # noqa: N801 - the released name, kept for clarity of the key map
    """Conv -> BatchNorm -> ReLU with keys ``conv``, ``bn`` (the GT encoder's ``conv_in``)."""

    def __init__(self, in_ch=3, out_ch=1, kernel_size=3, stride=1, padding=1, dilation=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups
        )
        self.bn = nn.BatchNorm2d(out_ch)
        self.rl = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rl(self.bn(self.conv(x)))


class _RSU(nn.Module):
    """Residual U-block of height ``L`` (RSU7/6/5/4): ``L-2`` pools, a dilated bottom conv, a
    decoder that concatenates (deeper decoder feature, encoder skip). Returns ``hx1d + hxin``.

    Attributes are registered in the released order (``rebnconvin``, ``rebnconv1``, ``pool1``,
    ``rebnconv2``, ..., ``rebnconvL``, ``rebnconv{L-1}d`` ... ``rebnconv1d``) so that the state-dict
    key order equals the official one.
    """

    height: int

    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3):
        super().__init__()
        L = self.height
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        for i in range(1, L - 1):
            setattr(self, f"pool{i}", _pool())
            setattr(self, f"rebnconv{i + 1}", REBNCONV(mid_ch, mid_ch, dirate=1))
        setattr(self, f"rebnconv{L}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for i in range(L - 1, 1, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid_ch * 2, mid_ch, dirate=1))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = self.height
        hxin = self.rebnconvin(x)
        enc = [self.rebnconv1(hxin)]  # hx1 .. hx{L-1}
        for i in range(1, L - 1):
            enc.append(getattr(self, f"rebnconv{i + 1}")(getattr(self, f"pool{i}")(enc[-1])))
        d = getattr(self, f"rebnconv{L}")(enc[-1])  # hx{L}
        for i in range(L - 1, 0, -1):
            d = getattr(self, f"rebnconv{i}d")(torch.cat([d, enc[i - 1]], 1))
            if i > 1:
                d = _upsample_like(d, enc[i - 2])
        return d + hxin


class RSU7(_RSU):
    height = 7

    def __init__(self, in_ch=3, mid_ch=12, out_ch=3, img_size=512):  # img_size unused, as released
        super().__init__(in_ch, mid_ch, out_ch)


class RSU6(_RSU):
    height = 6


class RSU5(_RSU):
    height = 5


class RSU4(_RSU):
    height = 4


class RSU4F(nn.Module):
    """RSU without pooling: dilations 1, 2, 4, 8 instead (keys as released)."""

    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3):
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat([hx4, hx3], 1))
        hx2d = self.rebnconv2d(torch.cat([hx3d, hx2], 1))
        hx1d = self.rebnconv1d(torch.cat([hx2d, hx1], 1))
        return hx1d + hxin


def _c(ch: int, width: float) -> int:
    return max(4, int(round(ch * width)))


def _add_side_convs(net: nn.Module, channels: list[int], out_ch: int) -> None:
    """Register ``side1..side6`` (3x3 conv to ``out_ch``), in the released order."""
    for i, ch in enumerate(channels, start=1):
        setattr(net, f"side{i}", nn.Conv2d(ch, out_ch, 3, padding=1))


def _encode(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The shared encoder path of both networks: ``conv_in``, then six stages with max pooling in
    between; returns ``[hx1 .. hx6]`` (strides 2 .. 64)."""
    hx = net.stage1(net.conv_in(x))
    feats = [hx]
    for i in range(2, 7):
        hx = getattr(net, f"stage{i}")(getattr(net, f"pool{i - 1}{i}")(hx))
        feats.append(hx)
    return feats


def _side_maps(net: nn.Module, feats: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """``sigmoid(upsample(side_i(feat_i)))`` at the input size, for i = 1..6."""
    return [torch.sigmoid(_upsample_like(getattr(net, f"side{i}")(f), x)) for i, f in enumerate(feats, start=1)]


class ISNetGTEncoder(nn.Module):
    """The ground-truth encoder: a mask (``B x in_ch x H x W``, values in [0, 1]) in, six sigmoid side
    maps and the encoder features ``[hx1 .. hx6]`` out (no decoder). 6,877,734 parameters."""

    def __init__(self, in_ch: int = 1, out_ch: int = 1, width: float = 1.0):
        super().__init__()
        c = lambda ch: _c(ch, width)  # noqa: E731
        self.in_ch, self.out_ch, self.width = in_ch, out_ch, width
        self.conv_in = myrebnconv(in_ch, c(16), 3, stride=2, padding=1)
        self.stage1 = RSU7(c(16), c(16), c(64))
        self.pool12 = _pool()
        self.stage2 = RSU6(c(64), c(16), c(64))
        self.pool23 = _pool()
        self.stage3 = RSU5(c(64), c(32), c(128))
        self.pool34 = _pool()
        self.stage4 = RSU4(c(128), c(32), c(256))
        self.pool45 = _pool()
        self.stage5 = RSU4F(c(256), c(64), c(512))
        self.pool56 = _pool()
        self.stage6 = RSU4F(c(512), c(64), c(512))
        _add_side_convs(self, [c(ch) for ch in (64, 64, 128, 256, 512, 512)], out_ch)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats = _encode(self, x)
        return _side_maps(self, feats, x), feats


class ISNetDIS(nn.Module):
    """The IS-Net segmentation network. ``in_ch=3`` is the original IS-Net; ``in_ch=5`` is the DIS-SAM
    refiner, whose input channels are ``[R, G, B, SAM mask, box map]`` (RGB normalised to
    [-0.5, 0.5], mask and box map in [0, 1]). 44,046,790 parameters (in_ch=3), 44,047,942 (in_ch=5).

    ``forward(x)`` returns ``(sides, features)`` as described in the module docstring; the prediction
    is ``sides[0]`` (d1), a probability map, not logits.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 1, width: float = 1.0):
        super().__init__()
        c = lambda ch: _c(ch, width)  # noqa: E731
        self.in_ch, self.out_ch, self.width = in_ch, out_ch, width
        self.conv_in = nn.Conv2d(in_ch, c(64), 3, stride=2, padding=1)
        self.pool_in = _pool()  # defined but unused in forward, as released
        self.stage1 = RSU7(c(64), c(32), c(64))
        self.pool12 = _pool()
        self.stage2 = RSU6(c(64), c(32), c(128))
        self.pool23 = _pool()
        self.stage3 = RSU5(c(128), c(64), c(256))
        self.pool34 = _pool()
        self.stage4 = RSU4(c(256), c(128), c(512))
        self.pool45 = _pool()
        self.stage5 = RSU4F(c(512), c(256), c(512))
        self.pool56 = _pool()
        self.stage6 = RSU4F(c(512), c(256), c(512))
        self.stage5d = RSU4F(c(1024), c(256), c(512))
        self.stage4d = RSU4(c(1024), c(128), c(256))
        self.stage3d = RSU5(c(512), c(64), c(128))
        self.stage2d = RSU6(c(256), c(32), c(64))
        self.stage1d = RSU7(c(128), c(16), c(64))
        _add_side_convs(self, [c(ch) for ch in (64, 64, 128, 256, 512, 512)], out_ch)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hx1, hx2, hx3, hx4, hx5, hx6 = _encode(self, x)
        hx5d = self.stage5d(torch.cat([_upsample_like(hx6, hx5), hx5], 1))
        hx4d = self.stage4d(torch.cat([_upsample_like(hx5d, hx4), hx4], 1))
        hx3d = self.stage3d(torch.cat([_upsample_like(hx4d, hx3), hx3], 1))
        hx2d = self.stage2d(torch.cat([_upsample_like(hx3d, hx2), hx2], 1))
        hx1d = self.stage1d(torch.cat([_upsample_like(hx2d, hx1), hx1], 1))
        feats = [hx1d, hx2d, hx3d, hx4d, hx5d, hx6]
        return _side_maps(self, feats, x), feats


@dataclass(frozen=True)
class RefinerConfig:
    """Everything needed to rebuild a refiner (stored next to its weights)."""

    arch: str = "isnet"  # "isnet" (ISNetDIS) or "gt_encoder" (ISNetGTEncoder)
    in_ch: int = 5
    out_ch: int = 1
    width: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RefinerConfig:
        known = {k: d[k] for k in ("arch", "in_ch", "out_ch", "width") if k in d}
        return cls(**known)


# Named variants. "dis-sam" is the paper's refiner; "dis-sam-compact" the built-in CPU-trainable one.
REFINER_VARIANTS: dict[str, RefinerConfig] = {
    "dis-sam": RefinerConfig("isnet", 5, 1, 1.0),
    "isnet": RefinerConfig("isnet", 3, 1, 1.0),
    "dis-sam-compact": RefinerConfig("isnet", 5, 1, 0.25),
    "gt-encoder": RefinerConfig("gt_encoder", 1, 1, 1.0),
    "gt-encoder-compact": RefinerConfig("gt_encoder", 1, 1, 0.25),
}


def build_refiner(config: RefinerConfig | str | dict = "dis-sam") -> nn.Module:
    """Build a network from a variant name, a :class:`RefinerConfig` or its dict (random init)."""
    if isinstance(config, str):
        if config not in REFINER_VARIANTS:
            raise KeyError(f"unknown refiner variant {config!r}; known: {', '.join(REFINER_VARIANTS)}")
        config = REFINER_VARIANTS[config]
    elif isinstance(config, dict):
        config = RefinerConfig.from_dict(config)
    if config.arch == "isnet":
        return ISNetDIS(config.in_ch, config.out_ch, config.width)
    if config.arch == "gt_encoder":
        return ISNetGTEncoder(config.in_ch, config.out_ch, config.width)
    raise KeyError(f"unknown architecture {config.arch!r}")
