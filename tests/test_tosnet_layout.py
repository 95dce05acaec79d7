"""The TOS-Net layout (COIFT, HRSOD, ThinObject-5K as distributed): one benchmark sample per instance,
ground truths converted by the documented rules, and ``dissam benchmark`` over it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dissam.checkpoints import save_checkpoint
from dissam.cli import main
from dissam.data.tosnet import MAX_INSTANCE_IDS, convert_split, instance_values, list_entries
from dissam.errors import DatasetError
from dissam.io import read_mask
from dissam.paper_tables.protocol import discover_splits, gt_folder, split_items

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 64, 96


def _image(seed: int, mask: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    img[mask > 0] += np.array([160, 110, 50], np.uint8)
    return img


def make_tosnet(root: Path) -> Path:
    """COIFT-like (stems in the list; one mask with instances 1 and 2, one with a single object 255) and
    ThinObject-like (mask file names in the list, a soft anti-aliased mask, a train list beside the test
    list) sets under ``root``."""
    coift = root / "COIFT"
    two = np.zeros((H, W), np.uint8)
    two[8:30, 10:40] = 1
    two[34:58, 50:88] = 2
    one = np.zeros((H, W), np.uint8)
    one[12:50, 20:70] = 255
    for stem, m in (("pair", two), ("single", one)):
        (coift / "images").mkdir(parents=True, exist_ok=True)
        (coift / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(len(stem), m)).save(coift / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(m).save(coift / "masks" / f"{stem}.png")
    (coift / "list").mkdir()
    (coift / "list" / "test.txt").write_text("pair\nsingle\n\n")
    thin = root / "ThinObject5K"
    yy, xx = np.mgrid[0:H, 0:W]
    soft = np.clip(255 - 6 * np.hypot(yy - 32, xx - 48), 0, 255).astype(np.uint8)  # many grey levels
    for d in ("images", "masks", "list"):
        (thin / d).mkdir(parents=True)
    Image.fromarray(_image(7, soft)).save(thin / "images" / "wire.jpg", quality=95)
    Image.fromarray(soft).save(thin / "masks" / "wire.png")
    (thin / "list" / "test.txt").write_text("wire.png\n")
    (thin / "list" / "train.txt").write_text("other.png\n")
    return root


@pytest.fixture(scope="module")
def tosnet_root(tmp_path_factory) -> Path:
    return make_tosnet(tmp_path_factory.mktemp("tosnet"))


def test_instances_become_samples_with_converted_ground_truths(tosnet_root, tmp_path):
    samples = convert_split(tosnet_root / "COIFT", tmp_path / "gt")
    assert [(s.name, s.value) for s in samples] == [("pair_1", 1), ("pair_2", 2), ("single", 255)]
    src = read_mask(tosnet_root / "COIFT" / "masks" / "pair.png")
    for s in samples[:2]:
        assert np.array_equal(read_mask(s.gt), np.where(src == s.value, 255, 0))
        assert s.image == tosnet_root / "COIFT" / "images" / "pair.jpg"
    assert np.array_equal(read_mask(samples[2].gt), read_mask(tosnet_root / "COIFT" / "masks" / "single.png"))
    index = json.loads((tmp_path / "gt" / "instances.json").read_text())
    assert [s["value"] for s in index["samples"]] == [1, 2, 255]
    # converted once: a second call reads the index and rewrites nothing
    stamp = samples[0].gt.stat().st_mtime_ns
    assert convert_split(tosnet_root / "COIFT", tmp_path / "gt") == samples
    assert samples[0].gt.stat().st_mtime_ns == stamp

    thin = convert_split(tosnet_root / "ThinObject5K", tmp_path / "gt_thin")  # list/test.txt, not train.txt
    assert [(s.name, s.value) for s in thin] == [("wire", None)]  # a soft mask: one object, kept as it is
    assert np.array_equal(read_mask(thin[0].gt), read_mask(tosnet_root / "ThinObject5K" / "masks" / "wire.png"))


def test_instance_rule_and_layout_errors(tmp_path):
    assert instance_values(np.array([[0, 3, 3], [7, 0, 0]], np.uint8)) == [3, 7]
    assert instance_values(np.zeros((4, 4), np.uint8)) == []
    assert instance_values(np.arange(MAX_INSTANCE_IDS + 2, dtype=np.uint8).reshape(1, -1)) is None
    bad = tmp_path / "SET"
    for d in ("images", "masks", "list"):
        (bad / d).mkdir(parents=True)
    (bad / "list" / "a.txt").write_text("x\n")
    (bad / "list" / "b.txt").write_text("y\n")
    with pytest.raises(DatasetError, match="test.txt or exactly one"):
        list_entries(bad)
    (bad / "list" / "test.txt").write_text("gone\n")
    with pytest.raises(DatasetError, match="1 listed sample.*gone"):
        list_entries(bad)


def test_benchmark_reads_the_layout_one_evaluation_per_instance(tosnet_root, tmp_path, tiny_refiner):
    assert discover_splits(tosnet_root, ["COIFT", "ThinObject5K"]) == ["COIFT", "ThinObject5K"]
    run = tmp_path / "run"
    items = split_items(tosnet_root, "COIFT", run)
    assert [it.stem for it in items] == ["pair_1", "pair_2", "single"]
    assert gt_folder(tosnet_root, "COIFT", run) == run / "gt" / "COIFT"
    ck = save_checkpoint(tmp_path / "ref.safetensors", tiny_refiner, metadata={"input_size": 64})
    code = main(["benchmark", "--data", str(tosnet_root), "--splits", "COIFT,ThinObject5K", "--stage1", "grabcut",
                 "--refiner", str(ck), "--methods", "dis-sam", "sam", "--size", "64", "--device", "cpu",
                 "--metrics", "MAE", "mIoU", "--no-progress", "-o", str(run)])
    assert code == 0
    for col in ("dis-sam", "sam"):
        assert sorted(p.stem for p in (run / "predictions" / col / "COIFT").iterdir()) == ["pair_1", "pair_2", "single"]
        assert [p.stem for p in (run / "predictions" / col / "ThinObject5K").iterdir()] == ["wire"]
    table = json.loads((run / "table.json").read_text())
    assert table["n_images"] == {"COIFT": 3, "ThinObject5K": 1}
    per = json.loads((run / "per_image" / "sam" / "COIFT.json").read_text())
    assert sorted(r["name"] for r in per) == ["pair_1.png", "pair_2.png", "single.png"]
    # GrabCut fills these rectangles exactly: each instance is scored against its own ground truth only
    assert table["results"]["sam"]["COIFT"]["MAE"] == 0.0 and table["results"]["sam"]["COIFT"]["mIoU"] == 1.0
