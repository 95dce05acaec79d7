"""Point prompts through dissam's SAM stage: parity with the official SamPredictor (box + points,
points alone, mask_input iteration; tests/fixtures/sam/points.json and expected_points.npz), batching,
prompt_masks, HQ-SAM against transformers' own model, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dissam.errors import DisSamError, PointError
from dissam.points import make_prompt
from dissam.stages.base import PointStage
from dissam.stages.sam import SamStage, load_sam
from dissam.testing import sam_fixture_state_dict

SAM_DIR = Path(__file__).parent / "fixtures" / "sam"
CASES = json.loads((SAM_DIR / "points.json").read_text())
H, W = json.loads((SAM_DIR / "meta.json").read_text())["image_hw"]

# tolerances of tests/fixtures/README.md (binding)
TOL_LOW, TOL_IOU, MAX_BAD_FRACTION = 1e-3, 2e-4, 1e-4


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(SAM_DIR / "expected_points.npz"))


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> SamStage:
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(sam_fixture_state_dict(json.loads((SAM_DIR / "manifest.json").read_text())), path)
    st = load_sam(path, device="cpu")
    st.set_image(SAM_DIR / "image.png")
    return st


def _assert_parity(expected, tag, masks, iou, low):
    np.testing.assert_allclose(low, expected[f"{tag}_low_res_logits"], atol=TOL_LOW, rtol=0)
    np.testing.assert_allclose(iou, expected[f"{tag}_iou_predictions"], atol=TOL_IOU, rtol=0)
    ref = np.unpackbits(expected[f"{tag}_masks_packed"], axis=-1)[..., :W].astype(bool)
    assert masks.shape == ref.shape and masks.dtype == bool
    assert (masks != ref).sum() <= MAX_BAD_FRACTION * ref.size


@pytest.mark.parametrize("multi", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_points_parity_with_the_official_predictor(stage, expected, case, multi):
    calls = stage.encoder_calls
    masks, iou, low = stage.predict(box=case["box"], point_coords=case["points"], point_labels=case["labels"],
                                    multimask_output=multi)
    c = 3 if multi else 1
    assert masks.shape == (c, H, W) and iou.shape == (c,) and low.shape == (c, 256, 256)
    _assert_parity(expected, f"{case['name']}_{'multi' if multi else 'single'}", masks, iou, low)
    assert stage.encoder_calls == calls  # points reuse the kept embedding


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_mask_input_iteration_parity(stage, expected, case):
    name = case["name"]
    previous = expected[f"{name}_single_low_res_logits"]  # (1, 256, 256), as the official predictor returns it
    masks, iou, low = stage.predict(box=case["box"], point_coords=case["points"], point_labels=case["labels"],
                                    multimask_output=False, mask_input=previous)
    _assert_parity(expected, f"{name}_iter", masks, iou, low)


def test_batched_points_equal_single_calls(stage):
    boxes = np.array([[100, 80, 400, 360], [300, 200, 620, 470]], float)
    coords = np.array([[[250, 220], [120, 100]], [[600, 450], [400, 300]]], float)
    labels = np.array([[1, 0], [0, 1]])
    masks, iou, low = stage.predict_batch(boxes, True, point_coords=coords, point_labels=labels)
    assert masks.shape == (2, 3, H, W)
    _, s, lo = stage.predict(box=boxes[1], point_coords=coords[1], point_labels=labels[1])
    np.testing.assert_allclose(lo, low[1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(s, iou[1], atol=1e-5, rtol=0)
    # a mask_input per prompt (decoded one by one): the same as a single call
    prev = low[:, :1]
    _, _, low2 = stage.predict_batch(boxes, False, point_coords=coords, point_labels=labels, mask_input=prev)
    single = stage.predict(box=boxes[1], point_coords=coords[1], point_labels=labels[1], multimask_output=False,
                           mask_input=prev[1])[2]
    np.testing.assert_allclose(single, low2[1], atol=1e-4, rtol=0)


def test_prompt_masks_mixes_kinds_of_prompts(stage):
    assert isinstance(stage, PointStage)
    box = [100, 80, 400, 360]
    prompts = [make_prompt(box), make_prompt(box, [[250, 220], [120, 100]], [1, 0]),
               make_prompt(None, [[500, 300]], [1]), make_prompt(box, [[250, 220]], [1])]
    out = stage.prompt_masks(prompts, ["first", "single", "best", "single"])
    assert out.masks.shape == (4, H, W) and len(out.low_res_logits) == 4
    np.testing.assert_array_equal(out.masks[0], stage.coarse_masks(np.array([box]))[0])  # box alone: unchanged
    m, _, lo = stage.predict(box=box, point_coords=[[250, 220], [120, 100]], point_labels=[1, 0], multimask_output=False)
    np.testing.assert_array_equal(out.masks[1], m[0])
    np.testing.assert_allclose(out.low_res_logits[1], lo[:1], atol=1e-4, rtol=0)
    m, iou, lo = stage.predict(point_coords=[[500, 300]], point_labels=[1])
    k = int(iou.argmax())
    np.testing.assert_array_equal(out.masks[2], m[k])
    assert out.low_res_logits[2].shape == (1, 256, 256)


def test_point_errors(stage):
    with pytest.raises(DisSamError, match="a box .* points .* or both"):
        stage.predict()
    with pytest.raises(PointError, match="outside the 640x480 image"):
        stage.predict(point_coords=[[700, 10]], point_labels=[1])
    with pytest.raises(PointError, match="1 \\(object\\) or 0"):
        stage.predict(point_coords=[[70, 10]], point_labels=[3])
    with pytest.raises(PointError, match="N x 1 x 256 x 256"):
        stage.predict(box=[0, 0, 50, 50], mask_input=np.zeros((1, 64, 64)))
    with pytest.raises(PointError, match="one entry per prompt"):
        stage.predict_batch(np.array([[0, 0, 50, 50]]), point_coords=np.zeros((2, 1, 2)), point_labels=np.ones((2, 1)))


def test_hq_sam_points_equal_the_model_called_directly():
    from transformers import SamHQConfig, SamHQModel

    torch.manual_seed(0)
    cfg = SamHQConfig(vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         global_attn_indexes=[1]), mask_decoder_config=dict(vit_dim=32))
    st = SamStage(SamHQModel(cfg).eval())
    st.set_image(np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8))
    box, pts, labels = np.array([4.0, 4, 40, 60]), np.array([[20.0, 30], [8, 50]]), np.array([1, 0])
    _, iou, low = st.predict(box=box, point_coords=pts, point_labels=labels)
    s = 1024 / 64  # longest side 64 -> 1024; 48 -> 768
    with torch.inference_mode():
        out = st.model(image_embeddings=st.image_embedding, intermediate_embeddings=st._intermediate,
                       hq_token_only=False, multimask_output=True,
                       input_points=torch.tensor(pts * s, dtype=torch.float32)[None, None],
                       input_labels=torch.tensor(labels)[None, None],
                       input_boxes=torch.tensor(box * s, dtype=torch.float32)[None, None])
    np.testing.assert_allclose(low, out.pred_masks[0, 0].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(iou, out.iou_scores[0, 0].numpy(), atol=1e-6, rtol=0)
