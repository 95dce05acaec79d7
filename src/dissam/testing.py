"""Deterministic weights for parity tests, benchmarks and examples.

These follow the recipe the parity fixtures' reference outputs were made with (the repository's
fixture notes spell it out), so any model built from a manifest of ``[key, shape, dtype]`` rows gets exactly the weights the
authors' code was run with.
"""

from __future__ import annotations

import math

import numpy as np


def _u(k: int, n: int) -> np.ndarray:
    return ((np.arange(n, dtype=np.int64) * 7919 + k * 104729) % 10007) / 10007 - 0.5


def isnet_fixture_state_dict(rows) -> dict:
    """IS-Net / GT-encoder weights from manifest rows ``[key, shape, dtype]`` (fixtures README recipe)."""
    import torch

    out = {}
    for k, (key, shape, _dtype) in enumerate(rows):
        n = int(np.prod(shape)) if len(shape) else 1
        u = _u(k, n)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if key.endswith("running_var"):
            v = 0.5 + np.abs(u)
        elif key.endswith("running_mean"):
            v = 0.2 * u
        elif key.endswith("weight") and len(shape) == 1:
            v = 1 + 0.2 * u
        elif key.endswith("bias"):
            v = 0.1 * u
        else:
            fan_in = n / shape[0]
            v = u * 2 * math.sqrt(6 / fan_in)
        out[key] = torch.from_numpy(v.astype(np.float32).reshape(shape))
    return out


def sam_fixture_state_dict(rows) -> dict:
    """Tiny-SAM weights (official key names) from manifest rows (fixtures README recipe)."""
    import torch

    out = {}
    for k, (key, shape, _dtype) in enumerate(rows):
        n = int(np.prod(shape)) if len(shape) else 1
        r = _u(k, n) * math.sqrt(12)
        if key.endswith("positional_encoding_gaussian_matrix"):
            v = r
        elif len(shape) == 1 and ("norm" in key or key.endswith(".weight")):
            v = 1 + 0.1 * r if key.endswith("weight") else 0.05 * r
        elif key.endswith("bias"):
            v = 0.05 * r
        elif "pos_embed" in key or "rel_pos" in key:
            v = 0.02 * r
        else:
            v = r / math.sqrt(max(1, n / shape[0])) if len(shape) > 1 else r
        out[key] = torch.from_numpy(v.astype(np.float32).reshape(shape))
    return out
