"""Text prompts (SAM 3): one refined result per instance, named after the prompt; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from stage1_helpers import tiny_sam3, tiny_tokenizer

from dissam.errors import CheckpointError, DisSamError
from dissam.predictor import DisSamPredictor
from dissam.stages.sam3 import NoMatchError, Sam3TextStage, load_sam3_text
from dissam.text_prompts import TextPrediction, slug

H, W = 72, 96


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam3_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam3")
    tiny_sam3().save_pretrained(str(folder))
    tiny_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def text_stage(tmp_path_factory):
    return Sam3TextStage(tiny_sam3(), tiny_tokenizer(tmp_path_factory.mktemp("tok")))


def test_find_sorts_thresholds_and_caps(text_stage, image):
    text_stage.set_image(image)
    every = text_stage.find("bicycle", score_threshold=0.0, max_instances=None)
    assert len(every) >= 3
    assert np.all(np.diff(every.scores) <= 0)  # best first
    assert every.masks.shape == (len(every), H, W) and every.masks.dtype == bool
    b = every.boxes
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    assert b[:, [0, 2]].min() >= 0 and b[:, [0, 2]].max() <= W - 1 and b[:, [1, 3]].max() <= H - 1
    top3 = text_stage.find("bicycle", score_threshold=0.0, max_instances=3)
    assert len(top3) == 3
    np.testing.assert_array_equal(top3.scores, every.scores[:3])
    cut = float(every.scores[1])
    assert len(text_stage.find("bicycle", score_threshold=cut)) == int((every.scores >= cut).sum())
    assert text_stage.encoder_calls == 1  # one image encoding for several prompts


def test_predict_text_one_result_per_instance(text_stage, tiny_refiner, image):
    pred = DisSamPredictor(None, tiny_refiner, size=64)
    pred.set_text_stage(text_stage)
    pred.set_image(image)
    seen = []
    handle = pred.refiner.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        results = pred.predict_text("bicycle", score_threshold=0.0, max_instances=3)
    finally:
        handle.remove()
    found = text_stage.find("bicycle", score_threshold=0.0, max_instances=3)
    assert len(results) == 3 and all(isinstance(r, TextPrediction) for r in results)
    assert [r.label for r in results] == ["bicycle_0", "bicycle_1", "bicycle_2"]
    from dissam.transforms import clean_inputs

    ref = clean_inputs(image, found.masks, found.boxes, 64)
    x = torch.cat(seen)
    torch.testing.assert_close(x[:, 3:], ref[:, 3:], atol=0, rtol=0)  # SAM 3 mask + detected box map
    for r, m, b, s in zip(results, found.masks, found.boxes, found.scores):
        np.testing.assert_array_equal(r.coarse, m)
        np.testing.assert_array_equal(r.box, b)
        assert r.score == pytest.approx(float(s)) and r.soft.shape == (H, W)


def test_no_match_and_missing_text_stage(text_stage, tiny_refiner, image):
    pred = DisSamPredictor(None, tiny_refiner, size=64)
    pred.set_image(image)
    with pytest.raises(DisSamError, match="text prompts need SAM 3"):
        pred.predict_text("bicycle")
    pred.set_text_stage(text_stage)
    with pytest.raises(NoMatchError, match="matched nothing"):
        pred.predict_text("bicycle", score_threshold=1.01)
    assert pred.predict_text("bicycle", score_threshold=1.01, allow_empty=True) == []
    with pytest.raises(DisSamError, match="empty"):
        pred.predict_text("  ")


def test_slug():
    assert slug("Red car!") == "red-car" and slug("***") == "prompt"


def test_load_from_folder_and_missing_tokenizer(sam3_folder, tmp_path, image):
    stage = load_sam3_text(sam3_folder)
    stage.set_image(image)
    assert len(stage.find("bicycle", 0.0, 2)) == 2
    bare = tmp_path / "bare"
    tiny_sam3().save_pretrained(str(bare))
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_sam3_text(bare)


def test_cli_text_names_prompt_and_instance(sam3_folder, tmp_path, image, capsys):
    from dissam.cli import main

    img = tmp_path / "photo.png"
    Image.fromarray(image).save(img)
    out = tmp_path / "out"
    rc = main(["predict", str(img), "--text", "bicycle", "--sam", str(sam3_folder), "--score-threshold", "0",
               "--max-instances", "2", "--save-coarse", "-o", str(out), "--size", "64", "--device", "cpu"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["photo_bicycle_0.png", "photo_bicycle_0_coarse.png", "photo_bicycle_1.png",
                     "photo_bicycle_1_coarse.png"]
    rc = main(["predict", str(img), "--text", "bicycle", "--sam", str(sam3_folder), "--score-threshold", "1.5",
               "-o", str(tmp_path / "none"), "--size", "64", "--device", "cpu"])
    assert rc == 1
    assert "matched nothing" in capsys.readouterr().out
    rc = main(["predict", str(img), "--text", "bicycle", "--box", "1,1,20,20", "--sam", str(sam3_folder)])
    assert rc == 1


def test_sam3_box_predictor_loads_its_text_stage_on_first_use(sam3_folder, tiny_refiner, image):
    class Sam3BoxStage:  # stands in for the SAM 3 tracker stage that from_pretrained(stage1="sam3") builds
        name = "sam3"

    pred = DisSamPredictor(Sam3BoxStage(), tiny_refiner, size=64)
    pred.stage1_source = str(sam3_folder)
    pred.set_image(image)
    results = pred.predict_text("bicycle", score_threshold=0.0, max_instances=2)
    assert isinstance(pred.text_stage, Sam3TextStage) and len(results) == 2
    assert pred.get_text_stage() is pred.text_stage  # loaded once
