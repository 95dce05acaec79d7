"""The DIS-SAM training losses, as plain functions.

* :func:`side_loss`: deep supervision of the six side maps, ``Σ_i [20·BCE(d_i, t) + 0.5·IoU(d_i, t)]``
  with the same weights on every side (the authors' ``muti_loss_fusion``).
* :func:`feature_loss`: intermediate supervision by the frozen GT encoder, ``Σ_i MSE(f_i, g_i)``
  (IS-Net, Qin et al. ECCV 2022, ``muti_loss_fusion_kl`` in ``'MSE'`` mode).
* :class:`OrthoRegularizer`: ``weight · Σ_W Σ|W Wᵀ − I|`` (DIS-SAM's ORTHO term), over all non-bias
  parameters as released (BatchNorm γ included) or over convolution weights only, as the paper says.

All maps are probabilities (the networks apply the sigmoid), shaped ``(B, 1, H, W)``; targets are
soft ground truths in ``[0, 1]`` of the same shape (not binarised).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["bce_loss", "soft_iou_loss", "side_loss", "feature_loss", "OrthoRegularizer", "ORTHO_MODES"]

ORTHO_MODES = ("all_nonbias", "conv_only", "none")


def bce_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities ``pred`` against soft ``target`` (any equal shapes).

    Same as ``nn.BCELoss(reduction='mean')``: the logs are clamped at -100, so a saturated wrong
    prediction costs 100, not infinity.
    """
    return F.binary_cross_entropy(pred, target, reduction="mean")


def soft_iou_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``mean_{b,c}(1 − (Σ p·g + s) / (Σ (p + g) − Σ p·g + s))`` over ``(B, C, H, W)`` maps, with the
    sums over H and W and ``s = smooth`` (+1 in the released code)."""
    inter = (pred * target).sum(dim=(-2, -1))
    union = (pred + target).sum(dim=(-2, -1)) - inter
    return (1.0 - (inter + smooth) / (union + smooth)).mean()


def side_loss(
    sides: Sequence[torch.Tensor],
    target: torch.Tensor,
    bce_weight: float = 20.0,
    iou_weight: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deep-supervision loss of the side maps.

    Args:
        sides: the six (or any number of) side probability maps ``(B, 1, H, W)``, d1 first, all at the
            target's size (the networks upsample them before the sigmoid).
        target: soft ground truth ``(B, 1, H, W)`` in [0, 1].
        bce_weight, iou_weight: per-side weights (20 and 0.5 in DIS-SAM; IS-Net used 1 and 0).

    Returns:
        ``(total, d1_term)``: scalar tensors; ``d1_term`` is the term of ``sides[0]`` alone (what the
        authors log as the "target loss").
    """
    if len(sides) == 0:
        raise ValueError("side_loss needs at least one side map")
    total = None
    first = None
    for i, d in enumerate(sides):
        if d.shape != target.shape:
            raise ValueError(f"side map {i} has shape {tuple(d.shape)}, target {tuple(target.shape)}")
        term = bce_weight * bce_loss(d, target)
        if iou_weight:
            term = term + iou_weight * soft_iou_loss(d, target)
        total = term if total is None else total + term
        if i == 0:
            first = term
    return total, first


def feature_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ_i mean((s_i − t_i)²)`` over paired feature maps (refiner ``[hx1d..hx5d, hx6]`` against the GT
    encoder's ``[hx1..hx6]``, each ``(B, C_i, H_i, W_i)``, equal shapes). Returns a scalar tensor."""
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student features vs {len(teacher)} teacher features")
    total = None
    for i, (s, t) in enumerate(zip(student, teacher)):
        if s.shape != t.shape:
            raise ValueError(f"feature {i}: student {tuple(s.shape)} vs teacher {tuple(t.shape)}")
        term = F.mse_loss(s, t, reduction="mean")
        total = term if total is None else total + term
    return total


class OrthoRegularizer:
    """DIS-SAM's orthogonality penalty ``weight · Σ_W Σ_ij |(W Wᵀ − I)_ij|`` with ``W`` each selected
    parameter viewed as ``(shape[0], -1)``.

    Args:
        model: the network whose parameters are penalised (the set is fixed at construction; call
            :meth:`refresh` after swapping parameters).
        mode: ``"all_nonbias"`` (the released code: every parameter whose name has no ``"bias"``,
            so BatchNorm γ vectors count as ``C x 1`` matrices), ``"conv_only"`` (the paper's text:
            weights of ``nn.Conv2d`` layers only) or ``"none"``.
        weight: the factor (1e-8 in the released code).

    Unlike the released loop, no identity matrix is built per step: one identity per (size, dtype,
    device) is cached and reused (same value and gradient as the released formulation).
    """

    def __init__(self, model: nn.Module, mode: str = "all_nonbias", weight: float = 1e-8):
        if mode not in ORTHO_MODES:
            raise ValueError(f"unknown ORTHO mode {mode!r}; choose one of {', '.join(ORTHO_MODES)}")
        self.model, self.mode, self.weight = model, mode, float(weight)
        self._eyes: dict = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-collect the penalised parameters from the model."""
        if self.mode == "none":
            self.params: list[tuple[str, nn.Parameter]] = []
            return
        if self.mode == "all_nonbias":
            self.params = [(n, p) for n, p in self.model.named_parameters() if "bias" not in n]
        else:
            self.params = []
            for mname, mod in self.model.named_modules():
                if isinstance(mod, nn.Conv2d):
                    self.params.append((f"{mname}.weight" if mname else "weight", mod.weight))

    def __call__(self) -> torch.Tensor:
        """The penalty as a scalar tensor (differentiable w.r.t. the parameters); 0 for mode "none"."""
        if not self.params:
            return torch.zeros(())
        total = None
        for _, p in self.params:
            w = p.reshape(p.shape[0], -1)
            term = (w @ w.t() - self._eye(w.shape[0], w.dtype, w.device)).abs().sum()
            total = term if total is None else total + term
        return self.weight * total

    def _eye(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (n, dtype, device)
        eye = self._eyes.get(key)
        if eye is None:
            eye = self._eyes[key] = torch.eye(n, dtype=dtype, device=device)
        return eye
