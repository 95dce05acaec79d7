"""Image reading for odd inputs, and box validation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dissam.boxes import as_boxes, box_from_mask, validate_boxes
from dissam.errors import BoxError, ImageReadError
from dissam.io import read_image, read_mask, write_png


def _rgb(h=20, w=30):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path):
    a = _rgb()
    write_png(tmp_path / "a.png", a)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), a)


def test_grayscale_rgba_16bit_float_bool(tmp_path):
    g = _rgb()[:, :, 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3) and np.array_equal(out[:, :, 2], g)
    rgba = np.dstack([_rgb(), np.full((20, 30), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[:, :, :3])
    g16 = (g.astype(np.uint16) * 257)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[:, :, 0], g)
    np.testing.assert_array_equal(read_mask(g16), g)
    np.testing.assert_array_equal(read_mask(np.array([[True, False]] * 2)), [[255, 0]] * 2)
    np.testing.assert_array_equal(read_mask(np.array([[1.0, 0.0]] * 2)), [[255, 0]] * 2)


def test_exif_orientation_applied(tmp_path):
    a = _rgb(10, 16)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (16, 10, 3)


def test_unreadable_and_missing(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="cannot read image"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="shape"):
        read_image(np.zeros((2, 2, 2, 2), np.uint8))


def test_boxes_clip_and_errors():
    out = validate_boxes([[-5, 3, 50, 10]], (20, 30))
    np.testing.assert_array_equal(out, [[0, 3, 29, 10]])
    np.testing.assert_array_equal(as_boxes([1, 2, 3, 4], "xywh"), [[1, 2, 4, 6]])
    with pytest.raises(BoxError, match="inverted or empty"):
        validate_boxes([10, 10, 5, 20], (20, 30))
    with pytest.raises(BoxError, match="outside"):
        validate_boxes([40, 0, 50, 10], (20, 30))
    with pytest.raises(BoxError, match="4 numbers"):
        validate_boxes([1, 2, 3], (20, 30))
    with pytest.raises(BoxError, match="non-finite"):
        validate_boxes([0, 0, np.nan, 3], (20, 30))


def test_box_from_mask_inclusive():
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = 255
    np.testing.assert_array_equal(box_from_mask(m), [3, 2, 8, 4])
    assert box_from_mask(np.zeros((3, 3))) is None


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    """A PNG that declares a huge size is refused from its header with a clear message (no traceback,
    no memory blow-up); the same file passes when the limit allows it."""
    import dissam.io as dio

    p = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(p)
    monkeypatch.setattr(dio, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(ImageReadError, match=r"400x300 = 120,000 pixels, more than the limit of 100,000"):
        read_image(p)
    monkeypatch.setattr(dio, "MAX_IMAGE_PIXELS", 200_000)
    assert read_image(p).shape == (300, 400, 3)


def test_predict_cli_reports_a_bomb_and_goes_on(tmp_path, monkeypatch, capsys):
    import dissam.io as dio
    from dissam.cli import main

    good, bomb = tmp_path / "good.png", tmp_path / "bomb.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(good)
    Image.fromarray(np.zeros((400, 400, 3), np.uint8)).save(bomb)
    monkeypatch.setattr(dio, "MAX_IMAGE_PIXELS", 100_000)
    rc = main(["predict", str(good), str(bomb), "--box", "8,8,40,40", "--size", "64", "--device", "cpu",
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().out
    assert rc == 1 and "decompression bomb" in err and (tmp_path / "out" / "good_0.png").is_file()


def test_big_pictures_are_written_with_fast_compression_same_pixels(tmp_path, monkeypatch):
    import io as _io

    import dissam.io as dio

    arr = (np.random.default_rng(0).random((64, 80, 4)) * 64).astype(np.uint8)
    default = dio.encode_png(arr)
    monkeypatch.setattr(dio, "FAST_PNG_VALUES", 100)  # now this array counts as big
    fast = dio.encode_png(arr)
    assert fast != default  # another zlib level...
    for data in (default, fast):  # ...the same pixels
        np.testing.assert_array_equal(np.asarray(Image.open(_io.BytesIO(data))), arr)
    dio.write_png(tmp_path / "a.png", arr)
    assert (tmp_path / "a.png").read_bytes() == fast  # write_png writes encode_png's bytes
