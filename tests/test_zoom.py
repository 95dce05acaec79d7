"""Zoomed refinement (opt-in): the crop around a box, what the refiner sees, the paste back, and that a
window covering the whole image is the paper's whole-image path exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dissam.errors import DisSamError
from dissam.zoom import check_margin, refine_zoomed, zoom_window

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_window_is_the_box_widened_by_the_margin_and_clipped():
    # an inclusive box 10..29 x 20..39 covers 20 x 20 pixels: a quarter of that is 5 on each side
    assert zoom_window([10, 20, 29, 39], (100, 200), 0.25) == (5, 15, 35, 45)
    assert zoom_window([10, 20, 29, 39], (100, 200), 0.0) == (10, 20, 30, 40)  # the box itself
    assert zoom_window([0, 0, 199, 99], (100, 200), 0.5) == (0, 0, 200, 100)  # clipped to the image
    assert zoom_window([50, 50, 50, 50], (100, 200), 0.0) == (50, 50, 51, 51)  # at least one pixel


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), 11, "wide", None])
def test_bad_margins_are_refused(bad):
    with pytest.raises(DisSamError, match="zoom margin"):
        check_margin(bad)


def test_refiner_sees_the_crop_and_its_output_is_pasted_into_the_window():
    h, w, s = 100, 200, 60
    image = np.zeros((h, w, 3), np.uint8)
    image[:, 100:] = 200  # the right half is bright
    coarse = np.zeros((1, h, w), bool)
    coarse[0, 40:60, 90:110] = True
    seen = []

    def run(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.full((x.shape[0], 1, s, s), 0.75)

    out = refine_zoomed(run, image, coarse, np.array([[80.0, 30.0, 119.0, 69.0]]), s, 0.25)
    x0, y0, x1, y1 = zoom_window([80, 30, 119, 69], (h, w), 0.25)  # (70, 20, 130, 80)
    assert out.shape == (1, h, w) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, y0:y1, x0:x1], 0.75)
    assert out[0].sum() == pytest.approx(0.75 * (y1 - y0) * (x1 - x0))  # zero outside the window
    (x,) = seen
    assert x.shape == (1, 5, s, s)
    box_map = x[0, 4] > 0
    rows, cols = np.nonzero(box_map.numpy().any(axis=1))[0], np.nonzero(box_map.numpy().any(axis=0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (10, 50, 10, 50)  # the box fills 2/3 of the crop
    assert x[0, 0, :, :25].max() < x[0, 0, :, 35:].min()  # the crop's left part is dark, its right bright


def test_a_window_covering_the_image_is_the_whole_image_path(image, boxes, tiny_refiner):
    from dissam.predictor import DisSamPredictor

    coarse = np.zeros(image.shape[:2], bool)
    x0, y0, x1, y1 = boxes[0].astype(int)
    coarse[y0:y1, x0:x1] = True
    whole = DisSamPredictor(None, tiny_refiner, size=64).set_image(image)
    zoomed = DisSamPredictor(None, tiny_refiner, size=64, zoom=10.0).set_image(image)
    a = whole.predict(boxes[0], coarse_mask=coarse)
    b = zoomed.predict(boxes[0], coarse_mask=coarse)
    np.testing.assert_array_equal(a.soft, b.soft)
    c = DisSamPredictor(None, tiny_refiner, size=64, zoom=0.1).set_image(image).predict(boxes[0], coarse_mask=coarse)
    assert c.soft.shape == a.soft.shape and not np.array_equal(c.soft, a.soft)
    with pytest.raises(DisSamError, match="zoom margin"):
        DisSamPredictor(None, tiny_refiner, zoom=-1)
