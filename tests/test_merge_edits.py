"""The coarse/refined merge of a calibrated refiner (dissam.refiner.merge_edits) and how the predictor
and the CLI apply it: only refiners whose checkpoint records ``edit_threshold`` (the built-in model)."""

from __future__ import annotations

import numpy as np
import pytest

from dissam.checkpoints import save_checkpoint
from dissam.errors import DisSamError
from dissam.hub.loading import load_refiner
from dissam.predictor import DisSamPredictor
from dissam.refiner import merge_edits


def test_merge_keeps_coarse_unless_confidently_edited():
    soft = np.array([[0.95, 0.6, 0.1, 0.45], [0.2, 0.85, 0.5, 0.0]], np.float32)
    coarse = np.array([[0, 0, 1, 1], [1, 1, 0, 0]], bool)
    out = merge_edits(soft, coarse, 0.7)
    # edits where |soft - coarse| > 0.7: (0,0) 0.95 vs 0 and (0,2) 0.1 vs 1 and (1,0) 0.2 vs 1
    expected = np.array([[0.95, 0, 0.1, 1], [0.2, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32
    # 0.5: every flip of the decision is an edit; 0: the refined map itself
    np.testing.assert_array_equal(merge_edits(soft, coarse, 0.5) > 0.5, soft > 0.5)
    np.testing.assert_array_equal(merge_edits(soft, coarse, 0.0), soft)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        merge_edits(soft, coarse, 1.0)
    with pytest.raises(ValueError, match="shape"):
        merge_edits(soft, coarse[:1], 0.5)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_refiner):
    d = tmp_path_factory.mktemp("cal")
    plain = save_checkpoint(d / "plain.safetensors", tiny_refiner, metadata={"input_size": 64})
    cal = save_checkpoint(d / "cal.safetensors", tiny_refiner, metadata={"input_size": 64, "edit_threshold": 0.6})
    return load_refiner(plain), load_refiner(cal), cal


def test_predictor_applies_only_a_recorded_calibration(calibrated):
    plain, cal, _ = calibrated
    assert plain.edit_threshold is None and cal.edit_threshold == 0.6
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    coarse = np.zeros((48, 64), np.uint8)
    coarse[10:40, 12:50] = 255
    box = [10, 8, 52, 42]
    raw = DisSamPredictor(None, plain).set_image(image).predict(box=box, coarse_mask=coarse).soft
    merged = DisSamPredictor(None, cal).set_image(image).predict(box=box, coarse_mask=coarse).soft
    np.testing.assert_array_equal(merged, merge_edits(raw, coarse > 127, 0.6))
    off = DisSamPredictor(None, cal, edit_threshold=None).set_image(image).predict(box=box, coarse_mask=coarse)
    np.testing.assert_array_equal(off.soft, raw)  # the raw refined map on request
    forced = DisSamPredictor(None, plain, edit_threshold=0.9).set_image(image).predict(box=box, coarse_mask=coarse)
    np.testing.assert_array_equal(forced.soft, merge_edits(raw, coarse > 127, 0.9))
    with pytest.raises(DisSamError, match="edit_threshold"):
        DisSamPredictor(None, plain, edit_threshold=1.5)


def test_cli_edit_threshold_values():
    from dissam.commands.predict import parse_edit_threshold

    assert parse_edit_threshold("auto") == "auto"
    assert parse_edit_threshold("None") is None
    assert parse_edit_threshold("0.7") == 0.7
    for bad in ("1", "-0.1", "high"):
        with pytest.raises(DisSamError, match="--edit-threshold"):
            parse_edit_threshold(bad)
