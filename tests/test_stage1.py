"""Stage 1 as a choice: the interface, SAM 2.1 / SAM 3 tracker stages on tiny random models, the
factory's autodetection and errors, and the coarse mask that reaches the refiner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stage1_helpers import S2, S3, tiny_sam2, tiny_sam3_tracker

from dissam.errors import CheckpointError, DisSamError, OfflineError
from dissam.predictor import DisSamPredictor, GrabCutStage
from dissam.refiner import Refiner
from dissam.stages import Stage1, detect_stage, load_stage1
from dissam.stages.sam2 import PromptableStage

H, W = 90, 120
BOXES = np.array([[10, 12, 80, 70], [40, 5, 115, 88]], dtype=float)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    img[20:60, 30:90] = (250, 40, 40)
    return img


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam2")
    tiny_sam2().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def sam3_tracker_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam3t")
    tiny_sam3_tracker().save_pretrained(str(folder))
    return folder


def test_existing_stages_satisfy_the_interface(tiny_sam_path):
    from dissam.stages.sam import load_sam

    sam = load_sam(tiny_sam_path)
    assert isinstance(sam, Stage1) and sam.name == "sam"
    assert isinstance(GrabCutStage(), Stage1)
    assert isinstance(PromptableStage(tiny_sam2()), Stage1)


@pytest.mark.parametrize("family", ["sam2", "sam3"])
def test_promptable_stage_matches_the_model_and_scales_boxes(family, image):
    model = tiny_sam2() if family == "sam2" else tiny_sam3_tracker()
    s = S2 if family == "sam2" else S3
    stage = PromptableStage(model)
    assert stage.name == family and stage.image_size == s
    seen = []
    handle = model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_boxes"].clone()), with_kwargs=True)
    try:
        stage.set_image(image)
        masks = stage.coarse_masks(BOXES, selection="first")
        best = stage.coarse_masks(BOXES, selection="best")
        single = stage.coarse_masks(BOXES, selection="single")
    finally:
        handle.remove()
    assert stage.encoder_calls == 1
    assert masks.shape == best.shape == single.shape == (2, H, W) and masks.dtype == bool
    # boxes are scaled per axis to the S x S input
    expected = BOXES * np.array([s / W, s / H, s / W, s / H])
    np.testing.assert_allclose(seen[0][0].numpy(), expected, rtol=1e-6)
    # the coarse mask is multimask output 0 upsampled straight to (H, W), thresholded at 0
    mean, std = stage.mean, stage.std
    from dissam.stages.sam2 import square_input

    with torch.inference_mode():
        emb = model.get_image_embeddings(square_input(image, s, mean, std))
        out = model(image_embeddings=emb, input_boxes=torch.tensor(expected, dtype=torch.float32)[None])
        ref = F.interpolate(out.pred_masks[0, :, :1], (H, W), mode="bilinear", align_corners=False)[:, 0] > 0
    np.testing.assert_array_equal(masks, ref.numpy())
    pick = out.iou_scores[0].argmax(1)
    with torch.inference_mode():
        ref_best = F.interpolate(out.pred_masks[0], (H, W), mode="bilinear", align_corners=False) > 0
    np.testing.assert_array_equal(best, ref_best[torch.arange(2), pick].numpy())


def test_stage_errors(image):
    stage = PromptableStage(tiny_sam2())
    with pytest.raises(DisSamError, match="set_image"):
        stage.coarse_masks(BOXES)
    stage.set_image(image)
    with pytest.raises(DisSamError, match="outside"):
        stage.coarse_masks([[500, 500, 600, 600]])
    with pytest.raises(DisSamError, match="selection"):
        stage.coarse_masks(BOXES, selection="worst")


def test_factory_autodetects_folders_and_names(sam2_folder, sam3_tracker_folder, tiny_sam_path):
    assert detect_stage(sam2_folder) == "sam2"
    assert detect_stage(sam3_tracker_folder) == "sam3"
    assert detect_stage(tiny_sam_path) == "sam"
    assert detect_stage(None) == "u2netp-auto"  # the offline default
    assert detect_stage("facebook/sam2.1-hiera-tiny") == "sam2"
    assert detect_stage("facebook/sam3") == "sam3"
    assert detect_stage("facebook/sam-vit-large") == "sam"
    s2 = load_stage1("auto", sam2_folder, "cpu")
    assert isinstance(s2, PromptableStage) and s2.name == "sam2"
    s3 = load_stage1(None, sam3_tracker_folder, "cpu")
    assert s3.name == "sam3" and s3.image_size == S3
    assert load_stage1("sam", tiny_sam_path, "cpu").name == "sam"
    assert load_stage1("grabcut").name == "grabcut"


def test_factory_errors(sam2_folder, tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="sam3"):
        load_stage1("sam3", sam2_folder, "cpu")  # a SAM 2 folder is not SAM 3
    with pytest.raises(CheckpointError, match="not found"):
        load_stage1("sam2", tmp_path / "missing" / "folder", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_stage1("sam2", tmp_path / "empty", "cpu")
    with pytest.raises(DisSamError, match="unknown stage 1"):
        load_stage1("sam5", sam2_folder)
    with pytest.raises(DisSamError, match="needs weights"):
        load_stage1("sam2", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(OfflineError, match="hf download facebook/sam2.1-hiera-tiny"):
        load_stage1("sam2", "facebook/sam2.1-hiera-tiny", "cpu")


def test_predictor_feeds_the_stage1_mask_to_the_refiner(sam2_folder, tiny_refiner, image):
    """The coarse mask the chosen stage 1 makes is channel 3 of the refiner input."""
    from dissam.transforms import clean_inputs

    pred = DisSamPredictor.from_pretrained(sam=str(sam2_folder), stage1="sam2", refiner=None, device="cpu", size=64)
    pred.refiner = Refiner.from_module(tiny_refiner)  # a fixed refiner; the built-in one would do as well
    pred.dropped_channels = ()
    assert pred.sam_stage.name == "sam2"
    seen = []
    handle = pred.refiner.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        pred.set_image(image)
        results = pred.predict(boxes=BOXES)
    finally:
        handle.remove()
    direct = PromptableStage(tiny_sam2())
    direct.model.load_state_dict(pred.sam_stage.model.state_dict())
    direct.set_image(image)
    coarse = direct.coarse_masks(BOXES)
    for r, c in zip(results, coarse):
        np.testing.assert_array_equal(r.coarse, c)
    x = torch.cat(seen)
    ref = clean_inputs(image, coarse, BOXES, 64)
    torch.testing.assert_close(x[:, 3], ref[:, 3], atol=0, rtol=0)
    torch.testing.assert_close(x[:, 4], ref[:, 4], atol=0, rtol=0)


def test_prepare_masks_accepts_a_sam2_folder(sam2_folder, tmp_path):
    """`dissam prepare-masks --sam FOLDER` (and the benchmark's SAM baseline) pick the stage from config.json."""
    from data_helpers import make_split

    from dissam.data.prepare import prepare_masks
    from dissam.io import read_mask

    gt = np.zeros((50, 60), np.uint8)
    gt[5:30, 8:40] = 255
    split = make_split(tmp_path / "S", {"one": gt}, masks=False)
    rep = prepare_masks(split, str(sam2_folder), device="cpu", progress=False)
    assert (rep.images, rep.encoded, len(rep.written)) == (1, 1, 1)
    stage = load_stage1("sam2", sam2_folder, "cpu")
    from dissam.io import read_image

    image = read_image(next((split / "im").iterdir()))
    stage.set_image(image)
    np.testing.assert_array_equal(read_mask(rep.written[0]) > 127, stage.coarse_masks([[8, 5, 39, 29]])[0])
