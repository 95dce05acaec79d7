"""The tensors an official SAM checkpoint must hold, from its config: checks without building a model.

:func:`official_sam_shapes` lists the key and shape of every tensor of an official Meta checkpoint
(``sam_vit_*.pth`` key names, in the official module order) for the ``transformers.SamConfig``
keyword arguments that :func:`dissam.checkpoints.sam.infer_sam_config` reads off a checkpoint.
:func:`dissam.checkpoints.sam.check_official_sam` compares a checkpoint with it, so a truncated or edited file is refused
when it is opened, with the same message as a strict load, even when no ``SamModel`` is ever built
(ONNX Runtime running graphs cached for the file). It needs no ``transformers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["official_sam_shapes"]


def _vision(v: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    c, grid, patch = int(v["hidden_size"]), int(v["image_size"]) // int(v["patch_size"]), int(v["patch_size"])
    head, mlp, window = c // int(v["num_attention_heads"]), int(v["mlp_dim"]), int(v["window_size"])
    rows = [("image_encoder.pos_embed", (1, grid, grid, c)),
            ("image_encoder.patch_embed.proj.weight", (c, int(v["num_channels"]), patch, patch)),
            ("image_encoder.patch_embed.proj.bias", (c,))]
    for b in range(int(v["num_hidden_layers"])):
        p = f"image_encoder.blocks.{b}."
        span = 2 * (grid if b in v["global_attn_indexes"] else window) - 1
        rows += [(p + "norm1.weight", (c,)), (p + "norm1.bias", (c,))]
        if v.get("use_rel_pos", True):
            rows += [(p + "attn.rel_pos_h", (span, head)), (p + "attn.rel_pos_w", (span, head))]
        rows += [(p + "attn.qkv.weight", (3 * c, c))] + ([(p + "attn.qkv.bias", (3 * c,))] if v["qkv_bias"] else [])
        rows += [(p + "attn.proj.weight", (c, c)), (p + "attn.proj.bias", (c,)),
                 (p + "norm2.weight", (c,)), (p + "norm2.bias", (c,)),
                 (p + "mlp.lin1.weight", (mlp, c)), (p + "mlp.lin1.bias", (mlp,)),
                 (p + "mlp.lin2.weight", (c, mlp)), (p + "mlp.lin2.bias", (c,))]
    out = int(v["output_channels"])
    return rows + [("image_encoder.neck.0.weight", (out, c, 1, 1)), ("image_encoder.neck.1.weight", (out,)),
                   ("image_encoder.neck.1.bias", (out,)), ("image_encoder.neck.2.weight", (out, out, 3, 3)),
                   ("image_encoder.neck.3.weight", (out,)), ("image_encoder.neck.3.bias", (out,))]


def _prompt(p: Mapping[str, Any], pos_feats: int) -> list[tuple[str, tuple[int, ...]]]:
    e, m = int(p["hidden_size"]), int(p["mask_input_channels"])
    rows = [("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", (2, pos_feats))]
    rows += [(f"prompt_encoder.point_embeddings.{i}.weight", (1, e)) for i in range(int(p["num_point_embeddings"]))]
    rows += [("prompt_encoder.not_a_point_embed.weight", (1, e))]
    for i, (cin, cout, k) in {0: (1, m // 4, 2), 1: (0, m // 4, 0), 3: (m // 4, m, 2), 4: (0, m, 0), 6: (m, e, 1)}.items():
        rows += [(f"prompt_encoder.mask_downscaling.{i}.weight", (cout, cin, k, k) if k else (cout,)),
                 (f"prompt_encoder.mask_downscaling.{i}.bias", (cout,))]
    return rows + [("prompt_encoder.no_mask_embed.weight", (1, e))]


def _attention(prefix: str, d: int, inner: int) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for proj, shape in (("q_proj", (inner, d)), ("k_proj", (inner, d)), ("v_proj", (inner, d)), ("out_proj", (d, inner))):
        rows += [(f"{prefix}.{proj}.weight", shape), (f"{prefix}.{proj}.bias", shape[:1])]
    return rows


def _mlp(prefix: str, dims: list[int]) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        rows += [(f"{prefix}.layers.{i}.weight", (cout, cin)), (f"{prefix}.layers.{i}.bias", (cout,))]
    return rows


def _decoder(d: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    c, mlp, inner = int(d["hidden_size"]), int(d["mlp_dim"]), int(d["hidden_size"]) // int(d["attention_downsample_rate"])
    rows: list[tuple[str, tuple[int, ...]]] = []
    for layer in range(int(d["num_hidden_layers"])):
        p = f"mask_decoder.transformer.layers.{layer}."
        rows += _attention(p + "self_attn", c, c) + [(p + "norm1.weight", (c,)), (p + "norm1.bias", (c,))]
        rows += _attention(p + "cross_attn_token_to_image", c, inner) + [(p + "norm2.weight", (c,)), (p + "norm2.bias", (c,))]
        rows += [(p + "mlp.lin1.weight", (mlp, c)), (p + "mlp.lin1.bias", (mlp,)),
                 (p + "mlp.lin2.weight", (c, mlp)), (p + "mlp.lin2.bias", (c,))]
        rows += [(p + f"norm{n}.{k}", (c,)) for n in (3, 4) for k in ("weight", "bias")]
        rows += _attention(p + "cross_attn_image_to_token", c, inner)
    tokens = int(d["num_multimask_outputs"]) + 1
    rows += _attention("mask_decoder.transformer.final_attn_token_to_image", c, inner)
    rows += [("mask_decoder.transformer.norm_final_attn.weight", (c,)), ("mask_decoder.transformer.norm_final_attn.bias", (c,)),
             ("mask_decoder.iou_token.weight", (1, c)), ("mask_decoder.mask_tokens.weight", (tokens, c)),
             ("mask_decoder.output_upscaling.0.weight", (c, c // 4, 2, 2)), ("mask_decoder.output_upscaling.0.bias", (c // 4,)),
             ("mask_decoder.output_upscaling.1.weight", (c // 4,)), ("mask_decoder.output_upscaling.1.bias", (c // 4,)),
             ("mask_decoder.output_upscaling.3.weight", (c // 4, c // 8, 2, 2)), ("mask_decoder.output_upscaling.3.bias", (c // 8,))]
    for m in range(tokens):
        rows += _mlp(f"mask_decoder.output_hypernetworks_mlps.{m}", [c, c, c, c // 8])
    depth, hidden = int(d["iou_head_depth"]), int(d["iou_head_hidden_dim"])
    return rows + _mlp("mask_decoder.iou_prediction_head", [c] + [hidden] * (depth - 1) + [tokens])


def official_sam_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor of an official SAM checkpoint with ``config`` (the
    ``transformers.SamConfig`` keyword arguments: ``vision_config``, ``prompt_encoder_config``,
    ``mask_decoder_config``), in the official module order."""
    v = config["vision_config"]
    return dict(_vision(v) + _prompt(config["prompt_encoder_config"], int(v["num_pos_feats"]))
                + _decoder(config["mask_decoder_config"]))
