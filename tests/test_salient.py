"""Salient-object networks as a box-prompted stage 1 (``dissam.stages.salient``): crop/paste geometry
against hand-computed windows, each network's conventions, ONNX and IS-Net ``.pth`` weights, and the
stage in the commands."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from salient_helpers import IsNetD1, RedChannel, export_onnx
from salient_helpers import tiny_isnet as make_tiny_isnet

from dissam.errors import CheckpointError, DisSamError
from dissam.stages.salient import CropMap, SalientStage, crop_window, postprocess, preprocess
from dissam.stages.salient_models import SALIENT_MODELS, SalientModel

pytest.importorskip("onnxruntime")

PROBE = SalientModel("probe", "probe", "the red channel / 255", None, input_size=16, mean=(0, 0, 0), std=(1, 1, 1))
"""A network that returns its input's red channel: a pure-red crop maps to exactly 1 everywhere."""
ISNET = SALIENT_MODELS["isnet-general-use"]
H, W = 80, 100


@pytest.fixture(scope="module")
def probe_onnx(tmp_path_factory):
    return export_onnx(RedChannel(), PROBE.input_size, tmp_path_factory.mktemp("probe") / "probe.onnx")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_isnet(tmp_path_factory):
    """A random ``ISNetDIS(3)`` at 1/16 width and its state dict saved as the authors' ``.pth``."""
    return make_tiny_isnet(tmp_path_factory.mktemp("tiny_isnet"))


@pytest.fixture(scope="module")
def isnet_onnx(tiny_isnet):
    """The tiny IS-Net's d1 exported to ONNX at IS-Net general-use's 1024² input (as rembg's file)."""
    net, pth = tiny_isnet
    return export_onnx(IsNetD1(net), ISNET.input_size, pth.with_suffix(".onnx"))


def red(h: int = H, w: int = W) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = 255
    return image


def window_map(window, hw=(H, W)) -> np.ndarray:
    x0, y0, x1, y1 = window
    out = np.zeros(hw, np.float32)
    out[y0:y1, x0:x1] = 1
    return out


# (box, margin, window worked out by hand: floor/ceil of the box +- margin * side, clipped, exclusive ends)
WINDOWS = [
    ((10, 20, 29, 39), 0.1, (8, 18, 32, 42)),        # 20 x 20 box, 2 px each side
    ((0, 0, 9, 9), 0.5, (0, 0, 15, 15)),             # top-left corner: the margin is clipped at 0
    ((90, 70, 99, 79), 0.5, (85, 65, 100, 80)),      # bottom-right corner: clipped at W and H
    ((5, 5, 6, 6), 0.15, (4, 4, 8, 8)),              # 2 x 2 px: 0.3 px margin -> one pixel each side
    ((5, 5, 5, 5), 0.15, (4, 4, 7, 7)),              # 1 px (the stage takes it; the predictor refuses it)
    ((40, 30, 59, 49), 0.0, (40, 30, 60, 50)),       # no margin: the box itself
    ((200, 200, 210, 210), 0.15, (99, 79, 100, 80)),  # outside: the nearest border pixel
]


@pytest.mark.parametrize("box, margin, window", WINDOWS)
def test_crop_window_is_the_hand_computed_one(box, margin, window):
    assert crop_window(box, (H, W), margin) == window


@pytest.mark.parametrize("box, margin, window", WINDOWS[:6])
def test_map_is_pasted_into_the_window_and_the_mask_is_the_box(probe_onnx, box, margin, window):
    stage = SalientStage(PROBE, probe_onnx, margin=margin, min_component=0)
    stage.set_image(red())
    np.testing.assert_array_equal(stage.soft_map(np.array(box, float)), window_map(window))
    mask = stage.coarse_masks(np.array([box], float))[0]
    x0, y0, x1, y1 = box
    np.testing.assert_array_equal(mask, window_map((x0, y0, x1 + 1, y1 + 1)) > 0)  # clipped to the box
    assert [cm.window for cm in stage.last_maps] == [window]
    unclipped = SalientStage(PROBE, probe_onnx, margin=margin, min_component=0, clip_to_box=False)
    unclipped.set_image(red())
    np.testing.assert_array_equal(unclipped.coarse_masks(np.array([box], float))[0], window_map(window) > 0)


def test_exif_rotated_images_are_segmented_as_displayed(probe_onnx, tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :30, 0] = 255  # the left half of the stored pixels is red
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: the red half is the top half, 30 rows
    Image.fromarray(stored).save(tmp_path / "rot.png", exif=exif)
    stage = SalientStage(PROBE, probe_onnx, min_component=0)
    stage.set_image(tmp_path / "rot.png")
    assert stage.get_image_state().shape == (60, 40, 3)
    top, bottom = np.array([5, 5, 30, 20], float), np.array([5, 40, 30, 55], float)
    window = crop_window(top, (60, 40), 0.15)
    assert window == (1, 2, 35, 24)
    np.testing.assert_array_equal(stage.soft_map(top), window_map(window, (60, 40)))
    assert stage.soft_map(bottom).max() == 0
    masks = stage.coarse_masks(np.stack([top, bottom]))
    np.testing.assert_array_equal(masks[0], window_map((5, 5, 31, 21), (60, 40)) > 0)
    assert not masks[1].any()


def test_preprocessing_and_output_conventions():
    crop = np.full((8, 8, 3), 100, np.uint8)  # at the input size: no resampling
    crop[0, 0] = 200
    by_max = SalientModel("m", "m", "", None, input_size=8, scaling="max")
    x = preprocess(crop, by_max)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 4, 4], (0.5 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               atol=1e-5)  # 100 / 200, ImageNet statistics
    np.testing.assert_allclose(preprocess(crop, ISNET)[0, :, 512, 512], 100 / 255 - 0.5, atol=1e-6)
    logits = np.log(np.array([[1.0, 3.0], [1.0, 1.0]], np.float32))  # sigmoid: 0.5 and 0.75
    birefnet = SALIENT_MODELS["birefnet-general"]
    np.testing.assert_allclose(postprocess(logits[None, None], birefnet, (2, 2)), [[0.5, 0.75], [0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(postprocess(np.array([[0.2, 0.6], [0.2, 0.4]]), ISNET, (2, 2)),
                               [[0, 1], [0, 0.5]], atol=1e-6)  # min-max
    assert postprocess(np.full((4, 4), 0.3), ISNET, (3, 5)).shape == (3, 5)  # flat: zeros, at the crop's size
    with pytest.raises(ValueError, match="scaling"):
        SalientModel("x", "x", "", None, input_size=8, scaling="127")


def test_each_model_has_one_stage_and_verified_downloadable_weights():
    from dissam.hub.registry import PRESETS, REGISTRY, REMBG_URL
    from dissam.stages import get_spec

    for name, model in SALIENT_MODELS.items():
        entry, spec = REGISTRY[model.weights], get_spec(name)
        assert entry.role == "salient" and entry.url.startswith(REMBG_URL) and entry.url.endswith(".onnx")
        assert entry.size > 100e6 and len(entry.sha256) == 64 and spec.license == entry.license != ""
        assert spec.needs_weights and not spec.bundled and spec.weights_names == (model.weights,)
        assert spec.options == {"model": name} and model.output_index == 0
    assert {"u2net", "isnet-general-use", "birefnet-general", "birefnet-general-lite"} <= set(SALIENT_MODELS)
    rmbg = REGISTRY["bria-rmbg"]
    assert rmbg.noncommercial and "NC" in rmbg.license and "non-commercial" in get_spec("bria-rmbg").label
    assert not any(REGISTRY[p.sam].noncommercial for p in PRESETS.values() if p.sam)
    cpu = PRESETS["cpu"]
    assert (cpu.stage1, cpu.sam, cpu.refiner) == ("isnet-general-use", "isnet-general-use", "dis-sam-compact")
    assert ISNET.torch_arch == "isnet" and ISNET.minmax and SALIENT_MODELS["birefnet-general"].activation == "sigmoid"


def test_isnet_pth_and_onnx_give_the_network_s_own_map(tiny_isnet, tmp_path):
    """The authors' ``.pth`` (through dissam's ``ISNetDIS``) and its ONNX export give the same map, and
    it is the network's d1 on the preprocessed crop, min-max normalised, resized back and pasted (IS-Net
    general-use's conventions at a 64² input, to keep the test fast; the 1024² ones run in the commands)."""
    import cv2

    from dissam.data.synthetic import generate_sample

    net, pth = tiny_isnet
    small = dataclasses.replace(ISNET, input_size=64)
    onnx = export_onnx(IsNetD1(net), 64, tmp_path / "isnet64.onnx")
    image, _, box = generate_sample(1, seed=0, size=(90, 120))
    maps = {}
    for path in (pth, onnx):
        stage = SalientStage(small, path)
        stage.set_image(image)
        maps[Path(path).suffix] = stage.soft_map(box)
    x0, y0, x1, y1 = crop_window(box, image.shape[:2], 0.15)
    with torch.inference_mode():
        d1 = net(torch.from_numpy(preprocess(image[y0:y1, x0:x1], small)))[0][0][0, 0].numpy()
    d1 = (d1 - d1.min()) / (d1.max() - d1.min())
    expected = np.zeros(image.shape[:2], np.float32)
    expected[y0:y1, x0:x1] = cv2.resize(d1, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(maps[".pth"], expected, atol=1e-5)
    np.testing.assert_allclose(maps[".onnx"], maps[".pth"], atol=1e-4)


def test_each_box_keeps_its_map_for_later_prompts(probe_onnx):
    """``last_maps``: one :class:`CropMap` per box of the last call (what a click prompt would seed)."""
    stage = SalientStage(PROBE, probe_onnx, min_component=0, clip_to_box=False)
    stage.set_image(red())
    boxes = np.array([WINDOWS[0][0], WINDOWS[1][0]], float)
    masks = stage.coarse_masks(boxes)
    assert [cm.window for cm in stage.last_maps] == [crop_window(b, (H, W), 0.15) for b in boxes]
    for cm, mask in zip(stage.last_maps, masks):
        assert isinstance(cm, CropMap) and cm.prob.shape == (cm.window[3] - cm.window[1], cm.window[2] - cm.window[0])
        np.testing.assert_array_equal(cm.full((H, W)) >= 0.5, mask)
    assert stage.coarse_masks(np.zeros((0, 4))).shape == (0, H, W) and stage.last_maps == []


def test_component_filter_drops_specks_and_keeps_large_parts(tmp_path):
    """Step 5 on a crop the probe sees at its own size (64², no margin: no resampling at all)."""
    model = SalientModel("probe64", "probe", "", None, input_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    image = np.zeros((64, 64, 3), np.uint8)
    image[5:35, 5:35, 0] = 255    # 900 px
    image[5:25, 40:60, 0] = 255   # 400 px: over 0.1 of the largest, kept
    image[50:53, 50:53, 0] = 255  # 9 px: a speck, dropped
    box = np.array([[0, 0, 63, 63]], float)
    expected = image[..., 0] > 0
    kept = SalientStage(model, export_onnx(RedChannel(), 64, tmp_path / "p64.onnx"), margin=0, min_component=0)
    kept.set_image(image)
    np.testing.assert_array_equal(kept.coarse_masks(box)[0], expected)  # 0: every component
    expected[50:53, 50:53] = False
    filtered = SalientStage(model, tmp_path / "p64.onnx", margin=0)  # the default, 0.1
    filtered.set_image(image)
    np.testing.assert_array_equal(filtered.coarse_masks(box)[0], expected)


def test_clear_errors(tiny_isnet, isnet_onnx, probe_onnx, tmp_path, monkeypatch):
    from dissam.stages import detect_stage, load_stage1

    _, pth = tiny_isnet
    onnx = isnet_onnx
    with pytest.raises(CheckpointError, match="ONNX file only"):
        load_stage1("birefnet-general", pth)
    with pytest.raises(CheckpointError, match=r"does not hold U²-Net: .*\[N, 3, 320, 320\]"):
        load_stage1("u2net", onnx)  # 1024² input, U²-Net runs at 320²
    with pytest.raises(CheckpointError, match="does not hold IS-Net general-use"):
        load_stage1("isnet-general-use", probe_onnx)
    refiner = tmp_path / "refiner.pth"
    from dissam.models.isnet import build_refiner

    torch.save(build_refiner("dis-sam-compact").state_dict(), refiner)
    with pytest.raises(CheckpointError, match="3-channel IS-Net"):
        load_stage1("isnet-general-use", refiner)
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_stage1("isnet-general-use", tmp_path / "missing.onnx")
    with pytest.raises(DisSamError, match="needs weights"):
        load_stage1("isnet-general-use")
    with pytest.raises(DisSamError, match="not weights for --stage1 u2net"):
        load_stage1("u2net", "sam-vit-l")
    with pytest.raises(DisSamError, match="not weights for --stage1 u2net"):
        load_stage1("u2net", "isnet-general-use")
    with pytest.raises(DisSamError, match="margin"):
        SalientStage(PROBE, probe_onnx, margin=-0.1)
    with pytest.raises(DisSamError, match="set_image"):
        SalientStage(PROBE, probe_onnx).coarse_masks(np.array([[0, 0, 5, 5]], float))
    with pytest.raises(DisSamError, match="isnet-general-use"):
        detect_stage(onnx)  # an ONNX file alone: which network it is must be said
    assert detect_stage("isnet-general-use") == "isnet-general-use" and detect_stage("U2Net") == "u2net"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DisSamError, match="pip install onnxruntime"):
        load_stage1("isnet-general-use", onnx)


def _scene(rng):
    """200 x 260 dark noise with a red square (60:140, 40:120), an orange disc at (200, 100) r=30 and a
    blue arm (80:120, 120:160) on the square: the probe network (the red channel) sees the square and
    the disc, not the arm."""
    img = np.clip(np.full((200, 260, 3), 40, np.int16) + rng.integers(-8, 8, (200, 260, 3)), 0, 255).astype(np.uint8)
    img[60:140, 40:120] = (220, 40, 40)
    img[80:120, 120:160] = (40, 40, 220)
    yy, xx = np.ogrid[:200, :260]
    img[(yy - 100) ** 2 + (xx - 200) ** 2 <= 30 ** 2] = (230, 150, 30)
    return img


def test_clicks_are_seeds_for_the_salient_stages(probe_onnx):
    """Points on a salient-object stage 1: a negative click removes the second red thing the network
    took, a positive click adds the part it missed; a box alone is the box-only mask."""
    from dissam.errors import PointError
    from dissam.points import make_prompt

    stage = SalientStage(PROBE, probe_onnx, min_component=0)
    stage.set_image(_scene(np.random.default_rng(0)))
    box = np.array([30.0, 50, 239, 150])
    before = stage.coarse_masks(box[None])[0]
    assert before[60:140, 40:120].mean() > 0.95 and before[85:115, 185:215].mean() > 0.95  # square and disc
    assert before[80:120, 125:160].mean() < 0.05  # the blue arm is missed
    np.testing.assert_array_equal(stage.prompt_masks([make_prompt(box)]).masks[0], before)
    out = stage.prompt_masks([make_prompt(box, [[200, 100]], [0])])
    after = out.masks[0]
    assert out.low_res_logits == [None] and len(stage.last_maps) == 1
    assert after[60:140, 40:120].mean() > 0.95 and after[70:131, 170:231].sum() == 0  # the disc is gone
    added = stage.prompt_masks([make_prompt(box, [[140, 100], [200, 100]], [1, 0])]).masks[0]
    assert added[80:120, 125:160].mean() > 0.95 and added[60:140, 40:120].mean() > 0.95
    assert added[70:131, 170:231].sum() == 0
    # clicks alone: the working box is the clicks' box, grown; a mask_input is refused with a reason
    alone = stage.prompt_masks([make_prompt(None, [[80, 100]], [1])]).masks[0]
    assert alone[60:140, 40:120].mean() > 0.95
    with pytest.raises(PointError, match="takes no mask_input"):
        stage.prompt_masks([make_prompt(box, [[80, 100]], [1], mask_input=np.zeros((1, 8, 8)))])
