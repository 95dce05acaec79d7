"""dissam prepare-masks: whole-GT box prompts, one embedding per image, resumable, sharded, enrichment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import gt_two_big_one_tiny, make_split

from dissam.data.enrich import read_manifest
from dissam.data.layout import discover_split
from dissam.data.prepare import prepare_masks, split_dirs, summarise
from dissam.errors import DatasetError
from dissam.io import read_mask, write_png


class FakeStage:
    """The SamStage API (set_image, coarse_masks, encoder_calls): each mask is its box, filled."""

    def __init__(self):
        self.encoder_calls = 0
        self.boxes: list[list[tuple]] = []
        self.hw = None

    def set_image(self, image):
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        self.hw = image.shape[:2]
        self.encoder_calls += 1
        return self

    def coarse_masks(self, boxes, selection="first"):
        boxes = np.asarray(boxes)
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and selection == "first"
        self.boxes.append([tuple(int(v) for v in b) for b in boxes])
        out = np.zeros((len(boxes), *self.hw), bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            out[i, y0 : y1 + 1, x0 : x1 + 1] = True
        return out


def single_gt() -> np.ndarray:
    g = np.zeros((50, 60), np.uint8)
    g[5:20, 8:30] = 255
    g[45:47, 50:52] = 255  # dropped speck: excluded from the SAM prompt
    return g


def box_mask(hw, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = np.zeros(hw, np.uint8)
    m[y0 : y1 + 1, x0 : x1 + 1] = 255
    return m


def test_whole_gt_box_prompts_and_resume(tmp_path):
    split = make_split(tmp_path / "S", {"multi": gt_two_big_one_tiny(), "single": single_gt()}, masks=False)
    st = FakeStage()
    rep = prepare_masks(split, st, progress=False)
    assert (rep.images, rep.encoded, rep.skipped, len(rep.written)) == (2, 2, 0, 2)
    assert st.encoder_calls == 2
    # multi-component: the box of the whole binarised GT (speck included); single: its component's box
    assert st.boxes == [[(3, 2, 49, 46)], [(8, 5, 29, 19)]]
    np.testing.assert_array_equal(read_mask(split / "mask" / "multi.png"), box_mask((50, 60), (3, 2, 49, 46)))
    np.testing.assert_array_equal(
        read_mask(split / "mask" / "single.png"), box_mask((50, 60), (8, 5, 29, 19))
    )
    mtimes = {p: p.stat().st_mtime_ns for p in (split / "mask").iterdir()}
    st2 = FakeStage()
    rep2 = prepare_masks(split, st2, progress=False)
    assert (rep2.encoded, rep2.skipped, rep2.written) == (0, 2, [])
    assert st2.encoder_calls == 0
    assert {p: p.stat().st_mtime_ns for p in (split / "mask").iterdir()} == mtimes
    assert len(discover_split(split, require_masks=True)) == 2
    # a source string is not loaded when there is nothing to do
    assert prepare_masks(split, str(tmp_path / "no-such-sam.pth"), progress=False).written == []


def test_enrich_one_embedding_per_image_batched_boxes(tmp_path):
    split = make_split(tmp_path / "S", {"multi": gt_two_big_one_tiny(), "single": single_gt()}, masks=False)
    st = FakeStage()
    rep = prepare_masks(split, st, enrich=True, progress=False)
    assert st.encoder_calls == 2 and rep.encoded == 2
    # one batched call per image; identical boxes (whole == comp_0, single == comp_1) deduplicated
    assert st.boxes == [[(3, 2, 49, 46), (3, 2, 12, 11), (30, 20, 49, 29)], [(8, 5, 29, 19)]]
    comp = split / "mask_comp"
    assert sorted(p.name for p in comp.iterdir()) == [
        "multi_comp_0.png",
        "multi_comp_1.png",
        "multi_comp_2.png",
        "single_comp_1.png",
    ]
    np.testing.assert_array_equal(read_mask(comp / "multi_comp_2.png"), box_mask((50, 60), (30, 20, 49, 29)))
    assert (read_mask(comp / "multi_comp_0.png") == read_mask(split / "mask" / "multi.png")).all()
    assert rep.manifests == [split / "enrich.json"] and rep.extra_samples == 2
    samples = read_manifest(split / "enrich.json")
    assert [s.name for s in samples] == ["multi_comp_0", "multi_comp_1", "multi_comp_2", "single_comp_1"]
    assert all(s.mask.is_file() for s in samples)
    # resumable: a deleted component mask is the only thing recomputed, with one embedding
    (comp / "multi_comp_1.png").unlink()
    st2 = FakeStage()
    rep2 = prepare_masks(split, st2, enrich=True, progress=False)
    assert st2.encoder_calls == 1 and st2.boxes == [[(3, 2, 12, 11)]]
    assert rep2.written == [comp / "multi_comp_1.png"] and rep2.manifests == []
    st3 = FakeStage()
    assert prepare_masks(split, st3, enrich=True, progress=False).written == [] and st3.encoder_calls == 0


def test_sharding_covers_every_image_once(tmp_path):
    gts = {f"im{i:02d}": single_gt() for i in range(7)}
    make_split(tmp_path / "D" / "A", gts, masks=False)
    make_split(tmp_path / "D" / "B", dict(list(gts.items())[:4]), masks=False)
    reps = [prepare_masks(tmp_path / "D", FakeStage(), rank=r, world_size=2, progress=False) for r in (0, 1)]
    written = [p for r in reps for p in r.written]
    assert len(written) == len(set(written)) == 11
    assert (reps[0].images, reps[1].images) == (6, 5)
    assert sorted(written) == sorted((tmp_path / "D").glob("*/mask/*.png"))


def test_sharding_from_torchrun_env(tmp_path, monkeypatch):
    make_split(tmp_path / "S", {f"x{i}": single_gt() for i in range(3)}, masks=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rep = prepare_masks(tmp_path / "S", FakeStage(), progress=False)
    assert rep.written == [tmp_path / "S" / "mask" / "x1.png"]
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(Exception, match="RANK=2"):
        prepare_masks(tmp_path / "S", FakeStage(), progress=False)


def test_bad_inputs(tmp_path):
    g = single_gt()
    split = make_split(tmp_path / "S", {"a": g, "b": g, "empty": np.zeros((50, 60), np.uint8)}, masks=False)
    # empty GT: an all-zero mask, reported, no SAM call
    st = FakeStage()
    (split / "gt" / "b.png").unlink()
    with pytest.raises(DatasetError, match="1 images have no ground truth.*b"):
        prepare_masks(split, st, progress=False)
    write_png(split / "gt" / "b.png", g)
    (split / "im" / "b.png").write_bytes(b"broken")
    with pytest.warns(UserWarning):
        rep = prepare_masks(split, st, progress=False)
    # the unreadable image is reported and the others are still done
    assert [Path(n).name for n, _ in rep.failed] == ["b.png"] and "cannot read image" in rep.failed[0][1]
    assert (split / "mask" / "a.png").is_file() and not (split / "mask" / "b.png").exists()
    assert rep.empty_gt and "empty.png" in rep.empty_gt[0]
    assert read_mask(split / "mask" / "empty.png").max() == 0
    assert "1 image(s) failed" in summarise(rep)
    write_png(split / "im" / "b.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.warns(UserWarning, match="10x10"):
        rep = prepare_masks(split, st, progress=False)
    assert len(rep.failed) == 1 and "10x10" in rep.failed[0][1]
    write_png(split / "im" / "b.png", np.zeros((50, 60, 3), np.uint8))
    st = FakeStage()
    rep = prepare_masks(split, st, progress=False)
    assert st.encoder_calls == 1 and rep.skipped == 2 and not rep.failed  # only b was left to do
    assert (split / "mask" / "b.png").is_file()
    with pytest.raises(DatasetError, match="not found"):
        split_dirs(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="no im/"):
        split_dirs(tmp_path / "plain")


def test_real_tiny_sam_and_cli(tmp_path, tiny_sam_path, capsys):
    """The real SAM stage (tests/fixtures/sam tiny weights) through the command line."""
    from dissam.cli import main

    split = make_split(tmp_path / "S", {"multi": gt_two_big_one_tiny(), "single": single_gt()}, masks=False)
    argv = [
        "prepare-masks",
        str(split),
        "--sam",
        str(tiny_sam_path),
        "--device",
        "cpu",
        "--enrich",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 encoded" in out and "6 masks written" in out and "2 extra samples" in out
    for p in list((split / "mask").iterdir()) + list((split / "mask_comp").iterdir()):
        m = read_mask(p)
        assert m.shape == (50, 60) and set(np.unique(m)) <= {0, 255}
    assert main(argv) == 0
    assert "0 encoded, 2 already done, 0 masks written" in capsys.readouterr().out
