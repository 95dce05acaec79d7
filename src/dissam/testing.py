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


SAM_VARIANTS = {
    # embed dim, depth, heads, global-attention blocks (segment_anything.build_sam)
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def official_sam_rows(embed_dim: int, depth: int, heads: int, global_attn: tuple[int, ...]) -> list:
    """Manifest rows ``[key, shape, "float32"]`` of an official SAM checkpoint (``sam_vit_*.pth`` key
    names, in the official module order) for an image encoder of ``embed_dim`` x ``depth`` with
    ``heads`` heads and global attention in the blocks ``global_attn`` (window 14 elsewhere); the
    prompt encoder and mask decoder are the released ones (256 wide, 2 layers, 4 mask tokens).

    ``SAM_VARIANTS`` holds the released sizes; with ``sam_fixture_state_dict`` this makes full-size
    random checkpoints for speed and memory measurements (never for accuracy)."""
    from dissam.checkpoints.sam_layout import official_sam_shapes

    config = {
        "vision_config": {"hidden_size": embed_dim, "num_hidden_layers": depth, "num_attention_heads": heads,
                          "num_channels": 3, "image_size": 1024, "patch_size": 16, "output_channels": 256,
                          "qkv_bias": True, "use_rel_pos": True, "window_size": 14,
                          "global_attn_indexes": list(global_attn), "num_pos_feats": 128, "mlp_dim": 4 * embed_dim},
        "prompt_encoder_config": {"hidden_size": 256, "mask_input_channels": 16, "num_point_embeddings": 4},
        "mask_decoder_config": {"hidden_size": 256, "mlp_dim": 2048, "num_hidden_layers": 2,
                                "attention_downsample_rate": 2, "num_multimask_outputs": 3, "iou_head_depth": 3,
                                "iou_head_hidden_dim": 256},
    }
    return [[k, list(shape), "float32"] for k, shape in official_sam_shapes(config).items()]
