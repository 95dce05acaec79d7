"""The paper's metrics against the official driver's numbers (tests/fixtures/metrics)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dissam.errors import DisSamError
from dissam.metrics import (
    ALL_METRICS,
    CURVE_THRESHOLDS,
    MetricSuite,
    compute_image,
    evaluate_arrays,
    gt_skeleton,
    hce,
    iou_and_boundary_iou,
    mask_to_boundary,
)

# fixture per-image key -> our key
KEYS = {
    "maxF": "maxFm",
    "wF": "wFmeasure",
    "MAE": "MAE",
    "S": "Smeasure",
    "meanE": "meanEm",
    "HCE": "HCE",
    "IoU": "mIoU",
    "BIoU": "mBIoU",
}
TOL = 1e-6  # tests/fixtures/README.md


@pytest.fixture(scope="module")
def expected(fixtures_dir):
    return json.loads((fixtures_dir / "metrics" / "expected.json").read_text())


@pytest.fixture(scope="module")
def pairs(fixtures_dir, expected):
    out = []
    for row in expected["per_image"]:
        pred = cv2.imread(str(fixtures_dir / "metrics" / "pred" / row["name"]), cv2.IMREAD_GRAYSCALE)
        gt = cv2.imread(str(fixtures_dir / "metrics" / "gt" / row["name"]), cv2.IMREAD_GRAYSCALE)
        out.append((row["name"], pred, gt))
    return out


@pytest.fixture(scope="module")
def suite(pairs):
    s = MetricSuite(gt_skeleton_cache={})
    for name, pred, gt in pairs:
        s.step(pred, gt, name=name)
    return s


def _opencv_matches_fixture(expected) -> bool:
    return cv2.__version__.split(".")[:2] == expected["computed_with"]["opencv"].split(".")[:2]


def test_per_image_values_match_official_driver(suite, expected):
    got = {r["name"]: r for r in suite.per_image()}
    assert len(got) == len(expected["per_image"]) == 18
    for row in expected["per_image"]:
        for fkey, key in KEYS.items():
            if key == "HCE":
                continue
            assert got[row["name"]][key] == pytest.approx(row[fkey], abs=TOL), (row["name"], key)


def test_hce_exact_with_fixture_opencv(suite, expected):
    if not _opencv_matches_fixture(expected):
        pytest.skip(
            f"HCE fixture made with OpenCV {expected['computed_with']['opencv']}, have {cv2.__version__}"
        )
    got = {r["name"]: r["HCE"] for r in suite.per_image()}
    assert got == {row["name"]: float(row["HCE"]) for row in expected["per_image"]}
    assert suite.results()["HCE"] == expected["aggregate"]["HCE"]


def test_aggregate_matches_official_driver(suite, expected):
    agg = suite.results()
    assert list(agg) == list(ALL_METRICS)
    for key in ALL_METRICS:
        if key == "HCE" and not _opencv_matches_fixture(expected):
            continue
        assert agg[key] == pytest.approx(expected["aggregate"][key], abs=TOL), key


def test_maxfm_is_max_of_mean_curve_not_mean_of_max(suite):
    agg = suite.results()
    per = suite.per_image()
    mean_of_max = np.mean([r["maxFm"] for r in per])
    curves = suite.curves()
    assert agg["maxFm"] == curves["fm"].max()
    assert agg["meanEm"] == pytest.approx(curves["em"].mean(), abs=0)
    assert agg["maxFm"] < mean_of_max  # the two definitions differ on this set
    for key in ("fm", "precision", "recall", "em"):
        assert curves[key].shape == (256,) and curves[key].dtype == np.float64
    assert curves["thresholds"][0] == 255 and curves["thresholds"][-1] == 0
    assert np.array_equal(curves["thresholds"], CURVE_THRESHOLDS)
    # recall grows as the threshold falls
    assert np.all(np.diff(curves["recall"]) >= -1e-12)


def test_edge_cases(suite):
    got = {r["name"]: r for r in suite.per_image()}
    assert got["14_empty_gt.png"]["wFmeasure"] == 0.0 and got["14_empty_gt.png"]["mIoU"] == 0.0
    assert got["15_full_gt.png"]["mIoU"] == 1.0 and got["15_full_gt.png"]["HCE"] == 0
    assert got["16_empty_pred.png"]["mIoU"] == 0.0 and got["16_empty_pred.png"]["mBIoU"] == 0.0
    assert np.isfinite(list(got["17_constant_pred.png"].values())[1:]).all()


def test_subset_and_evaluate_arrays(pairs, suite):
    preds = [p for _, p, _ in pairs]
    gts = [g for _, _, g in pairs]
    fast = evaluate_arrays(preds, gts, metrics=("MAE", "maxFm"))
    assert list(fast) == ["maxFm", "MAE"]  # paper order
    full = suite.results()
    assert fast["maxFm"] == full["maxFm"] and fast["MAE"] == full["MAE"]
    s = MetricSuite(("mIoU",))
    row = s.step(preds[0], gts[0], name="a")
    assert set(row) == {"name", "mIoU"}
    assert s.curves().keys() == {"thresholds"}


def test_unknown_metric_and_bad_inputs():
    with pytest.raises(DisSamError, match="unknown metric"):
        MetricSuite(("maxF",))
    s = MetricSuite(("MAE",))
    with pytest.raises(DisSamError, match="resize"):
        s.step(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8))
    with pytest.raises(DisSamError, match="uint8"):
        s.step(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(DisSamError, match="no image"):
        s.results()


def test_hce_with_skeleton_equals_pysodmetrics(pairs):
    """Our skeleton-injecting HCE path equals pysodmetrics' own cal_hce (fixtures + random masks)."""
    rng = np.random.default_rng(0)
    cases = [(p, g) for _, p, g in pairs]
    for _ in range(6):
        g = np.zeros((90, 110), np.uint8)
        cv2.circle(g, tuple(int(v) for v in rng.integers(20, 80, 2)), int(rng.integers(8, 30)), 255, -1)
        cv2.line(g, (5, 5), tuple(int(v) for v in rng.integers(30, 90, 2)), 255, 1)
        p = cv2.GaussianBlur(g, (7, 7), 3)
        p = np.clip(p.astype(int) + rng.integers(-90, 90, p.shape), 0, 255).astype(np.uint8)
        cases.append((p, g))
    for p, g in cases:
        skel = gt_skeleton(g > 128)
        assert hce(p, g, skeleton=skel) == hce(p, g)


def test_hce_binarises_at_strictly_greater_than_128():
    gt = np.zeros((40, 40), np.uint8)
    gt[10:30, 10:30] = 255
    at_128 = np.where(gt > 0, 128, 0).astype(np.uint8)  # everything at 128: nothing predicted
    assert hce(at_128, gt) == hce(np.zeros_like(gt), gt) > 0
    assert hce(np.where(gt > 0, 129, 0).astype(np.uint8), gt) == 0


def test_skeleton_cache_folder(tmp_path, pairs):
    name, pred, gt = pairs[5]
    a = compute_image(pred, gt, name, metrics=("HCE",), gt_skeleton_cache=tmp_path)
    files = list(tmp_path.glob("*.png"))
    assert len(files) == 1
    cached = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE) > 128
    assert np.array_equal(cached, gt_skeleton(gt > 128))
    b = compute_image(pred, gt, name, metrics=("HCE",), gt_skeleton_cache=tmp_path)
    assert a.values == b.values == {"HCE": float(hce(pred, gt))}


def test_iou_conventions():
    gt = np.zeros((50, 60), np.uint8)
    gt[10:30, 10:40] = 255
    assert iou_and_boundary_iou(gt, gt) == (1.0, 1.0)
    assert iou_and_boundary_iou(np.zeros_like(gt), gt) == (0.0, 0.0)
    # >= 128 is foreground for mIoU (HCE uses > 128)
    assert iou_and_boundary_iou(np.where(gt > 0, 128, 0).astype(np.uint8), gt) == (1.0, 1.0)
    assert iou_and_boundary_iou(np.where(gt > 0, 127, 0).astype(np.uint8), gt) == (0.0, 0.0)
    half = gt.copy()
    half[10:30, 25:40] = 0
    iou, _ = iou_and_boundary_iou(half, gt)
    assert iou == pytest.approx(0.5)
    # boundary band: width round(0.02 * diagonal) = 2 here, image border counts as background
    band = mask_to_boundary((gt > 0).astype(np.uint8))
    assert band[10:12, 10:40].all() and band[14:26, 14:36].sum() == 0
    full = mask_to_boundary(np.ones((50, 60), np.uint8))
    assert full[0].all() and full[:, -1].all() and not full[5:45, 5:55].any()


def test_s_measure_is_finite_when_the_centroid_is_on_the_last_column():
    """A ground truth whose pixels all sit in the last column puts the centroid split at the border:
    the empty parts weigh nothing (SOCToolbox would turn them into NaN)."""
    from dissam.metrics.soc import normalize_pair, s_measure

    gt = np.zeros((20, 30), np.uint8)
    gt[5:15, -1] = 255
    for pred in (gt, np.full_like(gt, 40), np.zeros_like(gt)):
        s = s_measure(*normalize_pair(pred, gt))
        assert np.isfinite(s) and 0.0 <= s <= 1.0
    assert s_measure(*normalize_pair(gt, gt)) == pytest.approx(1.0, abs=1e-6)


def test_metrics_use_only_pysodmetrics_published_names():
    """dissam.metrics reads no private pysodmetrics name (the pin can follow its releases)."""
    import ast
    from pathlib import Path

    import dissam.metrics

    for path in Path(dissam.metrics.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("py_sod_metrics"):
                assert node.module == "py_sod_metrics", f"{path.name} imports from {node.module}"
                assert all(not a.name.startswith("_") for a in node.names)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "psm":
                assert not node.attr.startswith("_"), f"{path.name} uses psm.{node.attr}"
