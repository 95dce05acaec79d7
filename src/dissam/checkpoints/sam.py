"""Official Meta SAM checkpoints (``sam_vit_{b,l,h}_*.pth``) -> Hugging Face ``SamModel`` layout.

Two pure functions on state dicts, and the builder that uses them:

* :func:`infer_sam_config` reads every size from the tensors (never from a file name) and returns the
  keyword arguments of ``transformers.SamConfig``;
* :func:`convert_official_sam` renames the keys (our own map, :data:`KEY_RULES`) and reports every
  official key that no rule consumed;
* :func:`build_sam_from_state_dict` builds the ``SamModel`` and loads the converted weights strictly
  (without a random initialisation first: :func:`dissam.checkpoints.state_dict.build_with_weights`).

The rules are applied in order; the first regular expression that matches a key wins. The
prompt encoder's random Fourier matrix is shared in ``SamModel`` (``shared_image_embedding`` and
``prompt_encoder.shared_embedding`` hold the same tensor), so one official key fills both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from dissam.checkpoints.sam_layout import official_sam_shapes
from dissam.checkpoints.state_dict import build_with_weights
from dissam.errors import CheckpointError

__all__ = ["KEY_RULES", "infer_sam_config", "convert_official_sam", "official_key_to_hf", "check_official_sam",
           "build_sam_from_state_dict"]

# Official SAM keys: image_encoder.*, prompt_encoder.*, mask_decoder.*
_REQUIRED = (
    "image_encoder.patch_embed.proj.weight",
    "image_encoder.pos_embed",
    "image_encoder.neck.0.weight",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.iou_token.weight",
    "mask_decoder.mask_tokens.weight",
)

# (pattern, replacement) pairs; ``{mlp}`` replacements are resolved by _mlp_layer (depth-dependent).
KEY_RULES: list[tuple[str, str]] = [
    # image encoder (ViT)
    (r"^image_encoder\.pos_embed$", "vision_encoder.pos_embed"),
    (r"^image_encoder\.patch_embed\.proj\.(weight|bias)$", r"vision_encoder.patch_embed.projection.\1"),
    (
        r"^image_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)$",
        r"vision_encoder.layers.\1.layer_norm\2.\3",
    ),
    (r"^image_encoder\.blocks\.(\d+)\.attn\.(rel_pos_h|rel_pos_w)$", r"vision_encoder.layers.\1.attn.\2"),
    (
        r"^image_encoder\.blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$",
        r"vision_encoder.layers.\1.attn.\2.\3",
    ),
    (r"^image_encoder\.blocks\.(\d+)\.mlp\.(lin[12])\.(weight|bias)$", r"vision_encoder.layers.\1.mlp.\2.\3"),
    (r"^image_encoder\.neck\.0\.weight$", "vision_encoder.neck.conv1.weight"),
    (r"^image_encoder\.neck\.1\.(weight|bias)$", r"vision_encoder.neck.layer_norm1.\1"),
    (r"^image_encoder\.neck\.2\.weight$", "vision_encoder.neck.conv2.weight"),
    (r"^image_encoder\.neck\.3\.(weight|bias)$", r"vision_encoder.neck.layer_norm2.\1"),
    # prompt encoder
    (
        r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
        "shared_image_embedding.positional_embedding|prompt_encoder.shared_embedding.positional_embedding",
    ),
    (r"^prompt_encoder\.point_embeddings\.(\d+)\.weight$", r"prompt_encoder.point_embed.\1.weight"),
    (r"^prompt_encoder\.not_a_point_embed\.weight$", "prompt_encoder.not_a_point_embed.weight"),
    (r"^prompt_encoder\.no_mask_embed\.weight$", "prompt_encoder.no_mask_embed.weight"),
    (r"^prompt_encoder\.mask_downscaling\.0\.(weight|bias)$", r"prompt_encoder.mask_embed.conv1.\1"),
    (r"^prompt_encoder\.mask_downscaling\.1\.(weight|bias)$", r"prompt_encoder.mask_embed.layer_norm1.\1"),
    (r"^prompt_encoder\.mask_downscaling\.3\.(weight|bias)$", r"prompt_encoder.mask_embed.conv2.\1"),
    (r"^prompt_encoder\.mask_downscaling\.4\.(weight|bias)$", r"prompt_encoder.mask_embed.layer_norm2.\1"),
    (r"^prompt_encoder\.mask_downscaling\.6\.(weight|bias)$", r"prompt_encoder.mask_embed.conv3.\1"),
    # mask decoder: two-way transformer
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.layer_norm\2.\3",
    ),
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\."
        r"(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.\2.\3.\4",
    ),
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.mlp.\2.\3",
    ),
    (
        r"^mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)$",
        r"mask_decoder.transformer.final_attn_token_to_image.\1.\2",
    ),
    (
        r"^mask_decoder\.transformer\.norm_final_attn\.(weight|bias)$",
        r"mask_decoder.transformer.layer_norm_final_attn.\1",
    ),
    # mask decoder: tokens, upscaling, heads
    (r"^mask_decoder\.(iou_token|mask_tokens)\.weight$", r"mask_decoder.\1.weight"),
    (r"^mask_decoder\.output_upscaling\.0\.(weight|bias)$", r"mask_decoder.upscale_conv1.\1"),
    (r"^mask_decoder\.output_upscaling\.1\.(weight|bias)$", r"mask_decoder.upscale_layer_norm.\1"),
    (r"^mask_decoder\.output_upscaling\.3\.(weight|bias)$", r"mask_decoder.upscale_conv2.\1"),
    # official MLP(num_layers=d): layers.0 .. layers.{d-1}; HF SamFeedForward: proj_in, layers.0..{d-3}, proj_out
    (
        r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.(weight|bias)$",
        "{mlp}",
    ),
]
_COMPILED = [(re.compile(p), r) for p, r in KEY_RULES]
_MLP = re.compile(r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.")


def _mlp_depths(keys) -> dict[str, int]:
    depths: dict[str, int] = {}
    for k in keys:
        m = _MLP.match(k)
        if m:
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    return depths


def official_key_to_hf(key: str, mlp_depths: Mapping[str, int] | None = None) -> list[str]:
    """HF ``SamModel`` key(s) for one official key; ``[]`` when no rule applies.

    ``mlp_depths`` maps an MLP name (``iou_prediction_head``, ``output_hypernetworks_mlps.0``) to its
    number of linear layers (default 3, as in every released SAM)."""
    for pattern, repl in _COMPILED:
        m = pattern.match(key)
        if not m:
            continue
        if repl == "{mlp}":
            name, idx, kind = m.group(1), int(m.group(2)), m.group(3)
            depth = (mlp_depths or {}).get(name, 3)
            if idx == 0:
                sub = "proj_in"
            elif idx == depth - 1:
                sub = "proj_out"
            else:
                sub = f"layers.{idx - 1}"
            return [f"mask_decoder.{name}.{sub}.{kind}"]
        return pattern.sub(repl, key).split("|")
    return []


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(s) for s in sd[key].shape)


def infer_sam_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``transformers.SamConfig`` keyword arguments read off an official state dict's tensors.

    Vision encoder: hidden size and patch size from ``patch_embed.proj.weight`` (C, 3, P, P); the
    token grid from ``pos_embed`` (1, G, G, C), so image size = G*P; depth = number of ``blocks.N``;
    head dim from ``rel_pos_h`` (2*S-1, C/heads) so heads = C / head dim; a block is global-attention
    when its ``rel_pos_h`` spans the whole grid (2*G-1 rows), otherwise windowed with window
    (rows+1)/2; MLP width from ``mlp.lin1``; neck width from ``neck.0``. Prompt encoder and mask
    decoder widths, decoder depth, MLP width, attention down-sampling, number of mask tokens and
    IoU-head depth/width come from their tensors too. The decoder's head count (8) is not
    recoverable from tensors: it is the value of every released SAM.

    Raises :class:`CheckpointError` naming the keys when the state dict is not an official SAM one.
    """
    missing = [k for k in _REQUIRED if k not in sd]
    if missing:
        sample = ", ".join(list(sd)[:8])
        hf_like = any(k.startswith("vision_encoder.") for k in sd)
        hint = (
            " It looks like a Hugging Face SamModel state dict: pass the folder that holds it and its "
            "config.json instead."
            if hf_like
            else " Expected an official Meta SAM checkpoint (sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, "
            "sam_vit_h_4b8939.pth) with keys image_encoder.*, prompt_encoder.*, mask_decoder.*."
        )
        raise CheckpointError(
            f"not an official SAM checkpoint: missing {', '.join(missing)}; its first keys are {sample}.{hint}"
        )
    hidden, in_ch, patch, _ = _shape(sd, "image_encoder.patch_embed.proj.weight")
    _, grid_h, grid_w, _ = _shape(sd, "image_encoder.pos_embed")
    if grid_h != grid_w:
        raise CheckpointError(
            f"image_encoder.pos_embed is not square: {_shape(sd, 'image_encoder.pos_embed')}"
        )
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^image_encoder\.blocks\.(\d+)\.", k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"image_encoder.blocks.N are missing or not numbered 0..N-1: found {blocks}")
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    global_idx: list[int] = []
    window = 14
    if use_rel_pos:
        windows = set()
        for b in blocks:
            rows, head_dim = _shape(sd, f"image_encoder.blocks.{b}.attn.rel_pos_h")
            if rows == 2 * grid_h - 1:
                global_idx.append(b)
            else:
                windows.add((rows + 1) // 2)
        if len(windows) > 1:
            raise CheckpointError(f"blocks use several window sizes {sorted(windows)}; SamModel supports one")
        window = windows.pop() if windows else 0
        heads = hidden // head_dim
    else:
        raise CheckpointError(
            "the image encoder has no rel_pos_h/rel_pos_w tensors, so its head count cannot be inferred; "
            "every released SAM uses relative positions"
        )
    mlp_dim = _shape(sd, "image_encoder.blocks.0.mlp.lin1.weight")[0]
    out_ch = _shape(sd, "image_encoder.neck.0.weight")[0]
    pe_feats = _shape(sd, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")[1]
    prompt_hidden = _shape(sd, "prompt_encoder.no_mask_embed.weight")[1]
    n_points = sum(1 for k in sd if re.match(r"^prompt_encoder\.point_embeddings\.\d+\.weight$", k))
    mask_in = _shape(sd, "prompt_encoder.mask_downscaling.3.weight")[0]
    dec_hidden = _shape(sd, "mask_decoder.iou_token.weight")[1]
    dec_layers = len(
        {int(m.group(1)) for k in sd if (m := re.match(r"^mask_decoder\.transformer\.layers\.(\d+)\.", k))}
    )
    dec_mlp = _shape(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0]
    down = (
        dec_hidden
        // _shape(sd, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    )
    n_tokens = _shape(sd, "mask_decoder.mask_tokens.weight")[0]
    depths = _mlp_depths(sd)
    iou_depth = depths.get("iou_prediction_head", 3)
    iou_hidden = _shape(sd, "mask_decoder.iou_prediction_head.layers.0.weight")[0]
    return {
        "vision_config": {
            "hidden_size": hidden,
            "num_hidden_layers": len(blocks),
            "num_attention_heads": heads,
            "num_channels": in_ch,
            "image_size": grid_h * patch,
            "patch_size": patch,
            "output_channels": out_ch,
            "qkv_bias": "image_encoder.blocks.0.attn.qkv.bias" in sd,
            "use_abs_pos": True,
            "use_rel_pos": use_rel_pos,
            "window_size": window,
            "global_attn_indexes": global_idx,
            "num_pos_feats": pe_feats,
            "mlp_dim": mlp_dim,
        },
        "prompt_encoder_config": {
            "hidden_size": prompt_hidden,
            "image_size": grid_h * patch,
            "patch_size": patch,
            "mask_input_channels": mask_in,
            "num_point_embeddings": n_points,
        },
        "mask_decoder_config": {
            "hidden_size": dec_hidden,
            "mlp_dim": dec_mlp,
            "num_hidden_layers": dec_layers,
            "num_attention_heads": 8,
            "attention_downsample_rate": down,
            "num_multimask_outputs": n_tokens - 1,
            "iou_head_depth": iou_depth,
            "iou_head_hidden_dim": iou_hidden,
        },
    }


def convert_official_sam(sd: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Rename an official SAM state dict to the ``SamModel`` layout.

    Returns ``(converted, unconsumed)``: the converted state dict and the official keys that no rule
    of :data:`KEY_RULES` matched (the caller turns a non-empty list into a CheckpointError). Tensors
    are not copied."""
    depths = _mlp_depths(sd)
    out: dict[str, Any] = {}
    unconsumed: list[str] = []
    for key, value in sd.items():
        targets = official_key_to_hf(key, depths)
        if not targets:
            unconsumed.append(key)
        for t in targets:
            out[t] = value
    return out, unconsumed


def check_official_sam(sd: Mapping[str, Any], source: str = "state dict") -> dict[str, Any]:
    """Check an official SAM state dict completely without building a model, and return its
    ``transformers.SamConfig`` keyword arguments (:func:`infer_sam_config`).

    Raises :class:`CheckpointError` for an HQ-SAM checkpoint, official keys that no rule converts, and
    every missing key, unexpected key and shape mismatch against the tensors such a model has
    (:func:`dissam.checkpoints.sam_layout.official_sam_shapes`; keys named as ``SamModel`` names them,
    like a strict load)."""
    hq_keys = [
        k for k in sd if any(s in k for s in ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder"))
    ]
    if hq_keys:
        raise CheckpointError(
            f"{source} is an official HQ-SAM checkpoint (keys {', '.join(hq_keys[:4])}, ...); dissam converts "
            "only plain SAM .pth files. Load HQ-SAM from its Hugging Face folder or hub id instead."
        )
    config = infer_sam_config(sd)
    converted, unconsumed = convert_official_sam(sd)
    if unconsumed:
        raise CheckpointError(
            f"{source}: {len(unconsumed)} key(s) of the checkpoint match no part of SAM: "
            + ", ".join(unconsumed[:20])
            + (" ..." if len(unconsumed) > 20 else "")
        )
    expected, _ = convert_official_sam(official_sam_shapes(config))
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(converted[k].shape)} vs model {tuple(expected[k])}"
                  for k in expected if k in converted and tuple(converted[k].shape) != tuple(expected[k])]
    if missing or unexpected or mismatched:
        def fmt(title: str, items: list[str]) -> str:
            more = f" ... and {len(items) - 20} more" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}): " + ", ".join(items[:20]) + more if items else ""

        raise CheckpointError(f"{source} does not match SamModel" + fmt("missing keys", missing)
                              + fmt("unexpected keys", unexpected) + fmt("shape mismatches", mismatched))
    return config


def build_sam_from_state_dict(sd: dict[str, torch.Tensor], source: str = "state dict") -> torch.nn.Module:
    """``SamModel`` from an official SAM state dict: sizes inferred, keys converted, strict load.

    Raises :class:`CheckpointError` naming unconverted official keys, missing model keys and shape
    mismatches (:func:`check_official_sam`)."""
    # transformers is imported here, where a model is built: checking a checkpoint needs only its
    # tensors' shapes
    from transformers import SamConfig, SamModel

    config = SamConfig(**check_official_sam(sd, source))
    converted, _ = convert_official_sam(sd)
    # built on the meta device with the checkpoint's (memory-mapped) tensors put in place: no random
    # init of 300 M parameters, no copy
    model = build_with_weights(lambda: SamModel(config), converted, source)
    return model.float().eval()
