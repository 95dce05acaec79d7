"""Registry names where models are opened: load_sam, load_refiner, DisSamPredictor and `dissam predict`."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from hub_helpers import write_registry  # noqa: I001

from dissam import load_refiner
from dissam.cli import main
from dissam.errors import DownloadError, OfflineError
from dissam.hub import get_entry, models_dir, resolve_sam_source
from dissam.hub.verify import verify_file
from dissam.io import write_png
from dissam.predictor import BUILTIN_REFINER, DisSamPredictor, GrabCutStage
from dissam.stages.sam import load_sam


@pytest.fixture
def home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    monkeypatch.setenv("DISSAM_HOME", str(root))
    for key in list(os.environ):
        if key.startswith("DISSAM_URL_") or key in ("DISSAM_MIRROR", "DISSAM_REGISTRY", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DISSAM_OFFLINE", "1")  # nothing here may reach for the network
    return root


def test_load_refiner_by_name_is_the_builtin_model(home):
    by_name = load_refiner("dis-sam-compact").net.state_dict()
    by_path = load_refiner(BUILTIN_REFINER).net.state_dict()
    assert all(torch.equal(by_name[k], v) for k, v in by_path.items())


def test_load_sam_by_a_registered_name_uses_the_cached_file(home, tiny_sam_path):
    write_registry(home, {"tiny-sam": {"role": "sam", "filename": "sam_tiny.pth", "check": "sam:tiny"}})
    models_dir().mkdir(parents=True)
    shutil.copy(tiny_sam_path, models_dir() / "sam_tiny.pth")
    # (loading the file itself is test_sam.py's business; the hook only turns the name into this path)
    assert resolve_sam_source("tiny-sam") == str(models_dir() / "sam_tiny.pth")
    assert verify_file(get_entry("tiny-sam"), models_dir() / "sam_tiny.pth").checks[-1].startswith("SAM tiny: hidden 64, 2 blocks")


def test_load_sam_by_name_offline_names_the_url_and_the_cache_path(home):
    with pytest.raises(OfflineError) as info:
        load_sam("sam-vit-l")
    msg = str(info.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth" in msg
    assert str(models_dir() / "sam_vit_l_0b3195.pth") in msg


def test_predictor_demo_preset_is_u2netp_with_the_builtin_refiner(home):
    pytest.importorskip("onnxruntime")
    pred = DisSamPredictor.from_pretrained(model="demo")
    assert pred.sam_stage.name == "u2netp-auto"
    assert pred.size == load_refiner(BUILTIN_REFINER).input_size
    assert isinstance(DisSamPredictor.from_pretrained(model="demo", stage1="grabcut").sam_stage, GrabCutStage)


def test_predictor_paper_preset_explains_the_manual_refiner(home):
    with pytest.raises(DownloadError) as info:
        DisSamPredictor.from_pretrained(model="dis-sam")
    msg = str(info.value)
    assert "drive.google.com/drive/folders/1fE_DCGKU3WA-HmZnqRzaazHe44Lx9RP2" in msg
    assert str(models_dir() / "dis-sam.pth") in msg


def test_explicit_refiner_overrides_the_preset_half(home):
    """--model dis-sam --refiner dis-sam-compact: the SAM half is still the preset's (here: offline)."""
    with pytest.raises(OfflineError, match="sam_vit_l_0b3195.pth"):
        DisSamPredictor.from_pretrained(model="dis-sam", refiner="dis-sam-compact")


def test_predict_command_with_the_paper_preset_fails_clearly(home, tmp_path, capsys):
    img = tmp_path / "photo.png"
    write_png(img, np.full((40, 50, 3), 128, np.uint8))
    assert main(["predict", str(img), "--box", "5,5,30,30", "--model", "dis-sam", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "dissam predict: error: dis-sam" in err and "cannot be downloaded by a program" in err
    assert "dissam models verify dis-sam" in err
