"""The built-in refiner shipped in the package (docs/experiments.md: the first model trained with
configs/builtin_compact.yaml on generated data, then fine-tuned on generated and photo-like data,
scripts/train_builtin.sh): it loads, and on a fixed generated test set it improves on the coarse
masks it is given. Thresholds come from measured values with a margin (docs/experiments.md)."""

from __future__ import annotations

import pytest

from dissam.coarse import degrade_mask
from dissam.data.synthetic import generate_sample
from dissam.metrics import MetricSuite
from dissam.predictor import BUILTIN_REFINER, DisSamPredictor
from dissam.transforms import to_authors_png

pytestmark = pytest.mark.skipif(not BUILTIN_REFINER.is_file(), reason="built-in weights not installed")

N = 24
SEED = 12345  # not a training seed (train 1, val 2, test 3)


@pytest.fixture(scope="module")
def scores():
    """Scores of the shipped pipeline (the calibrated merge), of the network's raw maps and of the
    coarse masks, on the same 24 generated images."""
    pred = DisSamPredictor.from_pretrained(sam=None, refiner=None, device="cpu", stage1="grabcut")
    metrics = ("maxFm", "Smeasure", "HCE", "mIoU", "MAE")
    shipped, raw, coarse = MetricSuite(metrics), MetricSuite(metrics), MetricSuite(metrics)
    for i in range(N):
        image, gt, box = generate_sample(i, seed=SEED, size_range=(320, 448))
        cm = degrade_mask(gt, seed=i)
        pred.edit_threshold = pred.refiner.edit_threshold
        shipped.step(to_authors_png(pred.set_image(image).predict(box=box, coarse_mask=cm).soft), gt)
        pred.edit_threshold = None
        raw.step(to_authors_png(pred.predict(box=box, coarse_mask=cm).soft), gt)
        coarse.step(cm, gt)
    return shipped.results(), raw.results(), coarse.results(), pred


def test_builtin_model_loads_with_its_size_and_calibration(scores):
    *_, pred = scores
    assert pred.size == 384 and pred.refiner.in_ch == 5
    assert sum(p.numel() for p in pred.refiner.net.parameters()) == 2_764_246
    assert BUILTIN_REFINER.stat().st_size < 20 * 2**20
    assert pred.refiner.edit_threshold == 0.6
    assert DisSamPredictor.from_pretrained(sam=None, refiner=None, device="cpu", stage1="grabcut").edit_threshold == 0.6


def test_builtin_network_beats_its_coarse_masks(scores):
    """The network's own maps (no merge). Measured (step 900 of the photo-like fine-tuning,
    docs/experiments.md): maxF 0.850 vs 0.799 for the coarse masks, S 0.899 vs 0.810, mIoU 0.723 vs
    0.645. The thresholds are the first built-in model's (each kept at least a third of its gain)."""
    _, raw, coarse, _ = scores
    assert raw["maxFm"] > coarse["maxFm"] + 0.02
    assert raw["Smeasure"] > coarse["Smeasure"] + 0.05
    assert raw["mIoU"] > coarse["mIoU"] + 0.02


def test_builtin_pipeline_beats_its_coarse_masks(scores):
    """What `dissam predict` returns (the merge at the calibrated threshold 0.6). Measured: maxF
    0.838 vs 0.799, mIoU 0.692 vs 0.645, HCE 232.2 vs 243.6 (-4.7 %), MAE 0.0327 vs 0.0353, S 0.836
    vs 0.810. HCE's threshold is the first built-in model's; the network alone no longer meets it on
    this set (HCE 253.7, docs/experiments.md), the merge does."""
    shipped, _, coarse, _ = scores
    assert shipped["maxFm"] > coarse["maxFm"] + 0.02
    assert shipped["mIoU"] > coarse["mIoU"] + 0.02
    assert shipped["HCE"] < coarse["HCE"] * 0.98  # fewer human corrections than the coarse masks
    assert shipped["MAE"] < coarse["MAE"]
    assert shipped["Smeasure"] > coarse["Smeasure"] + 0.01
