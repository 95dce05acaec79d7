"""The public API: every documented name imports from ``dissam``, lazily, and is what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dissam


def test_every_exported_name_resolves():
    for name in dissam.__all__:
        assert getattr(dissam, name) is not None, name


def test_errors_and_evaluation_are_public():
    from dissam import errors, evaluate, metrics, predictor

    assert dissam.Prediction is predictor.Prediction
    assert dissam.MetricSuite is metrics.MetricSuite and dissam.evaluate_folders is evaluate.evaluate_folders
    for name in ("CheckpointError", "ImageReadError", "BoxError", "DatasetError", "OfflineError", "TrainingError"):
        cls = getattr(dissam, name)
        assert cls is getattr(errors, name) and issubclass(cls, dissam.DisSamError)


def test_import_is_cheap():
    """``import dissam`` loads neither torch nor transformers (the CLI's --help stays instant)."""
    code = "import sys, dissam; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_typed_package_marker():
    assert (Path(dissam.__file__).parent / "py.typed").is_file()


def test_from_pretrained_without_weights_uses_the_offline_default_and_says_so(caplog):
    """The no-weights default is the command line's (the bundled U²-Netp), with the same notice."""
    with caplog.at_level("WARNING", logger="dissam"):
        pred = dissam.DisSamPredictor.from_pretrained(device="cpu")
    assert pred.sam_stage.name == "u2netp-auto"
    assert any("no SAM weights given" in r.getMessage() and r.name == "dissam" for r in caplog.records)
    assert dissam.DisSamPredictor.from_pretrained(stage1="grabcut", device="cpu").sam_stage.name == "grabcut"
    assert dissam.DisSamPredictor.from_pretrained(stage1="none", device="cpu").sam_stage is None
    with pytest.raises(dissam.DisSamError, match="needs weights"):
        dissam.DisSamPredictor.from_pretrained(stage1="sam", device="cpu")


def test_coarse_is_a_deprecated_alias_of_stage1():
    with pytest.warns(DeprecationWarning, match="stage1="):
        pred = dissam.DisSamPredictor.from_pretrained(coarse="grabcut", device="cpu")
    assert pred.sam_stage.name == "grabcut"
    with pytest.warns(DeprecationWarning):
        assert dissam.DisSamPredictor.from_pretrained(coarse="none", device="cpu").sam_stage is None
    with pytest.raises(ValueError, match="coarse must be one of"):
        dissam.DisSamPredictor.from_pretrained(coarse="sam2", device="cpu")


def test_all_lists_exactly_the_lazy_exports():
    assert sorted(dissam.__all__) == sorted([*dissam._EXPORTS, "__version__"])
