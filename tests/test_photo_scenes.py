"""Photo-like training samples (dissam.data.photo_scenes) and stage-1-like coarse masks (dissam.coarse)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dissam.boxes import box_from_mask
from dissam.coarse import degrade_mask, mask_iou
from dissam.data import photo_scenes
from dissam.data.stage1_like import STAGE1_LIKE_SOURCES, stage1_like_mask
from dissam.data.synthetic import generate_dataset, generate_photo_style_sample
from dissam.errors import DatasetError

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory):
    """A small photograph file (a smooth colour field with an edge) for the bank's file path."""
    d = tmp_path_factory.mktemp("bank")
    yy, xx = np.mgrid[0:200, 0:300]
    im = np.stack([xx * 255 // 300, yy * 255 // 200, ((xx > 150) * 200)], -1).astype(np.uint8)
    Image.fromarray(im).save(d / "field.png")
    return d


def test_bank_keeps_the_check_photographs_out(bank_file):
    bank = photo_scenes.load_photo_bank((str(bank_file),))
    assert len(bank) == len(photo_scenes.BANK_SKIMAGE) + 1
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in bank)
    assert max(max(p.shape[:2]) for p in bank) <= photo_scenes.BANK_MAX_SIDE
    assert not set(photo_scenes.BANK_SKIMAGE) & set(photo_scenes.CHECK_PHOTOS)
    # every photograph of the real-photo check is one the bank refuses
    photos = json.loads((Path(__file__).resolve().parents[1] / "examples" / "real_photos.json").read_text())["photos"]
    assert {p["image"] for p in photos} == set(photo_scenes.CHECK_PHOTOS)
    with pytest.raises(DatasetError, match="real-photo check"):
        photo_scenes.load_photo_bank((), ("brick", "chelsea"))
    with pytest.raises(DatasetError, match="does not exist"):
        photo_scenes.load_photo_bank((str(bank_file / "missing"),))
    with pytest.raises(DatasetError, match="empty"):
        photo_scenes.load_photo_bank((), ())


def test_unreadable_bank_file_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        photo_scenes.load_photo_bank((str(tmp_path),), ())


def test_photo_sample_is_deterministic_consistent_and_photo_like(bank_file):
    a = generate_photo_style_sample(3, 7, (str(bank_file),), (96, 128))
    b = generate_photo_style_sample(3, 7, (str(bank_file),), (96, 128))
    c = generate_photo_style_sample(4, 7, (str(bank_file),), (96, 128))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    image, gt, box = a
    h, w = gt.shape
    assert 96 <= h <= 128 and 96 <= w <= 128 and image.shape == (h, w, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(box, box_from_mask(gt, 0))
    assert gt.max() == 255 and (gt > 0).mean() > 0.01  # the target is there, with a solid core
    # camera effects: sensor noise and JPEG leave no perfectly flat 8x8 patch
    patches = image[: h // 8 * 8, : w // 8 * 8].reshape(h // 8, 8, w // 8, 8, 3).std(axis=(1, 3))
    assert (patches > 0).all()


def test_camera_effects_keep_range_shape_and_content():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 80, 3), np.float32)
    img[:, 40:] = 200.0
    out = photo_scenes.camera_effects(img, rng)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert out[:, 50:].mean() - out[:, :30].mean() > 100  # an edge stays an edge


def test_stage1_like_mask_sources_and_fallback(bank_file):
    image, gt, box = generate_photo_style_sample(0, 1, (str(bank_file),), (96, 128))
    seen = {}
    for seed in range(12):
        mask, source, iou = stage1_like_mask(image, gt, box, seed)
        assert mask.shape == gt.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert source in STAGE1_LIKE_SOURCES
        if source != "degrade":
            assert iou >= 0.7 and mask_iou(mask, gt) == pytest.approx(iou)
        seen[source] = seen.get(source, 0) + 1
    assert len(seen) >= 2
    # a stage 1 below the IoU floor gives way to the degraded ground truth
    mask, source, iou = stage1_like_mask(image, gt, box, 0, min_iou=1.01)
    assert source == "degrade"
    rng = np.random.default_rng(0)
    rng.choice(3, p=[0.4, 0.4, 0.2])
    np.testing.assert_array_equal(mask, degrade_mask(gt, int(rng.integers(2**31))))


def test_mask_iou():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    assert mask_iou(a, b) == 1.0
    a[:2], b[1:3] = 255, 255
    assert mask_iou(a, b) == pytest.approx(4 / 12)


def test_photo_dataset_writes_stage1_like_masks_and_sources(tmp_path, bank_file):
    out = tmp_path / "photo"
    boxes = generate_dataset(out, 3, seed=2, size_range=(96, 112), masks="stage1-like", progress=False,
                             style="photo", photos=(str(bank_file),))
    sources = json.loads((out / "mask_sources.json").read_text())
    assert sorted(sources) == sorted(boxes) == ["synth_000000", "synth_000001", "synth_000002"]
    for stem, info in sources.items():
        assert info["source"] in STAGE1_LIKE_SOURCES and 0 <= info["stage1_iou"] <= 1
        assert (out / "mask" / f"{stem}.png").is_file()
    with pytest.raises(DatasetError, match="unknown style"):
        generate_dataset(out, 1, style="watercolour", progress=False)
    with pytest.raises(DatasetError, match="only apply to style='photo'"):
        generate_dataset(out, 1, photos=(str(bank_file),), progress=False)
    with pytest.raises(DatasetError, match="only apply to style='photo'"):
        generate_dataset(out, 1, cutouts=(str(bank_file),), progress=False)


def test_cli_synth_photo_style(tmp_path, bank_file):
    from dissam.cli import main

    out = tmp_path / "cli"
    assert main(["synth", str(out), "-n", "2", "--style", "photo", "--photos", str(bank_file),
                 "--size-min", "96", "--size-max", "100", "--no-progress"]) == 0
    assert len(list((out / "im").glob("*.jpg"))) == 2 and not (out / "mask").exists()
    image, gt, _ = generate_photo_style_sample(1, 0, (str(bank_file),), (96, 100))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "gt" / "synth_000001.png")), gt)


def test_some_targets_are_framed_by_the_image_borders(bank_file):
    """Close-ups: a share of targets runs into the image border (their box touches it)."""
    touching = 0
    for i in range(16):
        _, gt, box = generate_photo_style_sample(i, 21, (str(bank_file),), (64, 80))
        h, w = gt.shape
        assert gt.any()
        x0, y0, x1, y1 = box
        touching += x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1
    assert 2 <= touching <= 12  # FRAMED_SHARE = 0.35 of 16


# --------------------------------------------------------------------------------------------
# cut-outs: real object photographs with an alpha channel


def _disc_rgba(size: int, rng: np.random.Generator, flat: bool = False) -> np.ndarray:
    """A red, noisy ("photographed") disc on fully transparent *green*: the invisible colour must
    never show at the cut-out's edge."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = size / 2 - 2
    alpha = np.clip(r + 0.5 - np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5), 0, 1)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 1] = 255
    if flat:
        rgba[..., :3] = (220, 30, 30)
    else:
        rgba[..., 0] = rng.integers(190, 256, (size, size))
        rgba[..., 1:3] = rng.integers(0, 60, (size, size, 2))
        rgba[alpha == 0, :3] = (0, 255, 0)
    rgba[..., 3] = np.rint(alpha * 255)
    return rgba


@pytest.fixture(scope="module")
def cutout_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cutouts")
    rng = np.random.default_rng(0)
    Image.fromarray(np.pad(_disc_rgba(120, rng), ((10, 30), (5, 0), (0, 0)))).save(d / "photo_disc.png")
    Image.fromarray(_disc_rgba(120, rng, flat=True)).save(d / "drawing.png")  # too few colours
    Image.fromarray(_disc_rgba(120, rng)[..., :3]).save(d / "opaque.png")  # no alpha channel
    Image.fromarray(_disc_rgba(30, rng)).save(d / "icon.png")  # too small
    return d


def test_load_cutouts_keeps_photographed_objects_only(cutout_dir, tmp_path):
    cuts = photo_scenes.load_cutouts((str(cutout_dir),))
    assert len(cuts) == 1
    (cut,) = cuts
    assert cut.dtype == np.uint8 and cut.shape == (120 - 4, 120 - 4, 4)  # cropped to the alpha's box
    assert cut[0].any() and cut[..., 3].max() == 255
    (tmp_path / "drawing.png").write_bytes((cutout_dir / "drawing.png").read_bytes())
    with pytest.raises(DatasetError, match="no usable cut-out among 1 files"):
        photo_scenes.load_cutouts((str(tmp_path),))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetError, match="broken.png"):
        photo_scenes.load_cutouts((str(tmp_path),))
    with pytest.raises(DatasetError, match="does not exist"):
        photo_scenes.load_cutouts((str(tmp_path / "missing"),))


def test_cutout_layer_fits_keeps_aspect_and_never_fringes(cutout_dir):
    cuts = photo_scenes.load_cutouts((str(cutout_dir),))
    rng = np.random.default_rng(3)
    for h, w in ((60, 200), (300, 90), (40, 40)):
        cov, tex = photo_scenes.cutout_layer(cuts, h, w, rng)
        side = min(h, w)
        assert cov.shape == (side, side) and tex.shape == (side, side, 3)  # a disc stays round
        assert cov.dtype == tex.dtype == np.float32 and 0 <= cov.min() and cov.max() <= 1
        edge = (cov > 0.02) & (cov < 0.98)
        assert edge.any()
        # premultiplied resampling: the transparent green never bleeds into the edge's colour
        assert (tex[edge, 1] < 110).all() and (tex[edge, 0] > tex[edge, 1] + 60).mean() > 0.95


def test_photo_samples_with_cutouts(cutout_dir, bank_file, monkeypatch):
    """Same seed, same bytes; without cut-outs the draws are the bank-only ones; with them every
    target (CUTOUT_SHARE forced to 1) is the photographed disc: round, and red unless the sample is
    black and white (GREY_SHARE)."""
    photos, cutouts = (str(bank_file),), (str(cutout_dir),)
    plain = generate_photo_style_sample(5, 9, photos, (96, 128))
    np.testing.assert_array_equal(plain[1], generate_photo_style_sample(5, 9, photos, (96, 128), ())[1])
    a = generate_photo_style_sample(5, 9, photos, (96, 128), cutouts)
    b = generate_photo_style_sample(5, 9, photos, (96, 128), cutouts)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    monkeypatch.setattr(photo_scenes, "CUTOUT_SHARE", 1.0)
    inside = red = 0
    for i in range(10):
        image, gt, box = generate_photo_style_sample(i, 9, photos, (96, 128), cutouts)
        h, w = gt.shape
        x0, y0, x1, y1 = (int(v) for v in box)
        np.testing.assert_array_equal(box, box_from_mask(gt, 0))
        core = gt == 255
        assert core.any()
        rgb = image[core].astype(int)
        red += np.median(rgb[:, 0] - rgb[:, 1]) > 60  # not when the photograph is black and white
        if x0 > 0 and y0 > 0 and x1 < w - 1 and y1 < h - 1:  # not framed: the whole disc
            inside += 1
            assert abs(x1 - x0 - (y1 - y0)) <= 2
            assert gt.sum() / 255 / ((x1 - x0 + 1) * (y1 - y0 + 1)) == pytest.approx(np.pi / 4, abs=0.05)
    assert inside >= 3 and red >= 7


def test_cli_synth_cutouts(tmp_path, bank_file, cutout_dir):
    from dissam.cli import main

    out = tmp_path / "cli"
    assert main(["synth", str(out), "-n", "2", "--style", "photo", "--photos", str(bank_file), "--cutouts",
                 str(cutout_dir), "--size-min", "96", "--size-max", "100", "--no-progress"]) == 0
    _, gt, _ = generate_photo_style_sample(1, 0, (str(bank_file),), (96, 100), (str(cutout_dir),))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "gt" / "synth_000001.png")), gt)


def test_cutout_split_holds_out_one_file_in_five_by_name(cutout_dir, tmp_path):
    names = [f"object_{i}.png" for i in range(200)]
    held = [n for n in names if photo_scenes.cutout_part(n) == "heldout"]
    assert 0.1 < len(held) / len(names) < 0.3  # one in CUTOUT_HELDOUT_EVERY = 5
    assert photo_scenes.cutout_part(held[0]) == photo_scenes.cutout_part(held[0])  # stable
    train = next(n for n in names if n not in held)
    src = (cutout_dir / "photo_disc.png").read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / held[0]).write_bytes(src)
    (tmp_path / train).write_bytes(src)
    (tmp_path / held[1]).write_bytes(src)
    folder = (str(tmp_path),)
    assert len(photo_scenes.load_cutouts(folder, "all")) == 3
    assert len(photo_scenes.load_cutouts(folder, "train")) == 1
    assert len(photo_scenes.load_cutouts(folder, "heldout")) == 2
    with pytest.raises(DatasetError, match="unknown cut-out split"):
        photo_scenes.load_cutouts(folder, "test")
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (only_train / train).write_bytes(src)
    with pytest.raises(DatasetError, match=r"no usable cut-out among 0 files \(heldout\)"):
        photo_scenes.load_cutouts((str(only_train),), "heldout")
