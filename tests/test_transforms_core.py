"""The shared input pipeline: parity with the authors' loader (tests/fixtures/preprocess) and the
clean (inference) mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dissam.io import read_image, read_mask
from dissam.transforms import (
    assemble_input,
    box_map_from_box,
    box_map_from_gt,
    clean_input,
    clean_inputs,
    faithful_sample,
    flip4,
    postprocess,
    resize_uint8,
    to_authors_png,
)

SAMPLES = ["a_landscape", "b_exif_rotated", "c_grayscale"]


@pytest.fixture(scope="module")
def pre(fixtures_dir):
    return (np.load(fixtures_dir / "preprocess" / "expected.npz"),
            json.loads((fixtures_dir / "preprocess" / "meta.json").read_text()))


@pytest.mark.parametrize("name", SAMPLES)
def test_faithful_parity_with_authors_loader(name, pre, fixtures_dir):
    expected, meta = pre
    d = fixtures_dir / "preprocess" / "data"
    im = read_image(d / "im" / f"{name}.jpg")
    out = faithful_sample(im, read_mask(d / "gt" / f"{name}.png"), read_mask(d / "mask" / f"{name}.png"), 320)
    orig = next(s["original_hw"] for s in meta["samples"] if s["name"] == name)
    assert list(out["orig_hw"]) == orig
    for ours, theirs in [("im_u8", "uint8_im"), ("gt_u8", "uint8_gt"), ("mask_u8", "uint8_mid")]:
        np.testing.assert_array_equal(out[ours].numpy(), expected[f"{name}__{theirs}"])
    np.testing.assert_allclose(out["image"].numpy(), expected[f"{name}__image"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["label"].numpy(), expected[f"{name}__label"], atol=1e-6, rtol=0)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (5, 320, 320)


def test_resize_truncates():
    x = torch.tensor([[[0.0, 255.0]]]).expand(1, 2, 2).contiguous()
    # bilinear to 1x3: values 0, 127.5, 255 -> truncation gives 127 (rounding would give 128)
    out = resize_uint8(x, (1, 3))
    assert out.dtype == torch.uint8 and out[0, 0, 1] == 127


def test_box_map_quirk_half_open_and_255_on_edges():
    gt = torch.zeros(1, 8, 8, dtype=torch.uint8)
    gt[0, 2:6, 3:7] = 255  # rows 2..5, cols 3..6
    gt[0, 2, 3] = 100  # a soft pixel inside
    box = box_map_from_gt(gt)
    expect = torch.zeros(8, 8, dtype=torch.uint8)
    expect[2:5, 3:6] = 255  # half-open [top:bottom, left:right]
    expect[5, 3:7] = 255  # GT pixels equal to 255 on the last row stay on
    expect[2:6, 6] = 255  # ... and on the last column
    assert torch.equal(box[0], expect)
    assert torch.count_nonzero(box_map_from_gt(torch.zeros(1, 4, 4, dtype=torch.uint8))) == 0


def test_box_map_from_user_box():
    # identity scale: inclusive box covers exactly its pixels
    m = box_map_from_box([2, 1, 5, 3], (8, 10), (8, 10))[0]
    ys, xs = torch.nonzero(m, as_tuple=True)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2, 5, 1, 3)
    # 2x upscale: pixel i covers cells 2i, 2i+1
    m = box_map_from_box([2, 1, 5, 3], (8, 10), (16, 20))[0]
    ys, xs = torch.nonzero(m, as_tuple=True)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (4, 11, 2, 7)
    # a 1-pixel box at heavy downscale still gives a cell
    assert torch.count_nonzero(box_map_from_box([50, 50, 50, 50], (1000, 1000), (10, 10))) == 1


def test_clean_inputs_batch_equals_single_and_channel_order():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    masks = rng.random((3, 37, 53)) > 0.5
    boxes = np.array([[1, 2, 20, 30], [10, 5, 52, 36], [0, 0, 5, 5]], float)
    batch = clean_inputs(img, masks, boxes, 64)
    assert batch.shape == (3, 5, 64, 64)
    for i in range(3):
        single = clean_input(img, masks[i], boxes[i], 64)
        torch.testing.assert_close(batch[i], single, atol=0, rtol=0)
        im_u8 = resize_uint8(torch.from_numpy(img).permute(2, 0, 1), 64)
        m_u8 = resize_uint8(torch.from_numpy(masks[i].astype(np.uint8) * 255)[None], 64)
        ref = assemble_input(im_u8, m_u8, box_map_from_box(boxes[i], (37, 53), 64))
        torch.testing.assert_close(single, ref, atol=0, rtol=0)
    assert float(batch[:, :3].min()) >= -0.5 and float(batch[:, :3].max()) <= 0.5


def test_postprocess_and_authors_png():
    pred = torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    out = postprocess(pred, (7, 5))
    assert out.shape == (1, 7, 5)
    assert postprocess(pred[0], (7, 5)).shape == (7, 5)
    png = to_authors_png(torch.tensor([[0.2, 0.4], [0.6, 0.7]]))
    assert png.dtype == np.uint8 and png[0, 0] == 0 and png[1, 1] == 255
    np.testing.assert_array_equal(to_authors_png(torch.full((3, 3), 0.7)), np.zeros((3, 3), np.uint8))


def test_authors_png_matches_float32_reference():
    p = torch.rand(33, 47, generator=torch.Generator().manual_seed(0))
    mi, ma = p.min(), p.max()
    ref = ((p - mi) / (ma - mi) * 255).numpy().astype(np.uint8)
    np.testing.assert_array_equal(to_authors_png(p), ref)


def test_flip4_all_branches():
    t = torch.arange(6).reshape(1, 2, 3)
    assert torch.equal(flip4(0.1, t)[0], t.flip(-1))
    assert torch.equal(flip4(0.3, t)[0], t.flip(-2))
    assert torch.equal(flip4(0.6, t)[0], t.flip(-1).flip(-2))
    assert torch.equal(flip4(0.9, t)[0], t)
    a, b = flip4(0.1, t, t + 1)
    assert torch.equal(b - a, torch.ones_like(a))


def test_big_images_resize_one_channel_at_a_time_bit_identically(monkeypatch):
    """Above 4 MP resize_uint8 converts one float channel at a time (a third of the memory of a big
    photograph); the refiner's input stays bit-identical."""
    import torch

    from dissam import transforms

    img = (np.random.default_rng(3).random((613, 1019, 3)) * 255).astype(np.uint8)
    whole = transforms.resize_image(img, 256)
    monkeypatch.setattr(transforms, "_CHANNELWISE_PIXELS", 1000)
    assert torch.equal(transforms.resize_image(img, 256), whole)
    batch = torch.from_numpy(np.stack([img, img[::-1].copy()])).permute(0, 3, 1, 2)
    assert torch.equal(transforms.resize_uint8(batch, (100, 300))[0], transforms.resize_uint8(batch[0], (100, 300)))
