"""dissam.data: layout discovery, enrichment, the manifest, and DisDataset (shapes, parity with the
authors' loader, flips, prompt dropout, cache invalidation, bad inputs)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from data_helpers import gt_two_big_one_tiny, make_split  # noqa: I001

from dissam.data.dataset import DisDataset
from dissam.data.enrich import (
    component_box,
    component_gt,
    components,
    enrich_samples,
    enrich_split,
    read_manifest,
    whole_box,
    write_manifest,
)
from dissam.data.layout import Sample, discover_dis5k, discover_split
from dissam.errors import DatasetError, ImageReadError
from dissam.io import write_png
from dissam.transforms import box_map_from_box, flip4

SAMPLES = ["a_landscape", "b_exif_rotated", "c_grayscale"]


# ------------------------------------------------------------------------------------- layout
def test_discover_split_pairs_and_sorts(tmp_path):
    g = np.zeros((20, 20), np.uint8)
    split = make_split(tmp_path / "S", {"b": g, "a": g})
    shutil.move(split / "im" / "b.png", split / "im" / "b.jpeg")
    s = discover_split(split, require_masks=True)
    assert [x.name for x in s] == ["a", "b"]
    assert s[1].image.name == "b.jpeg" and s[1].gt.name == "b.png" and s[1].mask.name == "b.png"
    assert s[0].component is None and s[0].box is None


def test_discover_split_reports_every_problem_at_once(tmp_path):
    g = np.zeros((20, 20), np.uint8)
    split = make_split(tmp_path / "S", {"a": g, "b": g, "c": g})
    (split / "gt" / "a.png").unlink()
    (split / "gt" / "b.png").unlink()
    (split / "mask" / "c.png").unlink()
    with pytest.raises(DatasetError) as e:
        discover_split(split, require_masks=True)
    msg = str(e.value)
    assert "2 images have no ground truth" in msg and "a, b" in msg
    assert "1 images have no SAM mask" in msg and "prepare-masks" in msg
    # without require_masks the missing mask is just None
    (split / "gt" / "a.png").write_bytes((split / "gt" / "c.png").read_bytes())
    (split / "gt" / "b.png").write_bytes((split / "gt" / "c.png").read_bytes())
    s = discover_split(split)
    assert s[2].mask is None


def test_discover_split_extra_files_warn_and_duplicates_fail(tmp_path):
    g = np.zeros((20, 20), np.uint8)
    split = make_split(tmp_path / "S", {"a": g})
    write_png(split / "gt" / "orphan.png", g)
    with pytest.warns(UserWarning, match="orphan"):
        assert len(discover_split(split)) == 1
    shutil.copy(split / "im" / "a.png", split / "im" / "a.jpg")
    with pytest.raises(DatasetError, match="twice"), pytest.warns(UserWarning, match="orphan"):
        discover_split(split)


def test_discover_split_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match="im/"):
        discover_split(tmp_path)
    (tmp_path / "im").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        discover_split(tmp_path)


def test_discover_split_verify_finds_unreadable(tmp_path):
    g = np.zeros((20, 20), np.uint8)
    split = make_split(tmp_path / "S", {"a": g, "b": g})
    (split / "im" / "b.png").write_bytes(b"not a png")
    assert len(discover_split(split)) == 2  # headers are not read by default
    with pytest.raises(DatasetError, match="1 unreadable files.*b.png"):
        discover_split(split, verify=True)


def test_discover_dis5k(tmp_path):
    g = np.zeros((20, 20), np.uint8)
    for sp in ("DIS-TR", "DIS-VD"):
        make_split(tmp_path / "DIS5K" / sp, {f"{sp}_x": g})
    out = discover_dis5k(tmp_path, splits=None)
    assert list(out) == ["DIS-TR", "DIS-VD"] and out["DIS-VD"][0].name == "DIS-VD_x"
    assert list(discover_dis5k(tmp_path / "DIS5K", splits=["DIS-VD"])) == ["DIS-VD"]
    with pytest.raises(DatasetError, match="DIS-TE1"):
        discover_dis5k(tmp_path, splits=["DIS-TR", "DIS-TE1"])


# ----------------------------------------------------------------------------------- enrichment
def test_components_drop_tiny_keep_label_indices_and_add_whole():
    g = gt_two_big_one_tiny()
    comps = components(g)
    # skimage labels in raster order: A=1, B=2, speck=3 (dropped)
    assert sorted(comps) == [0, 1, 2]
    assert comps[1].sum() == 100 and comps[2].sum() == 200
    assert comps[0].sum() == 100 + 200 + 4  # the whole binarised mask keeps the speck
    assert component_box(comps[1]) == (3, 2, 12, 11)
    assert component_box(comps[2]) == (30, 20, 49, 29)
    assert component_box(comps[0]) == (3, 2, 49, 46)
    np.testing.assert_array_equal(component_gt(g, 2), comps[2].astype(np.uint8) * 255)
    np.testing.assert_array_equal(component_gt(g, 0), comps[0].astype(np.uint8) * 255)
    with pytest.raises(DatasetError):
        component_gt(g, 9)


def test_components_single_survivor_and_empty_and_8_connectivity():
    g = np.zeros((50, 60), np.uint8)
    g[2:12, 3:13] = 255
    g[45:47, 5:7] = 255  # tiny, dropped
    comps = components(g)
    assert list(comps) == [1]  # no whole-mask entry for a single survivor
    assert whole_box(g) == (3, 2, 12, 11)  # the SAM prompt excludes the dropped speck
    assert components(np.zeros((10, 10), np.uint8)) == {}
    assert whole_box(np.zeros((10, 10), np.uint8)) is None
    speck = np.zeros((100, 100), np.uint8)
    speck[5, 5] = 255
    assert components(speck) == {} and whole_box(speck) == (5, 5, 5, 5)
    d = np.zeros((10, 10), np.uint8)
    d[np.arange(10), np.arange(10)] = 255  # a diagonal: one component under 8-connectivity
    assert list(components(d)) == [1]
    assert components(d, min_area_fraction=0.11) == {}  # 10 px < 0.11 * 100


def test_components_threshold_is_exact_area():
    g = np.zeros((50, 50), np.uint8)  # 0.004 * 2500 = 10 px
    g[0, 0:10] = 255  # exactly 10: kept
    g[10, 0:9] = 255  # 9: dropped
    g[20, 0:10] = 255
    assert sorted(components(g)) == [0, 1, 3]


def test_enrich_split_counts_and_manifest_roundtrip(tmp_path):
    single = np.zeros((50, 60), np.uint8)
    single[5:20, 5:20] = 255
    split = make_split(
        tmp_path / "TR",
        {"multi": gt_two_big_one_tiny(), "single": single, "empty": np.zeros((50, 60), np.uint8)},
    )
    res = enrich_split(split)
    assert (res.n_images, res.n_multi, res.n_empty) == (3, 1, 1)
    names = [s.name for s in res.samples]
    assert names == ["multi_comp_0", "multi_comp_1", "multi_comp_2", "single_comp_1"]
    assert res.extra == 1  # 4 samples - 3 images: +2 for the two-component image, -1 for the empty one
    assert res.samples[1].box == (3, 2, 12, 11)
    assert res.samples[0].mask == split / "mask_comp" / "multi_comp_0.png"
    man = tmp_path / "out" / "m.json"
    assert write_manifest(man, res)
    doc = json.loads(man.read_text())
    assert doc["extra"] == 1 and doc["samples"][1]["image"] == "../TR/im/multi.png"
    back = read_manifest(man)
    assert [(s.name, s.component, s.box) for s in back] == [
        (s.name, s.component, tuple(float(v) for v in s.box)) for s in res.samples
    ]
    assert back[1].image == (split / "im" / "multi.png").resolve()
    assert not write_manifest(man, res, only_if_changed=True)
    with pytest.raises(DatasetError, match="not found"):
        read_manifest(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a dissam enrichment manifest"):
        read_manifest(tmp_path / "bad.json")


def test_enrich_cli(tmp_path, capsys):
    from dissam.cli import main

    split = make_split(tmp_path / "TR", {"multi": gt_two_big_one_tiny()})
    assert main(["enrich", str(split)]) == 0
    out = capsys.readouterr().out
    assert "3 samples, 2 extra" in out and "prepare-masks" in out
    assert len(read_manifest(split / "enrich.json")) == 3


# ------------------------------------------------------------------------------------- dataset
@pytest.fixture(scope="module")
def expected(fixtures_dir):
    return np.load(fixtures_dir / "preprocess" / "expected.npz")


def test_dataset_faithful_parity_with_authors_loader(fixtures_dir, expected, tmp_path):
    samples = discover_split(fixtures_dir / "preprocess" / "data", require_masks=True)
    for cache in (None, tmp_path / "cache"):
        ds = DisDataset(samples, size=320, cache_dir=cache)
        for _ in range(2 if cache else 1):  # second pass reads the cache
            for i, name in enumerate(SAMPLES):
                it = ds[i]
                assert it["name"] == name and it["index"] == i
                assert it["image"].dtype == torch.float32 and it["image"].shape == (5, 320, 320)
                assert it["label"].dtype == torch.float32 and it["label"].shape == (1, 320, 320)
                np.testing.assert_allclose(it["image"].numpy(), expected[f"{name}__image"], atol=1e-6, rtol=0)
                np.testing.assert_allclose(it["label"].numpy(), expected[f"{name}__label"], atol=1e-6, rtol=0)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3
    assert ds[1]["orig_hw"] == (299, 401)


def test_dataset_works_in_a_dataloader(fixtures_dir):
    ds = DisDataset(discover_split(fixtures_dir / "preprocess" / "data"), size=32, augment=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 5, 32, 32) and batch["label"].shape == (3, 1, 32, 32)
    assert batch["name"] == SAMPLES and batch["index"].tolist() == [0, 1, 2]


def test_dataset_flip_is_deterministic_per_seed_epoch_index(fixtures_dir):
    samples = discover_split(fixtures_dir / "preprocess" / "data")
    plain = DisDataset(samples, size=32)
    a = DisDataset(samples, size=32, augment=True, seed=3)
    b = DisDataset(samples, size=32, augment=True, seed=3)
    seen = set()
    for epoch in range(12):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(3):
            ia, ib = a[i], b[i]
            assert torch.equal(ia["image"], ib["image"]) and torch.equal(ia["label"], ib["label"])
            r = a.draws(i)[0]
            ref = plain[i]
            exp_img, exp_lab = flip4(r, ref["image"], ref["label"])
            assert torch.equal(ia["image"], exp_img) and torch.equal(ia["label"], exp_lab)
            seen.add(min(int(r / 0.25), 3))
    assert seen == {0, 1, 2, 3}  # all four branches occur
    c = DisDataset(samples, size=32, augment=True, seed=4)
    assert any(a.draws(i) != c.draws(i) for i in range(3))


def test_prompt_dropout(fixtures_dir):
    samples = discover_split(fixtures_dir / "preprocess" / "data")
    full = DisDataset(samples, size=32)[0]["image"]
    both = DisDataset(samples, size=32, prompt_dropout=(1.0, 1.0))[0]["image"]
    assert torch.equal(both[:3], full[:3]) and both[3:].abs().sum() == 0
    mask_only = DisDataset(samples, size=32, prompt_dropout=(1.0, 0.0))[0]["image"]
    assert mask_only[3].abs().sum() == 0 and torch.equal(mask_only[4], full[4])
    with pytest.raises(DatasetError):
        DisDataset(samples, prompt_dropout=(1.5, 0))


def test_cache_invalidated_when_a_file_or_size_changes(tmp_path):
    g = np.zeros((40, 40), np.uint8)
    g[10:30, 10:30] = 255
    split = make_split(tmp_path / "S", {"x": g})
    cache = tmp_path / "cache"
    ds = DisDataset(discover_split(split), size=16, cache_dir=cache)
    first = ds[0]
    assert len(list(cache.glob("*.pt"))) == 1
    g2 = np.zeros((40, 40), np.uint8)
    g2[0:10, 0:10] = 255
    write_png(split / "gt" / "x.png", g2)  # same name, same size, new content
    second = DisDataset(discover_split(split), size=16, cache_dir=cache)[0]
    assert not torch.equal(first["label"], second["label"])
    assert second["label"][0, :2, :2].min() == 1.0
    assert len(list(cache.glob("*.pt"))) == 2
    DisDataset(discover_split(split), size=24, cache_dir=cache)[0]
    assert len(list(cache.glob("*.pt"))) == 3
    assert not list(cache.glob(".*tmp*"))  # atomic writes leave no temp files


def test_clean_mode_box_from_sample_box_or_gt(tmp_path):
    g = np.zeros((40, 50), np.uint8)
    g[10:30, 5:45] = 255
    split = make_split(tmp_path / "S", {"x": g})
    s = discover_split(split)
    it = DisDataset(s, size=20, mode="clean")[0]
    ref = box_map_from_box((5, 10, 44, 29), (40, 50), 20).float() / 255
    assert torch.equal(it["image"][4:5], ref)
    boxed = [Sample("x", s[0].image, s[0].gt, s[0].mask, box=(0, 0, 9, 9))]
    it = DisDataset(boxed, size=20, mode="clean")[0]
    assert torch.equal(it["image"][4:5], box_map_from_box((0, 0, 9, 9), (40, 50), 20).float() / 255)
    with pytest.raises(DatasetError, match="mode"):
        DisDataset(s, mode="demo")


def test_enrichment_samples_in_the_dataset(tmp_path):
    g = gt_two_big_one_tiny()
    split = make_split(tmp_path / "TR", {"m": g})
    res = enrich_samples(discover_split(split), mask_root=split)
    for s in res.samples:  # stand-in SAM masks
        write_png(s.mask, component_gt(g, s.component))
    ds = DisDataset(discover_split(split) + res.samples, size=50)
    assert len(ds) == 4
    np.testing.assert_array_equal(ds.gt_u8(0), g)
    np.testing.assert_array_equal(ds.gt_u8(2), component_gt(g, 1))
    assert set(np.unique(ds.gt_u8(3))) == {0, 255}
    it = ds[2]
    assert it["name"] == "m_comp_1"
    # label of component 1 only: rows 2..11, cols 3..12 of a 50x60 GT squashed to 50x50
    lab = it["label"][0]
    assert lab[5, 5] == 1.0 and lab[25, 40] == 0.0
    assert it["image"][4, 25, 40] == 0.0  # the box map covers component 1 only


def test_missing_mask_raises_unless_fallback(tmp_path):
    g = np.zeros((30, 30), np.uint8)
    g[5:25, 5:25] = 255
    split = make_split(tmp_path / "S", {"x": g, "y": g}, masks=False)
    s = discover_split(split)
    with pytest.raises(DatasetError, match="2 samples have no SAM mask.*prepare-masks"):
        DisDataset(s, size=16)
    calls = []

    def fallback(gt_u8, sample):
        calls.append(sample.name)
        return gt_u8 > 0

    ds = DisDataset(s, size=16, mask_fallback=fallback)
    it = ds[1]
    assert calls == ["y"] and it["image"][3].max() == 1.0
    # the cache tells fallbacks apart by cache_token (else qualname)
    fallback.cache_token = "v1"
    k1 = DisDataset(s, size=16, mask_fallback=fallback, cache_dir=tmp_path / "c").cache_key(0)
    fallback.cache_token = "v2"
    assert DisDataset(s, size=16, mask_fallback=fallback, cache_dir=tmp_path / "c").cache_key(0) != k1


def test_dataloader_workers_give_the_same_items(fixtures_dir):
    ds = DisDataset(discover_split(fixtures_dir / "preprocess" / "data"), size=24, augment=True, seed=5)
    ds.set_epoch(2)
    ref = [ds[i] for i in range(3)]
    got = [b for batch in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2) for b in [batch]]
    for i, b in enumerate(got):
        assert torch.equal(b["image"][0], ref[i]["image"]) and torch.equal(b["label"][0], ref[i]["label"])


def test_bad_inputs_in_the_dataset(tmp_path):
    g = np.zeros((30, 30), np.uint8)
    split = make_split(tmp_path / "S", {"empty": g, "broken": g, "small": g})
    write_png(split / "mask" / "small.png", np.zeros((10, 10), np.uint8))
    (split / "im" / "broken.png").write_bytes(b"garbage")
    s = discover_split(split)
    ds = DisDataset(s, size=16)
    # empty GT: all-zero label and box map instead of the authors' crash
    it = ds[[x.name for x in s].index("empty")]
    assert it["label"].sum() == 0 and it["image"][4].sum() == 0
    with pytest.raises(ImageReadError, match="broken.png"):
        ds[[x.name for x in s].index("broken")]
    with pytest.raises(DatasetError, match="SAM mask is 10x10 but the image is 30x30"):
        ds[[x.name for x in s].index("small")]
    with pytest.raises(DatasetError, match="no ground truth"):
        DisDataset([Sample("u", s[0].image, None, s[0].mask)])
    with pytest.raises(DatasetError, match="no samples"):
        DisDataset([])


def test_io_readers_match_the_authors_reader_on_the_fixture(fixtures_dir):
    """PIL convert('RGB') + exif_transpose, channel 0 for masks (docs/data.md) == dissam.io."""
    from PIL import Image, ImageOps

    from dissam.io import read_image, read_mask

    d = fixtures_dir / "preprocess" / "data"
    for name in SAMPLES:
        ref = np.array(ImageOps.exif_transpose(Image.open(d / "im" / f"{name}.jpg").convert("RGB")))
        np.testing.assert_array_equal(read_image(d / "im" / f"{name}.jpg"), ref)
        for sub in ("gt", "mask"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = np.array(ImageOps.exif_transpose(Image.open(d / sub / f"{name}.png").convert("RGB")))[
                    :, :, 0
                ]
            np.testing.assert_array_equal(read_mask(d / sub / f"{name}.png"), ref)
