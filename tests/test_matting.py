"""Foreground colour estimation (blur fusion) and halo-free cut-outs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dissam.matting import (
    band_colour_error,
    estimate_foreground,
    foreground_rgb,
    is_binary,
    synthetic_composite,
)
from dissam.visualize import cutout


@pytest.fixture(scope="module")
def comp():
    return synthetic_composite(256, 256, seed=3)


def test_estimate_beats_the_naive_cutout_in_the_soft_band(comp):
    a8 = np.rint(comp["alpha"] * 255).astype(np.uint8)  # the alpha a cut-out stores
    naive = band_colour_error(comp["image"], comp["fg"], a8)  # RGBA = [image, alpha]
    est = band_colour_error(foreground_rgb(comp["image"], a8), comp["fg"], a8)
    assert naive > 20  # the composite has visible halos to remove
    assert est < 0.5 * naive, (est, naive)
    # away from the edge nothing changes: opaque pixels keep the image's colour
    fg = estimate_foreground(comp["image"], comp["alpha"])
    opaque = comp["alpha"] >= 1.0
    np.testing.assert_allclose(fg[opaque], comp["image"][opaque] / 255.0, atol=1e-5)
    assert fg.shape == (256, 256, 3) and fg.dtype == np.float32 and 0 <= fg.min() and fg.max() <= 1


def test_cutout_flag_and_binary_masks(comp):
    img, a = comp["image"], comp["alpha"]
    plain = cutout(img, a, estimate_fg=False)
    np.testing.assert_array_equal(plain[..., :3], img)
    est = cutout(img, a)
    np.testing.assert_array_equal(est[..., 3], plain[..., 3])  # same alpha, other colours
    np.testing.assert_array_equal(est[..., :3], foreground_rgb(img, plain[..., 3]))
    assert not np.array_equal(est[..., :3], img)
    mask = a > 0.5  # a binary mask has nothing to estimate
    assert is_binary(mask) and is_binary(mask.astype(np.uint8) * 255) and not is_binary(a)
    np.testing.assert_array_equal(cutout(img, mask)[..., :3], img)


def test_strips_give_the_whole_box_colours():
    """foreground_rgb works strip by strip (bounded memory on big photographs); with a halo of the
    filters' reach each strip's rows get the colours the whole box gives (within one 8-bit level)."""
    c = synthetic_composite(700, 120, seed=5)
    a8 = np.rint(c["alpha"] * 255).astype(np.uint8)
    whole = foreground_rgb(c["image"], a8, strip_pixels=10**9)
    strips = foreground_rgb(c["image"], a8, strip_pixels=1)  # strips of 2 x 96 rows: four of them
    assert np.abs(whole.astype(int) - strips.astype(int)).max() <= 1
    assert (whole != strips).mean() < 1e-3
    assert not np.array_equal(whole, c["image"])  # there were soft edges to estimate


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="H x W x 3"):
        estimate_foreground(np.zeros((4, 4), np.uint8), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="alpha has shape"):
        estimate_foreground(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4)))


def test_predict_rgba_estimates_unless_told_not_to(tmp_path, fixtures_dir, tiny_sam_path, tiny_refiner):
    from dissam.checkpoints import save_checkpoint
    from dissam.cli import main
    from dissam.io import read_image

    ckpt = save_checkpoint(tmp_path / "r.safetensors", tiny_refiner, metadata={"input_size": 128})
    img = fixtures_dir / "sam" / "image.png"
    base = ["predict", str(img), "--sam", str(tiny_sam_path), "--refiner", str(ckpt), "--box", "100,80,300,280",
            "--rgba", "--soft"]
    assert main([*base, "-o", str(tmp_path / "est")]) == 0
    assert main([*base, "-o", str(tmp_path / "plain"), "--no-fg-estimation"]) == 0
    image = read_image(img)
    est = np.asarray(Image.open(tmp_path / "est" / "image_0_cutout.png"))
    plain = np.asarray(Image.open(tmp_path / "plain" / "image_0_cutout.png"))
    np.testing.assert_array_equal(est[..., 3], plain[..., 3])
    np.testing.assert_array_equal(plain[..., :3], image)
    assert not is_binary(est[..., 3])
    np.testing.assert_array_equal(est[..., :3], foreground_rgb(image, est[..., 3]))


def test_cropped_estimate_equals_the_whole_image_where_visible():
    c = synthetic_composite(300, 400, seed=5)
    a = np.zeros((700, 900), np.float32)  # the object in a corner of a larger picture
    a[20:320, 30:430] = c["alpha"]
    img = np.full((700, 900, 3), 90, np.uint8)
    img[20:320, 30:430] = c["image"]
    got = foreground_rgb(img, a)
    full = np.clip(np.rint(estimate_foreground(img, a) * 255), 0, 255).astype(np.uint8)
    visible = a > 0
    assert np.abs(got[visible].astype(int) - full[visible]).max() <= 1
    np.testing.assert_array_equal(got[450:, 550:], img[450:, 550:])  # far from the object: left as it was
