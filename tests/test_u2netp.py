"""Stage 1 ``u2netp``: the vendored U²-Netp ONNX file run inside the box."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dissam.errors import CheckpointError, DisSamError
from dissam.hub.verify import file_sha256
from dissam.stages.u2netp import U2NETP_SHA256, preprocess, vendored_path

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def stage():
    from dissam.stages import load_stage1

    return load_stage1("u2netp")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_vendored_file_is_the_checked_one_and_has_its_licence():
    path = vendored_path()
    assert file_sha256(path) == U2NETP_SHA256
    notice = (path.parent / "U2NETP-LICENSE.txt").read_text()
    assert "Apache License" in notice and "Version 2.0" in notice
    assert "Qin" in notice and U2NETP_SHA256 in notice


def test_kind_is_registered():
    from dissam.stages import get_spec, stage_names

    assert {"u2netp", "u2netp-grabcut", "u2netp-auto"} <= set(stage_names())
    assert all(get_spec(k).bundled and not get_spec(k).needs_weights for k in ("u2netp", "u2netp-auto"))


def test_preprocess_follows_u2net_normalisation():
    crop = np.full((40, 60, 3), 100, np.uint8)
    crop[0, 0] = (200, 200, 200)  # the maximum: divided by it, not by 255
    x = preprocess(crop)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    # a flat 100 region: 100/200 = 0.5 -> (0.5 - mean) / std per channel
    expected = (0.5 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[0, :, 160, 160], expected, atol=1e-5)


def test_shapes_and_mask_stays_in_the_box(stage):
    from dissam.data.synthetic import generate_sample

    image, _, _ = generate_sample(0, seed=0, size=(200, 260))
    stage.set_image(image)
    boxes = np.array([[30, 40, 150, 170], [100, 10, 250, 120]], dtype=np.float64)
    masks = stage.coarse_masks(boxes)
    assert masks.shape == (2, 200, 260) and masks.dtype == bool
    for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
        outside = m.copy()
        outside[y0:y1 + 1, x0:x1 + 1] = False
        assert not outside.any()  # clipped to the box
    soft = stage.soft_map(boxes[0])
    assert soft.shape == (200, 260) and soft.min() >= 0 and soft.max() <= 1
    # the soft map is pasted into the box grown by the margin (15 %), zero beyond it
    assert soft[:, :11].max() == 0 and soft[:, 170:].max() == 0
    assert stage.coarse_masks(np.zeros((0, 4))).shape == (0, 200, 260)


def test_finds_a_clear_object(stage):
    from dissam.data.synthetic import generate_sample

    # samples 0 and 7 of seed 0 hold a single clear object; measured IoU .985 and .968
    for index in (0, 7):
        image, gt, box = generate_sample(index, seed=0, size=320)
        stage.set_image(image)
        mask = stage.coarse_masks(box[None])[0]
        assert iou(mask, gt > 127) > 0.8  # an empty mask scores 0


def test_errors(stage, tmp_path):
    from dissam.stages import load_stage1
    from dissam.stages.u2netp import U2NetpStage

    with pytest.raises(DisSamError, match="set_image"):
        U2NetpStage().coarse_masks(np.array([[0, 0, 5, 5]]))
    with pytest.raises(CheckpointError, match="not a file"):
        load_stage1("u2netp", tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(CheckpointError, match="cannot load"):
        load_stage1("u2netp", bad)
    with pytest.raises(DisSamError, match="margin"):
        U2NetpStage(margin=-1)


def test_missing_onnxruntime_names_the_package(monkeypatch):
    from dissam.stages import load_stage1

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(DisSamError, match=r"pip install onnxruntime"):
        load_stage1("u2netp")


def test_predict_cli_with_u2netp_stage1(tmp_path, tiny_refiner):
    """``dissam predict --stage1 u2netp`` end to end: no --sam, the bundled file; the saved coarse mask
    is U²-Netp's."""
    from pathlib import Path

    from PIL import Image

    from dissam.checkpoints import save_checkpoint
    from dissam.cli import main
    from dissam.io import read_image
    from dissam.stages.u2netp import U2NetpStage

    image = Path(__file__).resolve().parents[1] / "examples" / "images" / "tree_on_coffee.jpg"
    box = [109, 71, 318, 356]
    ck = save_checkpoint(tmp_path / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    out = tmp_path / "out"
    assert main(["predict", str(image), "--box", ",".join(map(str, box)), "--stage1", "u2netp",
                 "--refiner", str(ck), "--save-coarse", "--device", "cpu", "-o", str(out)]) == 0
    coarse = np.array(Image.open(out / "tree_on_coffee_0_coarse.png")) > 127
    mask = np.array(Image.open(out / "tree_on_coffee_0.png"))
    rgb = read_image(image)
    assert coarse.shape == mask.shape == rgb.shape[:2]
    stage = U2NetpStage()
    stage.set_image(rgb)
    expected = stage.coarse_masks(np.array([box]))[0]
    assert coarse.any() and np.array_equal(coarse, expected)


def test_near_empty_mask_falls_back_to_grabcut():
    """A box where U²-Netp finds (almost) nothing gets GrabCut's mask; the guard can be switched off."""
    from dissam.coarse import grabcut_mask
    from dissam.stages.u2netp import U2NetpStage

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # noise: nothing salient
    image[30:90, 50:110] = (200, 40, 40)  # a red square GrabCut separates from the noise
    box = np.array([[40, 20, 119, 99]], dtype=np.float64)
    strict = U2NetpStage(min_box_share=0.99)  # every mask counts as near-empty
    strict.set_image(image)
    guarded = strict.coarse_masks(box)[0]
    assert strict.last_fallbacks == [True]
    np.testing.assert_array_equal(guarded, grabcut_mask(image, box[0]) > 127)
    raw = U2NetpStage(min_box_share=0.99, fallback=None)
    raw.set_image(image)
    np.testing.assert_array_equal(raw.coarse_masks(box)[0], raw._mask(box[0]))
    assert raw.last_fallbacks == [False]
    with pytest.raises(DisSamError, match="fallback"):
        U2NetpStage(fallback="sam")
    with pytest.raises(DisSamError, match="min_box_share"):
        U2NetpStage(min_box_share=1.0)


def test_guard_keeps_normal_masks(stage):
    from dissam.data.synthetic import generate_sample

    image, _, box = generate_sample(0, seed=0, size=320)
    stage.set_image(image)
    stage.coarse_masks(box[None])
    assert stage.last_fallbacks == [False]


def test_cli_without_sam_uses_u2netp_or_grabcut_without_onnxruntime(monkeypatch, caplog):
    import importlib.util

    from dissam.stages.registry import log_offline_default, resolve_stage

    assert resolve_stage(None) == resolve_stage("auto") == "u2netp-auto"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert resolve_stage(None) == "grabcut"
    with caplog.at_level("WARNING", logger="dissam"):
        log_offline_default("grabcut")
    assert "GrabCut" in caplog.text


def test_u2netp_grabcut_is_grabcut_from_u2netps_mask():
    """Stage 1 ``u2netp-grabcut``: U²-Netp's mask is GrabCut's first guess, then U²-Netp's component
    filter; the near-empty guard still falls back to GrabCut from the box."""
    from dissam.coarse import GRABCUT_MAX_SIDE, grabcut_mask
    from dissam.data.synthetic import generate_sample
    from dissam.stages import load_stage1, stage_names
    from dissam.stages.u2netp import U2NetpStage

    assert "u2netp-grabcut" in stage_names()
    hybrid, plain = load_stage1("u2netp-grabcut"), load_stage1("u2netp")
    assert hybrid.name == "u2netp-grabcut" and plain.name == "u2netp"
    image, gt, box = generate_sample(3, seed=0, size=256)
    hybrid.set_image(image)
    plain.set_image(image)
    guess = plain.coarse_masks(box[None])[0]
    mask = hybrid.coarse_masks(box[None])[0]
    assert hybrid.last_fallbacks == [False] and mask.dtype == bool and mask.shape == gt.shape
    expected = hybrid._largest_components(grabcut_mask(image, box, max_side=GRABCUT_MAX_SIDE, init=guess) > 127)
    np.testing.assert_array_equal(mask, expected)
    assert not np.array_equal(mask, guess)  # GrabCut moved the network's edges
    strict = U2NetpStage(min_box_share=0.99, grabcut=True)
    strict.set_image(image)
    np.testing.assert_array_equal(strict.coarse_masks(box[None])[0], grabcut_mask(image, box) > 127)


def test_u2netp_auto_keeps_grabcuts_mask_only_where_it_separates_colours():
    """Stage 1 ``u2netp-auto`` (step 7): GrabCut's mask from U²-Netp's replaces it where the colour
    overlap of object and rest of the box falls by at least ``GRABCUT_MIN_GAIN``; elsewhere the
    network's mask stays. Generated samples 1 and 3 (seed 0, 256 px) are of the first kind, 0 and 2
    of the second; sample 6 falls back to GrabCut from the box (near-empty), as ``u2netp`` does."""
    from dissam.coarse import colour_overlap
    from dissam.data.synthetic import generate_sample
    from dissam.stages import load_stage1, stage_names
    from dissam.stages.u2netp import GRABCUT_MIN_GAIN

    assert "u2netp-auto" in stage_names()
    auto, hybrid, plain = load_stage1("u2netp-auto"), load_stage1("u2netp-grabcut"), load_stage1("u2netp")
    assert auto.name == "u2netp-auto" and auto.grabcut_min_gain == GRABCUT_MIN_GAIN == 0.1
    for i, kept in ((0, False), (1, True), (2, False), (3, True), (6, False)):
        image, _, box = generate_sample(i, seed=0, size=256)
        for stage in (auto, hybrid, plain):
            stage.set_image(image)
        mask = auto.coarse_masks(box[None])[0]
        net, moved = plain.coarse_masks(box[None])[0], hybrid.coarse_masks(box[None])[0]
        assert auto.last_grabcut_kept == [kept] and auto.last_fallbacks == [i == 6]
        np.testing.assert_array_equal(mask, moved if kept else net)
        if i != 6:
            assert not np.array_equal(net, moved)  # GrabCut did move the mask: the test decided
            gain = colour_overlap(image, net, box) - colour_overlap(image, moved, box)
            assert (gain >= GRABCUT_MIN_GAIN) == kept
    assert auto.coarse_masks(np.zeros((0, 4))).shape == (0, 256, 256) and auto.last_grabcut_kept == []


def test_grabcut_min_gain_needs_grabcut_and_a_share():
    from dissam.stages.u2netp import U2NetpStage

    with pytest.raises(DisSamError, match="grabcut_min_gain"):
        U2NetpStage(grabcut_min_gain=0.1)
    with pytest.raises(DisSamError, match="grabcut_min_gain"):
        U2NetpStage(grabcut=True, grabcut_min_gain=1.5)
    assert U2NetpStage(grabcut=True).name == "u2netp-grabcut"
