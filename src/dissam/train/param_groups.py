"""Which refiner parameters train, and at what share of the learning rate (``optim.freeze``,
``optim.lr_mult``), for fine-tuning: e.g. freeze the encoder stages of an IS-Net whose weights
were inflated to five input channels, or give them a tenth of the rate.

Patterns are shell globs (:mod:`fnmatch`) matched against the parameter names of the refiner
(``stage1.rebnconvin.conv.weight``, ``conv_in.weight``, ``side1.bias``, ...). A frozen parameter
gets ``requires_grad=False`` and stays out of the optimizer; the others are grouped by the first
``lr_mult`` pattern they match (unmatched: factor 1), one optimizer group per factor in the order
the patterns are written. A pattern that matches no parameter is an error (a typo would silently
train everything).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from torch import nn

from dissam.errors import DisSamError

__all__ = ["ParamGroups", "param_groups"]


class ParamGroups:
    """The optimizer groups (``[{"params": [...]}, ...]``), their learning-rate factors (aligned with
    the groups) and the counts of frozen and trained parameters."""

    def __init__(self, groups: list[dict], factors: list[float], frozen: int, trained: int):
        self.groups, self.factors, self.frozen, self.trained = groups, factors, frozen, trained

    def describe(self) -> str:
        parts = [f"{len(g['params'])} tensors x{f:g}" for g, f in zip(self.groups, self.factors)]
        return f"refiner: {self.trained} parameters train ({', '.join(parts)}), {self.frozen} frozen"


def param_groups(model: nn.Module, freeze: Sequence[str] = (), lr_mult: Mapping[str, float] | None = None) -> ParamGroups:
    """Apply ``freeze`` to ``model`` and group its other parameters by ``lr_mult`` (module docstring).
    Without either, one group of all parameters with factor 1 (the optimizer of the released code)."""
    lr_mult = dict(lr_mult or {})
    named = list(model.named_parameters())
    used: set[str] = set()

    def first_match(name: str, patterns) -> str | None:
        for pat in patterns:
            if fnmatchcase(name, pat):
                used.add(pat)
                return pat
        return None

    by_factor: dict[float, list] = {}
    order: list[float] = [1.0]
    frozen = trained = 0
    for name, p in named:
        if first_match(name, freeze) is not None:
            p.requires_grad_(False)
            frozen += p.numel()
            continue
        pat = first_match(name, lr_mult)
        factor = float(lr_mult[pat]) if pat is not None else 1.0
        if factor not in order:
            order.append(factor)
        by_factor.setdefault(factor, []).append(p)
        trained += p.numel()
    unused = [p for p in (*freeze, *lr_mult) if p not in used]
    if unused:
        example = ", ".join(n for n, _ in named[:4])
        raise DisSamError(
            f"optim.freeze / optim.lr_mult: no refiner parameter matches {unused} (names look like {example}, ...)"
        )
    if not by_factor:
        raise DisSamError("optim.freeze leaves no refiner parameter to train")
    factors = [f for f in order if f in by_factor]
    return ParamGroups([{"params": by_factor[f]} for f in factors], factors, frozen, trained)
