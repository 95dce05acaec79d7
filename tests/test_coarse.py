"""Weight-free coarse masks: degrade_mask (SAM-like failures) and grabcut_mask (box-seeded GrabCut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dissam.coarse import colour_overlap, degrade_mask, grabcut_mask
from dissam.data.synthetic import generate_sample
from dissam.errors import BoxError


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max(1, (a | b).sum()))


def _square_with_hole_and_wire() -> np.ndarray:
    gt = np.zeros((512, 512), np.uint8)
    gt[100:300, 100:300] = 255
    gt[200:203, 200:203] = 0  # 3x3 hole
    gt[150, 300:450] = 255  # 1-px wire
    return gt


def test_degrade_is_deterministic_binary_and_seeded():
    _, gt, _ = generate_sample(0, seed=0, size=256, kind="insect")
    a, b, c = degrade_mask(gt, 3), degrade_mask(gt, 3), degrade_mask(gt, 4)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == gt.shape
    assert set(np.unique(a).tolist()) <= {0, 255}
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(degrade_mask(gt, 3, strength=0), (gt >= 128).astype(np.uint8) * 255)


@pytest.mark.parametrize("seed", range(5))
def test_degrade_removes_wire_fills_hole_keeps_body(seed):
    gt = _square_with_hole_and_wire()
    d = degrade_mask(gt, seed)
    assert d[201, 201] == 255  # hole filled
    assert d[150, 320:440].max() == 0  # wire gone
    assert _iou(d, gt) > 0.9  # measured 0.956-0.977


def test_degrade_loses_thin_parts_of_generated_objects():
    ious, recalls = [], []
    for i in range(4):
        _, gt, _ = generate_sample(i, seed=0, size=512, kind="insect")
        g = (gt >= 128).astype(np.uint8)
        body = cv2.morphologyEx(g, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8))
        thin = (g > 0) & (cv2.dilate(body, np.ones((7, 7), np.uint8)) == 0)
        d = degrade_mask(gt, i)
        ious.append(_iou(d, gt))
        recalls.append((d[thin] > 0).mean())
    assert min(ious) > 0.7  # measured 0.86-0.94
    assert max(recalls) < 0.2  # measured 0.0


def _blue_rectangle():
    """A noisy 120 x 160 image with a blue rectangle, its box and its mask."""
    rng = np.random.default_rng(0)
    image = np.full((120, 160, 3), 220, np.uint8)
    image[30:90, 40:120] = (30, 60, 200)
    image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    ref = np.zeros((120, 160), np.uint8)
    ref[30:90, 40:120] = 255
    return image, [30, 20, 130, 100], ref


def test_grabcut_segments_inside_the_box():
    image, box, ref = _blue_rectangle()
    m = grabcut_mask(image, box)
    assert m.dtype == np.uint8 and set(np.unique(m).tolist()) <= {0, 255}
    assert _iou(m, ref) > 0.95  # measured 1.0
    outside = np.ones_like(m, bool)
    outside[20:101, 30:131] = False
    assert (m[outside] == 0).all()


def test_grabcut_on_a_downscaled_copy():
    """max_side: GrabCut runs on a smaller copy (large photographs), the mask comes back at full size."""
    image, box, ref = _blue_rectangle()
    small = grabcut_mask(image, box, max_side=80)
    assert small.shape == (120, 160) and set(np.unique(small).tolist()) <= {0, 255}
    assert _iou(small, ref) > 0.9
    outside = np.ones_like(small, bool)
    outside[20:101, 30:131] = False
    assert (small[outside] == 0).all()
    np.testing.assert_array_equal(grabcut_mask(image, box, max_side=160), grabcut_mask(image, box))


def test_grabcut_on_generated_sample_stays_in_box():
    image, gt, box = generate_sample(1, seed=0, size=128, kind="blob")
    m = grabcut_mask(image, box, iters=3)
    x0, y0, x1, y1 = box
    assert m.any()
    inside = np.zeros_like(m, bool)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    assert (m[~inside] == 0).all()


def test_grabcut_whole_image_box_and_errors():
    image = np.zeros((40, 50, 3), np.uint8)
    np.testing.assert_array_equal(grabcut_mask(image, [0, 0, 49, 39]), np.full((40, 50), 255, np.uint8))
    with pytest.raises(BoxError):
        grabcut_mask(image, [10, 10, 5, 20])


def test_grabcut_does_not_depend_on_what_ran_before():
    """OpenCV's GrabCut starts its colour models from k-means on the thread's random generator; on a real
    photo (the astronaut's helmet, 128 px) two generator states give different masks, and grabcut_mask,
    which seeds the generator, gives one answer whatever state it finds."""
    skd = pytest.importorskip("skimage.data")
    image = cv2.resize(skd.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    box = [68, 85, 127, 127]
    rect = (68, 85, 60, 43)

    def raw(seed: int) -> np.ndarray:
        mask, bgd, fgd = np.zeros((128, 128), np.uint8), np.zeros((1, 65)), np.zeros((1, 65))
        cv2.setRNGSeed(seed)
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
        return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))

    if np.array_equal(raw(0), raw(1)):
        pytest.skip("this OpenCV's GrabCut gives one mask for both generator states here")
    masks = []
    for seed in (1, 7, 12345):
        cv2.setRNGSeed(seed)
        masks.append(grabcut_mask(image, box))
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(masks[0], masks[2])
    assert 0.6 < (masks[0] > 0).sum() / (60 * 43) < 1.0  # the helmet fills most of its box


def _red_square_beside_a_blue_band() -> tuple[np.ndarray, list[int], np.ndarray]:
    """Green background; inside the box a red square (the object) and a blue band: neither looks
    like the background, so the box alone cannot tell GrabCut which one is the object."""
    image = np.zeros((120, 160, 3), np.uint8)
    image[:] = (40, 160, 40)
    image[30:90, 30:80] = (200, 30, 30)  # the red square
    image[25:95, 95:125] = (30, 30, 200)  # the blue band
    ref = np.zeros((120, 160), np.uint8)
    ref[30:90, 30:80] = 255
    return image, [20, 20, 134, 99], ref


def test_grabcut_from_a_first_guess():
    """``init``: the first guess says which thing is the object (a patch in the square's centre);
    GrabCut's colour models then find its whole extent. From the box alone it takes both things."""
    image, box, ref = _red_square_beside_a_blue_band()
    from_box = grabcut_mask(image, box)
    assert (from_box[25:95, 95:125] > 0).mean() > 0.9  # the band is taken with the square
    assert _iou(from_box, ref) < 0.7
    guess = np.zeros((120, 160), bool)
    guess[50:70, 45:65] = True  # 400 px of the square's 3,000
    seeded = grabcut_mask(image, box, init=guess)
    assert _iou(seeded, ref) > 0.95  # measured 1.0
    assert (seeded[:20] == 0).all() and (seeded[:, 135:] == 0).all()  # nothing outside the box
    # the same on a downscaled copy, and with a box filling the image (where the box alone cannot run)
    assert _iou(grabcut_mask(image, box, init=guess, max_side=80), ref) > 0.9
    assert _iou(grabcut_mask(image, [0, 0, 159, 119], init=guess), ref) > 0.95


def test_grabcut_first_guess_that_says_nothing_is_ignored():
    """A guess empty in the box, or filling it, gives GrabCut nothing to start from: the box is used."""
    image, box, _ = _red_square_beside_a_blue_band()
    from_box = grabcut_mask(image, box)
    empty_in_box = np.zeros((120, 160), bool)
    empty_in_box[:10, :10] = True  # only outside the box
    np.testing.assert_array_equal(grabcut_mask(image, box, init=empty_in_box), from_box)
    whole_box = np.zeros((120, 160), bool)
    whole_box[20:100, 20:135] = True
    np.testing.assert_array_equal(grabcut_mask(image, box, init=whole_box), from_box)
    with pytest.raises(ValueError, match="init mask"):
        grabcut_mask(image, box, init=np.ones((60, 80), bool))


def test_colour_overlap_is_the_bhattacharyya_coefficient_of_the_two_histograms():
    """Half red, half blue: a mask of the red half separates the colours completely (0); with ``k``
    blue pixels added, the object's histogram is ``(n, k) / (n + k)`` against the rest's all-blue
    one, so the coefficient is ``sqrt(k / (n + k))``."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (220, 30, 30)
    image[:, 30:] = (30, 30, 220)
    box = [0, 0, 59, 39]
    red = np.zeros((40, 60), bool)
    red[:, :30] = True
    assert colour_overlap(image, red, box) == pytest.approx(0.0, abs=1e-6)
    plus = red.copy()
    plus[:10, 30:40] = True  # k = 100 blue pixels, n = 1200 red ones
    assert colour_overlap(image, plus, box) == pytest.approx(np.sqrt(100 / 1300), abs=1e-6)
    # only the box counts: outside it, the mask and the colours are ignored
    image[:, 55:] = (220, 30, 30)
    assert colour_overlap(image, plus, [0, 0, 54, 39]) == pytest.approx(np.sqrt(100 / 1300), abs=1e-6)
    # a mask that is empty in the box or fills it separates nothing
    assert colour_overlap(image, np.zeros((40, 60), bool), box) == 1.0
    assert colour_overlap(image, np.ones((40, 60), bool), box) == 1.0
    # noise split at random: the two histograms are nearly the same
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    half = np.random.default_rng(1).random((200, 200)) < 0.5
    assert colour_overlap(noise, half, [0, 0, 199, 199]) > 0.95
    with pytest.raises(ValueError, match="differ in size"):
        colour_overlap(image, np.ones((20, 60), bool), box)
    with pytest.raises(BoxError):
        colour_overlap(image, red, [30, 10, 20, 30])
