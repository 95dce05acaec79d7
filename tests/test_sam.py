"""SAM stage: parity with the official SamPredictor (tests/fixtures/sam), loading, errors.

The tiny SAM of the fixtures (official key names, README weight recipe) is saved as a plain state dict
and loaded with ``load_sam`` like a user's ``sam_vit_l_0b3195.pth``. The image encoder at 1024x1024 is
the slow part, so one module-scope stage holds the fixture image and few other tests run it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dissam.checkpoints.sam import convert_official_sam, infer_sam_config, official_key_to_hf
from dissam.errors import BoxError, CheckpointError, DisSamError
from dissam.stages.sam import SamStage, load_sam, preprocess_image, preprocess_shape
from dissam.testing import isnet_fixture_state_dict, sam_fixture_state_dict

SAM_DIR = Path(__file__).parent / "fixtures" / "sam"
META = json.loads((SAM_DIR / "meta.json").read_text())
BOXES = np.asarray(META["boxes_xyxy"], dtype=np.float64)
H, W = META["image_hw"]

# tolerances of tests/fixtures/README.md (binding)
TOL_EMBED, TOL_LOW, TOL_IOU, MAX_BAD_FRACTION = 1e-4, 1e-3, 2e-4, 1e-4


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(SAM_DIR / "expected.npz"))


@pytest.fixture(scope="module")
def sam_rows():
    return json.loads((SAM_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def sam_pth(sam_rows, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(sam_fixture_state_dict(sam_rows), path)
    return path


@pytest.fixture(scope="module")
def stage(sam_pth) -> SamStage:
    st = load_sam(sam_pth, device="cpu")
    st.set_image(SAM_DIR / "image.png")
    return st


def _expected_masks(expected, tag):
    return np.unpackbits(expected[f"{tag}_masks_packed"], axis=-1)[..., :W].astype(bool)


def _assert_parity(expected, tag, masks, iou, low):
    np.testing.assert_allclose(low, expected[f"{tag}_low_res_logits"], atol=TOL_LOW, rtol=0)
    np.testing.assert_allclose(iou, expected[f"{tag}_iou_predictions"], atol=TOL_IOU, rtol=0)
    ref = _expected_masks(expected, tag)
    assert masks.shape == ref.shape and masks.dtype == bool
    assert (masks != ref).sum() <= MAX_BAD_FRACTION * ref.size


# ------------------------------------------------------------------ conversion / size inference
def test_sizes_inferred_from_tensors(sam_rows):
    cfg = infer_sam_config(sam_fixture_state_dict(sam_rows))
    v = cfg["vision_config"]
    assert (v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"]) == (64, 2, 2)
    assert v["global_attn_indexes"] == [1] and v["window_size"] == 14
    assert (v["patch_size"], v["image_size"], v["mlp_dim"], v["output_channels"]) == (16, 1024, 256, 256)
    d = cfg["mask_decoder_config"]
    assert (d["hidden_size"], d["num_hidden_layers"], d["mlp_dim"], d["num_multimask_outputs"]) == (
        256,
        2,
        2048,
        3,
    )
    assert d["attention_downsample_rate"] == 2 and d["iou_head_depth"] == 3


@pytest.mark.parametrize(
    "dim, depth, heads, global_idx",
    [(768, 12, 12, [2, 5, 8, 11]), (1024, 24, 16, [5, 11, 17, 23]), (1280, 32, 16, [7, 15, 23, 31])],
    ids=["vit_b", "vit_l", "vit_h"],
)
def test_released_sizes_inferred(sam_rows, dim, depth, heads, global_idx):
    """Official ViT-B/L/H image-encoder shapes (meta tensors: no memory) give the released configs."""
    sd = {k: torch.empty(s, device="meta") for k, s, _ in sam_rows if not k.startswith("image_encoder.")}
    e = "image_encoder."
    sd[e + "pos_embed"] = torch.empty(1, 64, 64, dim, device="meta")
    sd[e + "patch_embed.proj.weight"] = torch.empty(dim, 3, 16, 16, device="meta")
    sd[e + "neck.0.weight"] = torch.empty(256, dim, 1, 1, device="meta")
    for b in range(depth):
        rows = 127 if b in global_idx else 27
        sd[e + f"blocks.{b}.attn.rel_pos_h"] = torch.empty(rows, dim // heads, device="meta")
        sd[e + f"blocks.{b}.attn.qkv.bias"] = torch.empty(3 * dim, device="meta")
        sd[e + f"blocks.{b}.mlp.lin1.weight"] = torch.empty(4 * dim, dim, device="meta")
    v = infer_sam_config(sd)["vision_config"]
    assert (v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"]) == (dim, depth, heads)
    assert v["global_attn_indexes"] == global_idx and v["window_size"] == 14 and v["mlp_dim"] == 4 * dim


def test_key_map_consumes_every_official_key(sam_rows):
    converted, unconsumed = convert_official_sam({k: torch.zeros(1) for k, _, _ in sam_rows})
    assert unconsumed == []
    # the Fourier matrix fills both tied copies; everything else is one-to-one
    assert len(converted) == len(sam_rows) + 1
    assert official_key_to_hf("mask_decoder.iou_prediction_head.layers.1.weight") == [
        "mask_decoder.iou_prediction_head.layers.0.weight"
    ]
    assert official_key_to_hf("mask_decoder.output_hypernetworks_mlps.2.layers.2.bias") == [
        "mask_decoder.output_hypernetworks_mlps.2.proj_out.bias"
    ]
    assert official_key_to_hf("image_encoder.neck.3.weight") == ["vision_encoder.neck.layer_norm2.weight"]


# ------------------------------------------------------------------ preprocessing
def test_preprocess_matches_official_resize_rule():
    assert preprocess_shape(480, 640) == (768, 1024)
    assert preprocess_shape(1000, 3) == (1024, 3)  # int(3 * 1.024 + 0.5)
    assert preprocess_shape(333, 1000) == (341, 1024)  # int(340.992 + 0.5)
    img = np.full((480, 640, 3), 200, np.uint8)
    x, size = preprocess_image(img)
    assert size == (768, 1024) and x.shape == (1, 3, 1024, 1024) and x.dtype == torch.float32
    np.testing.assert_allclose(
        x[0, :, 10, 10].numpy(),
        (200 - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375]),
        rtol=1e-6,
    )
    assert torch.all(x[:, :, 768:] == 0)


def test_gray_and_rgba_inputs_preprocess_like_rgb():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (60, 90), dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((60, 90, 1), 7, np.uint8)], axis=2)
    from dissam.io import read_image

    ref, _ = preprocess_image(rgb)
    assert torch.equal(preprocess_image(read_image(gray))[0], ref)
    assert torch.equal(preprocess_image(read_image(rgba))[0], ref)


# ------------------------------------------------------------------ parity with the official predictor
def test_image_embedding_parity(stage, expected):
    assert stage.is_image_set and stage.original_size == (H, W) and stage.input_size == (768, 1024)
    emb = stage.image_embedding.cpu().numpy()
    assert emb.shape == (1, 256, 64, 64)
    np.testing.assert_allclose(emb[:, ::8], expected["image_embedding"], atol=TOL_EMBED, rtol=0)


@pytest.mark.parametrize("multi", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("i", [0, 1])
def test_predict_parity(stage, expected, i, multi):
    calls = stage.encoder_calls
    masks, iou, low = stage.predict(box=BOXES[i], multimask_output=multi)
    c = 3 if multi else 1
    assert masks.shape == (c, H, W) and iou.shape == (c,) and low.shape == (c, 256, 256)
    _assert_parity(expected, f"box{i}_{'multi' if multi else 'single'}", masks, iou, low)
    logits, _, _ = stage.predict(box=BOXES[i], multimask_output=multi, return_logits=True)
    assert logits.dtype == np.float32 and np.array_equal(logits > 0, masks)
    assert stage.encoder_calls == calls


@pytest.mark.parametrize("multi", [True, False], ids=["multi", "single"])
def test_predict_batch_parity_one_encoder_pass(stage, expected, multi):
    calls = stage.encoder_calls
    masks, iou, low = stage.predict_batch(BOXES, multimask_output=multi)
    c = 3 if multi else 1
    assert masks.shape == (2, c, H, W) and iou.shape == (2, c) and low.shape == (2, c, 256, 256)
    for i in range(2):
        _assert_parity(expected, f"box{i}_{'multi' if multi else 'single'}", masks[i], iou[i], low[i])
    assert stage.encoder_calls == calls  # N boxes: no further encoder run


def test_n_boxes_run_the_encoder_exactly_once(sam_pth):
    st = load_sam(sam_pth)
    assert st.encoder_calls == 0
    img = np.zeros((40, 50, 3), np.uint8)
    img[10:30, 15:40] = 255
    st.set_image(img)
    boxes = np.array([[15, 10, 39, 29], [0, 0, 49, 39], [5, 5, 20, 20], [20, 15, 45, 35]])
    out = st.coarse_masks(boxes)
    st.coarse_masks(boxes, selection="best")
    st.predict_batch(boxes, multimask_output=False)
    assert out.shape == (4, 40, 50) and out.dtype == bool
    assert st.encoder_calls == 1


def test_coarse_mask_selections(stage):
    masks, iou, _ = stage.predict_batch(BOXES, multimask_output=True)
    single, _, _ = stage.predict_batch(BOXES, multimask_output=False)
    first = stage.coarse_masks(BOXES)
    assert first.shape == (2, H, W) and first.dtype == bool
    assert np.array_equal(first, masks[:, 0])  # the authors' choice: multimask, index 0
    best = stage.coarse_masks(BOXES, selection="best")
    assert np.array_equal(best, masks[np.arange(2), iou.argmax(1)])
    assert np.array_equal(stage.coarse_masks(BOXES, selection="single"), single[:, 0])
    assert np.array_equal(stage.coarse_masks(BOXES[0]), first[:1])  # a single (4,) box
    with pytest.raises(DisSamError, match="selection"):
        stage.coarse_masks(BOXES, selection="largest")


# ------------------------------------------------------------------ prompts and errors
def test_box_partly_outside_is_clipped(stage):
    clipped = stage.predict(np.array([-50, -20, 700, 500]))[1]
    ref = stage.predict(np.array([0, 0, W - 1, H - 1]))[1]
    np.testing.assert_array_equal(clipped, ref)


def test_box_errors(stage):
    with pytest.raises(BoxError, match="inverted"):
        stage.predict(box=[400, 80, 100, 360])
    with pytest.raises(BoxError, match="outside"):
        stage.predict(box=[700, 10, 800, 100])
    with pytest.raises(BoxError):
        stage.predict_batch([[1, 2, 3]])
    with pytest.raises(DisSamError, match="box"):
        stage.predict(box=None)
    masks, iou, low = stage.predict_batch(np.zeros((0, 4)))
    assert masks.shape == (0, 3, H, W) and iou.shape == (0, 3) and low.shape == (0, 3, 256, 256)
    assert stage.coarse_masks(np.zeros((0, 4))).shape == (0, H, W)


def test_predict_before_set_image(stage):
    fresh = SamStage(stage.model, "cpu")
    assert not fresh.is_image_set and fresh.original_size is None
    with pytest.raises(DisSamError, match="set_image"):
        fresh.predict(BOXES[0])
    with pytest.raises(DisSamError, match="set_image"):
        fresh.coarse_masks(BOXES)


def test_reset_image(sam_pth):
    st = load_sam(sam_pth)
    st.set_image(np.zeros((20, 30), np.uint8))  # grayscale accepted
    assert st.original_size == (20, 30) and st.input_size == (683, 1024)
    assert st.predict([2, 2, 20, 15])[0].shape == (3, 20, 30)
    st.reset_image()
    assert not st.is_image_set and st.input_size is None
    with pytest.raises(DisSamError, match="set_image"):
        st.predict([2, 2, 20, 15])


def test_rgba_image_gives_the_rgb_embedding(sam_pth, stage):
    from PIL import Image

    rgba = np.asarray(Image.open(SAM_DIR / "image.png").convert("RGBA")).copy()
    rgba[..., 3] = 17
    st = SamStage(stage.model, "cpu")
    st.set_image(rgba)
    assert torch.equal(st.image_embedding, stage.image_embedding)


def test_wrong_checkpoint_names_keys(isnet_manifest, tmp_path):
    rows = isnet_manifest["isnet_dis_in5"]["state_dict"]
    path = tmp_path / "isnet.pth"
    torch.save(isnet_fixture_state_dict(rows), path)
    with pytest.raises(CheckpointError) as err:
        load_sam(path)
    msg = str(err.value)
    assert "image_encoder.patch_embed.proj.weight" in msg and "conv_in.weight" in msg


def test_extra_and_missing_keys_are_named(sam_rows, tmp_path):
    sd = sam_fixture_state_dict(sam_rows)
    sd["image_encoder.blocks.0.attn.extra_scale"] = torch.ones(2)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"image_encoder\.blocks\.0\.attn\.extra_scale"):
        load_sam(tmp_path / "extra.pth")
    sd = sam_fixture_state_dict(sam_rows)
    del sd["mask_decoder.transformer.layers.1.norm4.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"mask_decoder\.transformer\.layers\.1\.layer_norm4\.bias"):
        load_sam(tmp_path / "missing.pth")


def test_missing_sources(tmp_path):
    with pytest.raises(CheckpointError, match="sam_vit_l_0b3195.pth"):
        load_sam(tmp_path / "sam_vit_l_0b3195.pth")
    with pytest.raises(CheckpointError, match="config.json"):
        load_sam(tmp_path)


def test_hq_flag_checked(sam_pth):
    with pytest.raises(CheckpointError, match="hq=True"):
        load_sam(sam_pth, hq=True)


# ------------------------------------------------------------------ save_pretrained round trip
def test_save_pretrained_round_trip(stage, tmp_path):
    folder = stage.save_pretrained(tmp_path / "hf")
    assert (folder / "config.json").is_file()
    again = load_sam(folder, hq=False)
    assert not again.is_hq
    again.set_image(SAM_DIR / "image.png")
    assert torch.allclose(again.image_embedding, stage.image_embedding, atol=1e-6, rtol=0)
    for multi in (True, False):
        a = stage.predict_batch(BOXES, multimask_output=multi, return_logits=True)
        b = again.predict_batch(BOXES, multimask_output=multi, return_logits=True)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)


def test_hq_folder_loads_and_predicts(tmp_path):
    from transformers import SamHQConfig, SamHQModel

    torch.manual_seed(0)
    cfg = SamHQConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1]
        ),
        mask_decoder_config=dict(vit_dim=32),
    )
    SamHQModel(cfg).save_pretrained(tmp_path / "hq")
    with pytest.raises(CheckpointError, match="hq=False"):
        load_sam(tmp_path / "hq", hq=False)
    st = load_sam(tmp_path / "hq")
    assert st.is_hq
    st.set_image(np.zeros((64, 48, 3), np.uint8))
    masks, iou, low = st.predict_batch([[4, 4, 40, 60], [0, 0, 20, 20]])
    assert masks.shape == (2, 3, 64, 48) and iou.shape == (2, 3) and low.shape == (2, 3, 256, 256)
    assert st.coarse_masks([4, 4, 40, 60], selection="single").shape == (1, 64, 48)


# ------------------------------------------------------------------ hub id, offline
def test_hub_id_offline_says_what_to_download(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    env.pop("HF_HUB_CACHE", None)
    env.pop("TRANSFORMERS_CACHE", None)
    code = (
        "from dissam.stages.sam import load_sam\n"
        "from dissam.errors import OfflineError\n"
        "try:\n    load_sam('facebook/sam-vit-large')\n"
        "except OfflineError as e:\n    print('OFFLINE:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    msg = out.stdout
    assert "OFFLINE:" in msg
    assert "download facebook/sam-vit-large --local-dir" in msg
    assert "sam_vit_l_0b3195.pth" in msg and "HF_HUB_OFFLINE=1" in msg
