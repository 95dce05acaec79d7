"""Losses against the authors' numbers (tests/fixtures/isnet/losses.json, 1e-4 relative)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dissam.losses import OrthoRegularizer, bce_loss, feature_loss, side_loss, soft_iou_loss
from dissam.models.isnet import ISNetDIS, ISNetGTEncoder
from dissam.testing import isnet_fixture_state_dict

REL = 1e-4


@pytest.fixture(scope="module")
def fixture_outputs(fixtures_dir, isnet_manifest):
    """Fixture networks (eval mode) run in float64 so our convolution order adds no noise."""
    inputs = np.load(fixtures_dir / "isnet" / "inputs.npz")
    expected = json.loads((fixtures_dir / "isnet" / "losses.json").read_text())
    ref = ISNetDIS(5)
    ref.load_state_dict(isnet_fixture_state_dict(isnet_manifest["isnet_dis_in5"]["state_dict"]))
    gte = ISNetGTEncoder()
    gte.load_state_dict(isnet_fixture_state_dict(isnet_manifest["isnet_gt_encoder"]["state_dict"]))
    target = torch.from_numpy(inputs["target"]).double()
    with torch.inference_mode():
        r_sides, r_feats = ref.double().eval()(torch.from_numpy(inputs["x5"]).double())
        g_sides, g_feats = gte.double().eval()(target)
    return {
        "expected": expected,
        "target": target,
        "ref": ref.float(),
        "gte": gte.float(),
        "r": (r_sides, r_feats),
        "g": (g_sides, g_feats),
    }


def _close(got, want):
    assert abs(float(got) - want) <= REL * abs(want), (float(got), want)


def test_refiner_side_loss_parity(fixture_outputs):
    e = fixture_outputs["expected"]
    total, d1 = side_loss(fixture_outputs["r"][0], fixture_outputs["target"])
    _close(d1, e["refiner_side_loss_d1"])
    _close(total, e["refiner_side_loss_total"])


def test_refiner_feature_mse_parity(fixture_outputs):
    e = fixture_outputs["expected"]
    total, _ = side_loss(fixture_outputs["r"][0], fixture_outputs["target"])
    fm = feature_loss(fixture_outputs["r"][1], fixture_outputs["g"][1])
    _close(fm, e["refiner_feature_mse"])
    _close(total + fm, e["refiner_side_plus_feature_mse"])


def test_gt_encoder_side_loss_parity(fixture_outputs):
    e = fixture_outputs["expected"]
    total, d1 = side_loss(fixture_outputs["g"][0], fixture_outputs["target"])
    _close(d1, e["gt_encoder_side_loss_d1"])
    _close(total, e["gt_encoder_side_loss_total"])


@pytest.mark.parametrize(
    "net,mode,key",
    [
        ("ref", "all_nonbias", "refiner_ortho_all_nonbias"),
        ("ref", "conv_only", "refiner_ortho_conv_weights_only"),
        ("gte", "all_nonbias", "gt_encoder_ortho_all_nonbias"),
    ],
)
def test_ortho_parity(fixture_outputs, net, mode, key):
    reg = OrthoRegularizer(fixture_outputs[net], mode=mode, weight=1e-8)
    with torch.no_grad():
        _close(reg(), fixture_outputs["expected"][key])


def _ortho_released(model: nn.Module, weight: float = 1e-8) -> torch.Tensor:
    """The released loop: a fresh identity per parameter."""
    total = torch.zeros(())
    for name, p in model.named_parameters():
        if "bias" not in name:
            w = p.view(p.shape[0], -1)
            total = total + weight * (w @ w.t() - torch.eye(w.shape[0])).abs().sum()
    return total


def test_ortho_gradient_matches_released_formulation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.Conv2d(6, 2, 1))
    with torch.no_grad():
        net[1].weight.mul_(torch.linspace(0.5, 1.5, 6))
    reg = OrthoRegularizer(net, weight=1e-2)
    a = reg()
    ga = torch.autograd.grad(a, list(net.parameters()), allow_unused=True)
    b = _ortho_released(net, 1e-2)
    gb = torch.autograd.grad(b, list(net.parameters()), allow_unused=True)
    torch.testing.assert_close(a, b)
    for x, y in zip(ga, gb):
        if y is None:
            assert x is None
        else:
            torch.testing.assert_close(x, y)


def test_ortho_sets_and_bn_init_value():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 3))
    assert [n for n, _ in OrthoRegularizer(net, "all_nonbias").params] == ["0.weight", "1.weight", "2.weight"]
    assert [n for n, _ in OrthoRegularizer(net, "conv_only").params] == ["0.weight"]
    assert float(OrthoRegularizer(net, "none")().detach()) == 0.0
    bn_only = nn.BatchNorm2d(8)  # gamma = 1: |11^T - I| sums to C^2 - C
    assert float(OrthoRegularizer(bn_only, weight=1.0)().detach()) == pytest.approx(8 * 8 - 8)
    with pytest.raises(ValueError, match="unknown ORTHO mode"):
        OrthoRegularizer(net, "convs")


def test_bce_clamps_like_bceloss_and_iou_smoothing():
    p = torch.tensor([[[[0.0, 1.0], [0.3, 0.9]]]])
    t = torch.tensor([[[[1.0, 0.0], [0.5, 1.0]]]])
    torch.testing.assert_close(bce_loss(p, t), nn.BCELoss()(p, t))
    assert float(bce_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))) == pytest.approx(100.0)
    inter, union = (p * t).sum(), (p + t).sum() - (p * t).sum()
    assert float(soft_iou_loss(p, t)) == pytest.approx(float(1 - (inter + 1) / (union + 1)))
    # per image, then averaged
    q = torch.full_like(p, 0.5)
    two = soft_iou_loss(torch.cat([p, q]), torch.cat([t, t]))
    assert float(two) == pytest.approx((float(soft_iou_loss(p, t)) + float(soft_iou_loss(q, t))) / 2)


def test_side_loss_weights_and_shape_errors():
    t = torch.rand(2, 1, 8, 8)
    sides = [torch.rand(2, 1, 8, 8) for _ in range(6)]
    total, d1 = side_loss(sides, t, bce_weight=1.0, iou_weight=0.0)
    assert float(d1) == pytest.approx(float(bce_loss(sides[0], t)))
    assert float(total) == pytest.approx(sum(float(bce_loss(s, t)) for s in sides), rel=1e-6)
    with pytest.raises(ValueError, match="side map 1"):
        side_loss([sides[0], torch.rand(2, 1, 4, 4)], t)
    with pytest.raises(ValueError, match="feature 0"):
        feature_loss([torch.rand(1, 2, 3, 3)], [torch.rand(1, 2, 4, 4)])
