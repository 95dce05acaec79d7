"""Validation during training: the paper's metrics on the authors' saved-map protocol.

Each validation image goes through the one refiner forward pass of the package
(:func:`dissam.refiner.forward_d1`: ``inference_mode``, autocast at the run's AMP dtype, d1 as
float32); d1 is resized bilinearly to the original size, min-max normalised, ×255 and truncated to
``uint8`` (:func:`authors_u8`), then scored against the original-size ground truth with
:class:`dissam.metrics.MetricSuite`. Scores are averaged over the validation sets.

The ground truth at the original size comes from the dataset's ``gt_u8(index)`` method if it has one,
else from ``dataset.samples[index].gt`` (a mask file), else from the label itself (when the label is
already at the original size).

Under torchrun every rank scores every ``world_size``-th item of each set (no padding, so no item
counts twice), the per-image results are gathered and aggregated in item order on every rank: the
numbers equal those of one process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dissam.errors import DisSamError
from dissam.io import read_mask
from dissam.metrics import MetricSuite
from dissam.refiner import forward_d1
from dissam.train.distributed import DistInfo, all_gather_objects
from dissam.transforms import postprocess, to_authors_png

__all__ = ["authors_u8", "orig_hw_list", "gt_u8", "evaluate_model"]


def authors_u8(d1: torch.Tensor, orig_hw: tuple[int, int]) -> np.ndarray:
    """A prediction as the authors save it: ``d1`` (``(1, h, w)`` or ``(h, w)`` probabilities) resized
    bilinearly (align_corners False) to ``orig_hw = (H, W)``, min-max normalised per image (a constant
    map gives zeros instead of the released NaN), ×255 and truncated to ``uint8``: ``(H, W)``
    (:func:`dissam.transforms.postprocess` then :func:`dissam.transforms.to_authors_png`)."""
    return to_authors_png(postprocess(d1.detach().float().cpu().reshape(d1.shape[-2:]), orig_hw))


def orig_hw_list(value, n: int) -> list[tuple[int, int]]:
    """The collated ``orig_hw`` of a batch of ``n`` (a ``(n, 2)`` tensor, a ``[H(n), W(n)]`` pair of
    tensors as the default collate makes of tuples, or a list of pairs) as ``(H, W)`` pairs."""
    if isinstance(value, torch.Tensor):
        return [(int(a), int(b)) for a, b in value.reshape(n, 2).tolist()]
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], torch.Tensor):
        return [(int(a), int(b)) for a, b in zip(value[0].tolist(), value[1].tolist())]
    return [(int(a), int(b)) for a, b in value]


def gt_u8(dataset, index: int, label: torch.Tensor, orig_hw: tuple[int, int]) -> np.ndarray:
    """Ground truth ``(H, W)`` uint8 of item ``index`` at its original size ``orig_hw`` (module
    docstring for where it comes from); ``label`` is the item's ``(1, S, S)`` label."""
    fn = getattr(dataset, "gt_u8", None)
    if callable(fn):
        return np.asarray(fn(index))
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        gt = getattr(samples[index], "gt", None)
        if gt is not None:
            return read_mask(gt)
    lab = label.reshape(label.shape[-2:])
    if tuple(lab.shape) != tuple(orig_hw):
        raise DisSamError(
            "the validation dataset gives neither gt_u8(index) nor samples[index].gt, and its labels are "
            "not at the original size: cannot evaluate on the paper's protocol"
        )
    return (lab.float() * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def evaluate_model(
    model: nn.Module,
    datasets: Sequence,
    metrics: Sequence[str],
    *,
    input_key: str,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 1,
    num_workers: int = 0,
    dist: DistInfo | None = None,
) -> dict[str, float]:
    """Paper metrics of ``model`` on each dataset, averaged over the datasets: ``{metric: value}``.

    ``input_key`` is the item field the model reads (``"image"`` ``(5, S, S)`` for the refiner,
    ``"label"`` ``(1, S, S)`` for the GT encoder, as in the released code); ``dtype`` the run's AMP
    dtype (float32 = no autocast). With ``dist`` of several processes each scores its share of every
    set and all receive the same numbers (module docstring); every rank must call it. The model runs
    in eval mode and is put back in its previous mode."""
    dist = dist or DistInfo()
    was_training = model.training
    model.eval()
    per_set = []
    try:
        for ds in datasets:
            mine = list(range(dist.rank, len(ds), dist.world_size))
            part = ds if dist.world_size == 1 else torch.utils.data.Subset(ds, mine)
            loader = torch.utils.data.DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers)
            local = MetricSuite(metrics=tuple(metrics))
            order = []
            for batch in loader:
                d1 = forward_d1(model, batch[input_key].to(device), dtype=dtype)
                n = d1.shape[0]
                hws = orig_hw_list(batch["orig_hw"], n)
                idx = batch["index"].tolist() if isinstance(batch["index"], torch.Tensor) else list(batch["index"])
                for b in range(n):
                    gt = gt_u8(ds, int(idx[b]), batch["label"][b], hws[b])
                    local.step(authors_u8(d1[b], gt.shape), gt)
                    order.append(int(idx[b]))
            gathered = all_gather_objects(dist, list(zip(order, local.images)))
            suite = MetricSuite(metrics=tuple(metrics))
            for _, result in sorted((pair for part in gathered for pair in part), key=lambda p: p[0]):
                suite.add(result)
            per_set.append(suite.results())
    finally:
        model.train(was_training)
    return {m: float(np.mean([r[m] for r in per_set])) for m in metrics}
