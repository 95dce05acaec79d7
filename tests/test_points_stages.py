"""Point prompts through SAM 2.1 / SAM 3 (equal to transformers' own models called directly), the
weight-free stages (clicks as hard seeds, on generated images with known answers), the predictor
(point prompts end to end, the refiner's box, stages that take boxes only) and ``dissam predict
--point``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from stage1_helpers import tiny_sam2, tiny_sam3_tracker

from dissam.cli import main
from dissam.errors import PointError
from dissam.points import make_prompt
from dissam.predictor import DisSamPredictor
from dissam.stages.base import PointStage, require_point_stage
from dissam.stages.grabcut import GrabCutStage
from dissam.stages.sam2 import PromptableStage

H, W = 90, 120
BOX = np.array([10.0, 20, 100, 80])
POINTS = np.array([[50.0, 50], [20, 70]])
LABELS = np.array([1, 0])


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)


def _direct(stage, **prompt):
    """transformers' model called directly: prompts scaled to the S x S input, batch 1, one object."""
    s = np.array([stage.image_size / W, stage.image_size / H])
    kwargs = {}
    if "points" in prompt:
        kwargs["input_points"] = torch.tensor(prompt["points"] * s, dtype=torch.float32)[None, None]
        kwargs["input_labels"] = torch.tensor(prompt["labels"])[None, None]
    if "box" in prompt:
        kwargs["input_boxes"] = torch.tensor(prompt["box"] * np.tile(s, 2), dtype=torch.float32)[None, None]
    if "mask" in prompt:
        kwargs["input_masks"] = torch.tensor(prompt["mask"], dtype=torch.float32)[None]
    with torch.inference_mode():
        out = stage.model(image_embeddings=stage._embeddings, multimask_output=prompt.get("multi", True), **kwargs)
    return out.pred_masks[0, 0].numpy(), out.iou_scores[0, 0].numpy()


@pytest.mark.parametrize("family", ["sam2", "sam3"])
def test_sam2_and_sam3_points_equal_the_model_called_directly(family, rgb):
    stage = PromptableStage(tiny_sam2() if family == "sam2" else tiny_sam3_tracker())
    stage.set_image(rgb)
    assert isinstance(stage, PointStage)
    masks, iou, low = stage.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, return_logits=True)
    ref_low, ref_iou = _direct(stage, box=BOX, points=POINTS, labels=LABELS)
    np.testing.assert_array_equal(low, np.clip(ref_low, -32, 32))  # returned clamped, as the official predictor
    np.testing.assert_array_equal(iou, ref_iou)
    up = torch.nn.functional.interpolate(torch.from_numpy(ref_low)[None], (H, W), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(masks, up.numpy(), atol=1e-6, rtol=0)
    # points alone, single output
    _, iou1, low1 = stage.predict(point_coords=POINTS[:1], point_labels=[1], multimask_output=False)
    ref1, ref_iou1 = _direct(stage, points=POINTS[:1], labels=np.array([1]), multi=False)
    np.testing.assert_array_equal(low1, np.clip(ref1, -32, 32))
    np.testing.assert_array_equal(iou1, ref_iou1)
    # the previous low-resolution logits as mask_input
    assert low1.shape[1:] == stage.mask_input_size
    _, _, low2 = stage.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, multimask_output=False, mask_input=low1)
    ref2, _ = _direct(stage, box=BOX, points=POINTS, labels=LABELS, mask=low1, multi=False)
    np.testing.assert_array_equal(low2, np.clip(ref2, -32, 32))
    # the official predictor's token layout (box corners as points labelled 2 and 3 ahead of the clicks)
    corners = np.concatenate([BOX.reshape(2, 2), POINTS])
    official, _ = _direct(stage, points=corners, labels=np.array([2, 3, 1, 0]))
    np.testing.assert_allclose(low, np.clip(official, -32, 32), atol=1e-5, rtol=0)
    # a box alone through prompt_masks is coarse_masks' mask
    out = stage.prompt_masks([make_prompt(BOX), make_prompt(BOX, POINTS, LABELS)], ["first", "single"])
    np.testing.assert_array_equal(out.masks[0], stage.coarse_masks(BOX[None])[0])
    assert out.low_res_logits[1].shape == (1, *stage.mask_input_size)


# ------------------------------------------------------------------ weight-free stages: hard seeds
def _noise(rng, h=200, w=260):
    return np.clip(np.full((h, w, 3), 128, np.int16) + rng.integers(-12, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def two_objects():
    """A red square (the object) and a blue disc (a neighbour) under one box, on grey noise."""
    img = _noise(np.random.default_rng(0))
    img[60:140, 40:120] = (200, 40, 40)
    cv2.circle(img, (180, 100), 30, (40, 40, 200), -1)
    return img, np.array([30.0, 50, 220, 150])


@pytest.fixture(scope="module")
def missed_arm():
    """A red body with a blue arm, whose blue the background outside the box shares: the box alone
    misses the arm."""
    img = _noise(np.random.default_rng(1))
    img[:, :25] = img[:, 235:] = img[:40] = (40, 40, 200)
    img[60:140, 60:140] = (200, 40, 40)
    img[80:120, 140:190] = (40, 40, 200)
    return img, np.array([55.0, 55, 195, 145])


@pytest.fixture(scope="module", params=["grabcut", "u2netp-auto"])
def offline_stage(request):
    """GrabCut and the offline default (U²-Netp, GrabCut's edit where it separates colours better)."""
    from dissam.stages.registry import load_stage1

    return load_stage1(request.param)


def test_negative_click_on_a_second_object_removes_it(offline_stage, two_objects):
    stage = offline_stage
    img, box = two_objects
    stage.set_image(img)
    before = stage.coarse_masks(box[None])[0]
    assert before[60:140, 40:120].mean() > 0.95 and before[85:115, 165:195].mean() > 0.95  # both taken
    out = stage.prompt_masks([make_prompt(box, [[180, 100]], [0])])
    after = out.masks[0]
    assert out.low_res_logits == [None]
    assert after[60:140, 40:120].mean() > 0.95 and after[70:131, 150:211].sum() == 0  # the disc is gone
    # also when the neighbour touches the object, with a positive click on the object
    joined = img.copy()
    cv2.circle(joined, (140, 100), 30, (40, 40, 200), -1)
    stage.set_image(joined)
    after = stage.prompt_masks([make_prompt(box, [[150, 100], [70, 100]], [0, 1])]).masks[0]
    assert after[60:140, 40:105].mean() > 0.95 and after[85:115, 125:165].sum() == 0


def test_positive_click_on_a_missed_part_adds_it(offline_stage, missed_arm):
    stage = offline_stage
    img, box = missed_arm
    stage.set_image(img)
    gt = np.zeros(img.shape[:2], bool)
    gt[60:140, 60:140] = gt[80:120, 140:190] = True
    before = stage.coarse_masks(box[None])[0]
    assert before[80:120, 140:190].mean() < 0.05 and before[60:140, 60:140].mean() > 0.95
    after = stage.prompt_masks([make_prompt(box, [[165, 100]], [1])]).masks[0]
    assert after[80:120, 140:190].mean() > 0.95 and after[60:140, 60:140].mean() > 0.95
    assert (after & ~gt).sum() < 0.01 * gt.sum()


def test_offline_stage_without_a_box_uses_the_points_box(two_objects):
    img, _ = two_objects
    stage = GrabCutStage()
    stage.set_image(img)
    only = stage.prompt_masks([make_prompt(None, [[80, 100]], [1])]).masks[0]
    assert only[60:140, 40:120].mean() > 0.95 and only[70:131, 150:211].sum() == 0
    with pytest.raises(PointError, match="at least one positive point"):
        stage.prompt_masks([make_prompt(None, [[80, 100]], [0])])
    with pytest.raises(PointError, match="takes no mask_input"):
        stage.prompt_masks([make_prompt([0, 0, 50, 50], [[5, 5]], [1], mask_input=np.zeros((1, 8, 8)))])


# ------------------------------------------------------------------ the predictor
class BoxesOnly:
    """A third-party stage 1 that takes boxes only (no prompt_masks)."""

    name = "boxes-only"

    def set_image(self, image):
        self.hw = np.asarray(image).shape[:2]

    def coarse_masks(self, boxes, selection="first"):
        out = np.zeros((len(boxes), *self.hw), bool)
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, int)):
            out[i, y0:y1 + 1, x0:x1 + 1] = True
        return out

    def get_image_state(self):
        return self.hw

    def set_image_state(self, state):
        self.hw = state


def test_stage_without_points_keeps_boxes_and_says_no_to_clicks(tiny_refiner, rgb):
    p = DisSamPredictor(BoxesOnly(), tiny_refiner, size=64)
    p.set_image(rgb)
    assert not p.accepts_points
    [r] = p.predict(prompts=[{"box": BOX}])
    np.testing.assert_array_equal(r.coarse, p.predict(box=BOX).coarse)
    assert r.low_res_logits is None
    with pytest.raises(PointError, match="'boxes-only' takes boxes only"):
        p.predict(box=BOX, point_coords=POINTS, point_labels=LABELS)
    with pytest.raises(PointError, match="takes boxes only"):
        require_point_stage(BoxesOnly())
    with pytest.raises(PointError, match="no stage 1 to correct"):
        p.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, coarse_mask=np.zeros((H, W), bool))


def test_predictor_points_end_to_end(tiny_refiner, rgb):
    stage = PromptableStage(tiny_sam2())
    p = DisSamPredictor(stage, tiny_refiner, size=64)
    p.set_image(rgb)
    assert p.accepts_points
    r = p.predict(box=BOX, point_coords=POINTS, point_labels=LABELS)
    direct = stage.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, multimask_output=False)  # auto: single
    np.testing.assert_array_equal(r.coarse, direct[0][0])
    np.testing.assert_array_equal(r.box, BOX)
    assert r.low_res_logits.shape == (1, *stage.mask_input_size)
    # the next click reuses the embedding and iterates on the previous logits
    r2 = p.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, mask_input=r.low_res_logits)
    ref2 = stage.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, multimask_output=False,
                         mask_input=r.low_res_logits)
    np.testing.assert_array_equal(r2.coarse, ref2[0][0])
    assert stage.encoder_calls == 1  # one image encoding for every click
    # steps, as the app times them: stage 1, the refiner's boxes, the refiner
    pm = p.prompt_masks([{"point_coords": POINTS[:1], "point_labels": [1]}])
    boxes = p.refiner_boxes([{"point_coords": POINTS[:1], "point_labels": [1]}], pm.masks)
    tight = np.argwhere(pm.masks[0])
    if len(tight):
        np.testing.assert_array_equal(boxes[0][:2], tight.min(axis=0)[::-1])  # no box: the mask's tight box
    soft = p.refine(pm.masks, boxes)
    [whole] = p.predict(prompts=[{"point_coords": POINTS[:1], "point_labels": [1]}])
    np.testing.assert_array_equal(whole.soft, soft[0])
    # several objects, each with its own clicks; a box-only prompt is the box path's result
    many = p.predict(prompts=[make_prompt(BOX), make_prompt(BOX, POINTS, LABELS), make_prompt(None, POINTS[:1], [1])])
    assert len(many) == 3
    np.testing.assert_array_equal(many[0].coarse, p.predict(box=BOX).coarse)
    np.testing.assert_array_equal(many[1].coarse, r.coarse)
    with pytest.raises(PointError, match="unknown key"):
        p.predict(prompts=[{"boxes": BOX}])
    with pytest.raises(PointError, match="one prompt per object"):
        p.predict(prompts={"box": BOX})


def test_predict_cli_with_points_and_a_prompts_file(tmp_path, tiny_refiner, two_objects):
    from dissam.checkpoints import save_checkpoint

    img, box = two_objects
    Image.fromarray(img).save(tmp_path / "two.png")
    ck = save_checkpoint(tmp_path / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    common = ["--stage1", "grabcut", "--refiner", str(ck), "--save-coarse"]
    box_arg = ",".join(str(int(v)) for v in box)
    assert main(["predict", str(tmp_path / "two.png"), "--box", box_arg, "--point", "180,100,0", "-o",
                 str(tmp_path / "cli"), *common]) == 0
    coarse = np.array(Image.open(tmp_path / "cli" / "two_0_coarse.png")) > 127
    assert coarse[60:140, 40:120].mean() > 0.95 and coarse[70:131, 150:211].sum() == 0
    (tmp_path / "p.json").write_text(json.dumps({"two": [{"box": box.tolist()}, {"box": box.tolist(),
                                                                                  "points": [[180, 100, 0]]}]}))
    assert main(["predict", str(tmp_path / "two.png"), "--prompts", str(tmp_path / "p.json"), "-o",
                 str(tmp_path / "file"), *common]) == 0
    first = np.array(Image.open(tmp_path / "file" / "two_0_coarse.png")) > 127
    second = np.array(Image.open(tmp_path / "file" / "two_1_coarse.png")) > 127
    assert first[85:115, 165:195].all()  # the box alone keeps the neighbour
    np.testing.assert_array_equal(second, coarse)
    assert main(["predict", str(tmp_path / "two.png"), "--box", box_arg, "--box", "0,0,9,9", "--point", "5,5",
                 "-o", str(tmp_path / "bad"), *common]) == 1


def test_clicks_on_a_kept_image_state_need_no_new_encoding(tiny_refiner, rgb):
    """What the app does per click: switch back to an image's kept state, then decode its clicks with
    the previous low-resolution logits; the image encoder does not run again."""
    stage = PromptableStage(tiny_sam2())
    p = DisSamPredictor(stage, tiny_refiner, size=64)
    p.set_image(rgb)
    first = p.predict(box=BOX, point_coords=POINTS[:1], point_labels=[1])
    kept = p.get_image_state()
    p.set_image(rgb[::-1].copy())
    p.predict(box=BOX)
    assert stage.encoder_calls == 2
    p.set_image_state(kept)
    again = p.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, mask_input=first.low_res_logits)
    assert stage.encoder_calls == 2
    p.set_image(rgb)  # the same clicks from scratch: the same result
    fresh = p.predict(box=BOX, point_coords=POINTS, point_labels=LABELS, mask_input=first.low_res_logits)
    np.testing.assert_array_equal(again.coarse, fresh.coarse)
    np.testing.assert_allclose(again.soft, fresh.soft, atol=1e-6, rtol=0)
