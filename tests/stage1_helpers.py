"""Tiny random SAM 2 / SAM 3 models (no downloads) for the stage-1, text and video tests.

Sizes are the smallest the transformers implementations accept: SAM 2 at 128² (Hiera with one global
block that is not a stage's first block; the video memory attention hard-codes a 64-channel memory,
so its hidden size is 128), SAM 3 at 112² (patch 14).
"""

from __future__ import annotations

from pathlib import Path

S2 = 128
S3 = 112


def sam2_vision(s: int = S2, fpn: int = 32) -> dict:
    return dict(
        backbone_config=dict(
            model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1, image_size=[s, s],
            blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
            num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 4, 4],
            global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2],
        ),
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        fpn_hidden_size=fpn,
    )


def tiny_sam2():
    import torch
    from transformers import Sam2Config, Sam2Model

    torch.manual_seed(0)
    cfg = Sam2Config(
        vision_config=sam2_vision(),
        prompt_encoder_config=dict(hidden_size=32, image_size=S2, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
    )
    return Sam2Model(cfg).eval()


def tiny_sam2_video():
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    torch.manual_seed(0)
    cfg = Sam2VideoConfig(
        vision_config=sam2_vision(fpn=128),
        prompt_encoder_config=dict(hidden_size=128, image_size=S2, patch_size=16),
        mask_decoder_config=dict(hidden_size=128, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
        image_size=S2, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[S2 // 16, S2 // 16],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, num_maskmem=3,
        max_object_pointers_in_encoder=4,
    )
    return Sam2VideoModel(cfg).eval()


def sam3_vision(s: int = S3) -> dict:
    p = s // 14
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=s, patch_size=14, window_size=4, global_attn_indexes=[1],
               pretrain_image_size=s)
    return dict(backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[p * 4, p * 4], [p * 2, p * 2], [p, p]])


def tiny_sam3(num_queries: int = 10):
    import torch
    from transformers import Sam3Config, Sam3Model

    torch.manual_seed(0)
    cfg = Sam3Config(
        vision_config=sam3_vision(),
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, projection_dim=32, max_position_embeddings=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        geometry_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(hidden_size=32, num_layers=1, num_queries=num_queries, num_attention_heads=2,
                                 intermediate_size=64),
        mask_decoder_config=dict(hidden_size=32, num_upsampling_stages=3, num_attention_heads=2),
    )
    return Sam3Model(cfg).eval()


def tiny_sam3_tracker():
    import torch
    from transformers import Sam3TrackerConfig, Sam3TrackerModel

    torch.manual_seed(0)
    cfg = Sam3TrackerConfig(
        vision_config=sam3_vision(),
        prompt_encoder_config=dict(hidden_size=32, image_size=S3, patch_size=14),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
    )
    return Sam3TrackerModel(cfg).eval()


def tiny_sam3_tracker_video():
    import torch
    from transformers import Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    torch.manual_seed(0)
    vision = sam3_vision()
    vision["fpn_hidden_size"] = 128
    cfg = Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=128, image_size=S3, patch_size=14),
        mask_decoder_config=dict(hidden_size=128, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
        image_size=S3, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[S3 // 14, S3 // 14],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, num_maskmem=3,
        max_object_pointers_in_encoder=4,
    )
    return Sam3TrackerVideoModel(cfg).eval()


def tiny_tokenizer(folder: Path | None = None):
    """A CLIP tokenizer with a 54-entry character vocabulary (ids < 64), saved into ``folder`` if given."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    if folder is not None:
        tok.save_pretrained(str(folder))
    return tok
