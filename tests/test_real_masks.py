"""The hand-made ground-truth masks of the real-photo check (examples/real_masks/).

Each entry of ``examples/real_photos.json`` with a ``gt`` field must point to a committed PNG of the
photo's size that is non-empty, lies inside the entry's box, and is rebuilt bit-exactly from
``examples/real_masks/annotations.json`` by ``examples/make_real_masks.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("skimage")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTOS = json.loads((EXAMPLES / "real_photos.json").read_text())["photos"]
WITH_GT = [p for p in PHOTOS if "gt" in p]


def _maker():
    spec = importlib.util.spec_from_file_location("make_real_masks", EXAMPLES / "make_real_masks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def maker():
    return _maker()


def test_at_least_four_masks():
    assert len(WITH_GT) >= 4
    assert len({p["gt"] for p in WITH_GT}) == len(WITH_GT)


def _kept(entry, maker) -> bool:
    ann = {a["name"]: a for a in maker.load_annotations()}[Path(entry["gt"]).stem]
    return ann.get("in_repository", True)


_BUILT: dict[str, np.ndarray] = {}  # masks not kept in the repository, built once per test session


def _gt(entry, maker) -> np.ndarray:
    """The committed PNG, or (a mask not kept in the repository) the mask built from its annotation."""
    if _kept(entry, maker):
        return cv2.imread(str(EXAMPLES / entry["gt"]), cv2.IMREAD_UNCHANGED)
    if entry["gt"] not in _BUILT:
        annotations = {a["name"]: a for a in maker.load_annotations()}
        stem = Path(entry["gt"]).stem
        _BUILT[entry["gt"]] = maker.build_mask(annotations[stem], maker.load_photo(entry["image"]), annotations)
    return _BUILT[entry["gt"]].copy()


@pytest.mark.parametrize("entry", WITH_GT, ids=[Path(p["gt"]).stem for p in WITH_GT])
def test_mask_file_and_rebuild(entry, maker):
    path = EXAMPLES / entry["gt"]
    annotations = {a["name"]: a for a in maker.load_annotations()}
    ann = annotations[path.stem]
    assert ann["image"] == entry["image"] and ann["box"] == entry["box"]
    if ann.get("in_repository", True):
        assert path.is_file(), path
    gt = _gt(entry, maker)
    assert gt is not None and gt.ndim == 2 and gt.dtype == np.uint8
    assert set(np.unique(gt)) <= {0, 255}
    photo = maker.load_photo(entry["image"])
    assert gt.shape == photo.shape[:2]
    assert (gt > 0).sum() > 500
    x0, y0, x1, y1 = entry["box"]
    outside = gt.copy()
    outside[y0:y1 + 1, x0:x1 + 1] = 0
    assert not outside.any(), "mask pixels outside the entry's box"

    rebuilt = maker.build_mask(ann, photo, annotations)
    assert rebuilt.dtype == np.uint8 and rebuilt.shape == gt.shape
    assert np.array_equal(rebuilt, gt)


def test_masks_of_one_photo_do_not_overlap(maker):
    by_image: dict[str, list[np.ndarray]] = {}
    for p in WITH_GT:
        by_image.setdefault(p["image"], []).append(_gt(p, maker) > 0)
    for masks in by_image.values():
        total = np.sum(masks, axis=0)
        assert total.max() <= 1


def test_not_kept_masks_are_git_ignored(maker):
    """A mask whose source states no licence is built, never committed: its PNG path is git-ignored."""
    ignore = (EXAMPLES.parent / ".gitignore").read_text().splitlines()
    not_kept = [a["name"] for a in maker.load_annotations() if not a.get("in_repository", True)]
    assert not_kept == ["motorcycle_motorcycle"]
    for name in not_kept:
        assert f"/examples/real_masks/{name}.png" in ignore


def test_disparity_mask_follows_the_depth_edges(maker):
    """The motorcycle's mask is the ground-truth disparity's foreground: wherever the disparity is valid
    (outside the kickstand foot's own polygon), the mask is exactly the pixels in front of both the
    background (> 32 px) and the floor plane (by > 1 px), so nothing of the wall, shelves or floor
    leaks in, and the floor seen between the front wheel's spokes stays background."""
    entry = next(p for p in WITH_GT if p["image"] == "stereo_motorcycle")
    ann = {a["name"]: a for a in maker.load_annotations()}["motorcycle_motorcycle"]
    gt = _gt(entry, maker) > 0
    d = maker.load_disparity("stereo_motorcycle")
    valid = np.isfinite(d)
    assert 0.03 < (~valid).mean() < 0.15
    assert 0.25 < gt.mean() < 0.35  # the motorcycle covers about 29 % of the photo
    a, b, c = ann["ops"][0]["plane"]
    yy, xx = np.mgrid[0 : d.shape[0], 0 : d.shape[1]]
    with np.errstate(invalid="ignore"):
        expected = (d > 32) & (d > a * xx + b * yy + c + 1.0)
    x0, y0, x1, y1 = entry["box"]
    sel = np.zeros_like(gt)
    sel[y0 : y1 + 1, x0 : x1 + 1] = True
    sel[418:439, 318:347] = False  # the foot plate's polygon
    sel &= valid
    assert sel.sum() > 200_000 and np.array_equal(gt[sel], expected[sel])
    wheel = (~gt[300:450, 510:690]).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(wheel, connectivity=4)
    edge = set(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]).tolist())
    gaps = [i for i in range(1, n) if i not in edge and stats[i, cv2.CC_STAT_AREA] >= 200]
    assert len(gaps) >= 4


def test_fill_invalid_votes_by_colour(maker):
    """An invalid pixel takes the label of the valid neighbours it looks like, not of the nearest ones."""
    image = np.zeros((5, 9, 3), np.uint8)
    image[:, :4] = 200  # bright object on the left, dark background on the right
    mask = np.zeros((5, 9), bool)
    mask[:, :3] = True
    valid = np.ones((5, 9), bool)
    valid[:, 3:5] = False  # one bright and one dark column without disparity
    out = maker._fill_invalid(mask, image, valid, radius=3, sigma_colour=20, sigma_space=2)
    assert out[:, 3].all() and not out[:, 4].any()
    assert np.array_equal(out[:, :3], mask[:, :3]) and not out[:, 5:].any()


def test_gt_measures_scores_and_flip_precision():
    """benchmarks/real_photo_check.py's scoring on a hand-computable case: stage 1 misses 4 of the 16
    GT pixels; the refiner draws back 2 of them (right) and adds 2 background pixels (wrong)."""
    spec = importlib.util.spec_from_file_location(
        "real_photo_check", EXAMPLES.parent / "benchmarks" / "real_photo_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    gt = np.zeros((16, 16), np.uint8)
    gt[4:8, 4:8] = 255  # 16 px
    coarse = gt > 0
    coarse[4, 4:8] = False  # stage 1 misses one row: IoU 12/16
    soft = coarse.astype(np.float32)
    soft[4, 4:6] = 0.9  # two missed pixels drawn back
    soft[10, 10:12] = 0.8  # two background pixels added
    m = check.gt_measures(coarse, soft, gt)
    assert m["s1_iou"] == pytest.approx(12 / 16)
    assert m["ref_iou"] == pytest.approx(14 / 18)
    assert m["s1_mae"] == pytest.approx(4 / 256)
    assert m["ref_mae"] == pytest.approx((2 * 0.1 + 2 * 1.0 + 2 * 0.8) / 256, abs=1e-6)
    assert m["flips"] == 4 and m["flips_right"] == 2


def test_paired_bootstrap_interval():
    """benchmarks/builtin_compare.py's interval of a mean change: exact for constant changes, around
    the mean otherwise, reproducible, and narrower with more entries of the same spread."""
    spec = importlib.util.spec_from_file_location(
        "builtin_compare", EXAMPLES.parent / "benchmarks" / "builtin_compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)  # it finds real_photo_check beside itself
    assert compare.paired_ci([0.002] * 5) == pytest.approx((0.002, 0.002, 0.002))
    deltas = [-0.004, 0.001, 0.002, -0.001, 0.003]
    mean, lo, hi = compare.paired_ci(deltas)
    assert mean == pytest.approx(0.0002) and min(deltas) <= lo < mean < hi <= max(deltas)
    assert compare.paired_ci(deltas) == (mean, lo, hi)
    _, lo30, hi30 = compare.paired_ci(deltas * 30)
    assert hi30 - lo30 < (hi - lo) / 3


def test_whole_pipeline_on_generated_runs_each_stage1_and_refines_its_mask(monkeypatch):
    """benchmarks/builtin_compare.py's ``generated-stage1`` set: each stage 1 is run on each image,
    scored alone, and its mask (not the item's) is what every candidate refines."""
    from types import SimpleNamespace

    import dissam.stages as stages

    spec = importlib.util.spec_from_file_location(
        "builtin_compare", EXAMPLES.parent / "benchmarks" / "builtin_compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)

    class LeftHalf:  # a stage 1 that finds the left half of the box
        name = "left-half"

        def set_image(self, image):
            self.shape = image.shape[:2]

        def coarse_masks(self, boxes):
            x0, y0, x1, y1 = (int(v) for v in boxes[0])
            m = np.zeros(self.shape, bool)
            m[y0 : y1 + 1, x0 : x0 + (x1 - x0 + 1) // 2] = True
            return m[None]

    class FillTheBox:  # a candidate that fills the box, and records the coarse masks it was given
        seen: list = []

        def set_image(self, image):
            self.shape = image.shape[:2]
            return self

        def predict(self, box, coarse_mask):
            self.seen.append(np.asarray(coarse_mask).copy())
            x0, y0, x1, y1 = (int(v) for v in box)
            soft = np.zeros(self.shape, np.float32)
            soft[y0 : y1 + 1, x0 : x1 + 1] = 1.0
            return SimpleNamespace(soft=soft)

    monkeypatch.setattr(stages, "load_stage1", lambda kind: LeftHalf())
    items = []
    for x0 in (4, 10):
        gt = np.zeros((32, 32), np.uint8)
        gt[8:24, x0 : x0 + 16] = 255  # 256 px; the stage finds 128 of them
        items.append((np.zeros((32, 32, 3), np.uint8), gt, np.array([x0, 8, x0 + 15, 23], float),
                      np.full((32, 32), 255, np.uint8)))  # the item's own mask must not be used
    candidate = FillTheBox()
    out = compare.stage1_suite_scores({"fill": candidate}, items, ["left-half"])
    assert set(out) == {"left-half"} and set(out["left-half"]) == {"stage 1", "fill"}
    assert out["left-half"]["stage 1"]["MAE"] == pytest.approx(128 / 1024)
    assert out["left-half"]["fill"]["MAE"] == 0 and out["left-half"]["fill"]["mIoU"] == pytest.approx(1.0)
    assert len(candidate.seen) == 2 and all((m > 0).sum() == 128 for m in candidate.seen)
