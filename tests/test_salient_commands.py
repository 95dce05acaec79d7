"""The salient-object stage 1s in every command that takes a stage 1 (predict, video, prepare-masks,
benchmark, the app), by file (IS-Net's ``.pth`` and ONNX) and by registry name (downloaded from a
loopback server, verified by size, SHA-256 and MD5; offline errors)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hub_helpers import FileServer, empty_cache_home, sha256, write_registry  # noqa: I001
from PIL import Image
from salient_helpers import IsNetD1, export_onnx, tiny_isnet

from dissam.cli import main
from dissam.errors import VerificationError

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "tree_on_coffee.jpg"
BOX = [109, 71, 318, 356]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """``{".pth": path, ".onnx": path}`` of one tiny random IS-Net (the ONNX file at 1024², as rembg's)."""
    net, pth = tiny_isnet(tmp_path_factory.mktemp("weights"))
    return {".pth": pth, ".onnx": export_onnx(IsNetD1(net), 1024, pth.with_suffix(".onnx"))}


@pytest.fixture(scope="module")
def refiner_path(tmp_path_factory, tiny_refiner):
    from dissam.checkpoints import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("refiner") / "tiny.safetensors", tiny_refiner,
                           metadata={"input_size": 64})


def stage_mask(weights_file, image, box) -> np.ndarray:
    from dissam.stages import load_stage1

    stage = load_stage1("isnet-general-use", weights_file)
    stage.set_image(image)
    return stage.coarse_masks(np.array([box], float))[0]


@pytest.fixture(scope="module")
def onnx_mask(weights):
    """The ONNX stage's mask of ``BOX`` on ``IMAGE``."""
    from dissam.io import read_image

    return stage_mask(weights[".onnx"], read_image(IMAGE), BOX)


@pytest.mark.parametrize("suffix", [".onnx", ".pth"])
def test_predict_with_the_official_pth_or_the_onnx_file(weights, onnx_mask, refiner_path, tmp_path, suffix):
    """``dissam predict IMG --box ... --stage1 isnet-general-use --sam FILE``: the saved coarse mask is
    the ONNX stage's mask for that box (the ``.pth`` runs in torch: the same up to float rounding at
    the threshold, a few pixels at most)."""
    out = tmp_path / "out"
    assert main(["predict", str(IMAGE), "--box", ",".join(map(str, BOX)), "--stage1", "isnet-general-use",
                 "--sam", str(weights[suffix]), "--refiner", str(refiner_path), "--save-coarse", "--device", "cpu",
                 "-o", str(out)]) == 0
    coarse = np.array(Image.open(out / "tree_on_coffee_0_coarse.png")) > 127
    assert onnx_mask.sum() > 1000 and (out / "tree_on_coffee_0.png").is_file()
    assert (coarse != onnx_mask).sum() <= (0 if suffix == ".onnx" else 5)


# ------------------------------------------------------------------ by name: the hub registry
@pytest.fixture
def served(tmp_path, monkeypatch, weights):
    """The tiny ONNX file served on 127.0.0.1 as the ``isnet-general-use`` entry (a user registry file
    overrides its URL, size and digests; the role, file name and licence stay the registry's)."""
    home = empty_cache_home(tmp_path, monkeypatch)
    data = weights[".onnx"].read_bytes()
    with FileServer() as srv:
        srv.files["/isnet-general-use.onnx"] = data
        fields = {"url": srv.url("/isnet-general-use.onnx"), "size": len(data), "sha256": sha256(data),
                  "md5": hashlib.md5(data).hexdigest()}
        write_registry(home, {"isnet-general-use": fields})
        yield srv, home, fields


def test_a_registry_name_is_downloaded_verified_and_selects_the_stage(served, refiner_path, tmp_path, weights):
    from dissam.hub import entries, models_dir

    srv, _, _ = served
    entry = entries()["isnet-general-use"]
    assert entry.role == "salient" and entry.filename == "isnet-general-use.onnx"
    for run in ("first", "cached"):  # no --stage1: the name selects the stage
        out = tmp_path / run
        assert main(["predict", str(IMAGE), "--box", ",".join(map(str, BOX)), "--sam", "isnet-general-use",
                     "--refiner", str(refiner_path), "--save-coarse", "--device", "cpu", "-o", str(out)]) == 0
    cached = models_dir() / "isnet-general-use.onnx"
    assert cached.read_bytes() == weights[".onnx"].read_bytes()
    assert srv.log == [("/isnet-general-use.onnx", None, 200)]  # once: the second run used the cache
    assert main(["models", "verify", "isnet-general-use"]) == 0
    assert main(["models", "verify", str(weights[".onnx"])]) == 0  # identified by its digests


def test_a_wrong_md5_is_refused_and_nothing_is_left(served, tmp_path):
    from dissam.hub import fetch, models_dir

    _, home, fields = served
    write_registry(home, {"isnet-general-use": {**fields, "md5": "0" * 32}})
    with pytest.raises(VerificationError, match=r"MD5 of .* expected 0{32}"):
        fetch("isnet-general-use", progress=False)
    assert not any(models_dir().iterdir()) or all(".lock" in p.name for p in models_dir().iterdir())


def test_offline_the_name_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    from dissam.hub import models_dir
    from dissam.hub.registry import REMBG_URL

    empty_cache_home(tmp_path, monkeypatch)
    monkeypatch.setenv("DISSAM_OFFLINE", "1")
    assert main(["predict", str(IMAGE), "--box", ",".join(map(str, BOX)), "--stage1", "isnet-general-use",
                 "--sam", "isnet-general-use", "--device", "cpu", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert REMBG_URL + "isnet-general-use.onnx" in err and str(models_dir() / "isnet-general-use.onnx") in err
    assert "offline mode is on" in err


def test_the_cpu_preset_is_isnet_in_the_box_with_the_builtin_refiner(served):
    from dissam.app.service import describe_models
    from dissam.predictor import DisSamPredictor

    pred = DisSamPredictor.from_pretrained(model="cpu", device="cpu")
    assert pred.sam_stage.name == "isnet-general-use"
    info = describe_models(pred, sam="isnet-general-use")
    assert info["stage1_label"] == "IS-Net general-use" and info["stage1_license"] == "Apache-2.0 (xuebinqin/DIS)"
    assert info["sam"] == "isnet-general-use" and info["refiner"] == "built-in dis-sam-compact"


def test_models_list_shows_licences_and_marks_non_commercial(tmp_path, monkeypatch, capsys):
    empty_cache_home(tmp_path, monkeypatch)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "licence: Apache-2.0 (xuebinqin/DIS)" in out and "licence: MIT (ZhengPeng7/BiRefNet)" in out
    assert "licence: NON-COMMERCIAL: CC BY-NC 4.0" in out
    assert "cpu: stage1=isnet-general-use (isnet-general-use), refiner=dis-sam-compact" in out


# ------------------------------------------------------------------ the other commands
def test_prepare_masks_with_a_salient_stage(weights, tmp_path, capsys):
    from data_helpers import gt_two_big_one_tiny, make_split

    from dissam.io import read_mask

    split = make_split(tmp_path / "S", {"multi": gt_two_big_one_tiny()}, masks=False)
    assert main(["prepare-masks", str(split), "--stage1", "isnet-general-use", "--sam", str(weights[".onnx"]),
                 "--device", "cpu", "--no-progress"]) == 0
    assert "1 encoded" in capsys.readouterr().out
    mask = read_mask(split / "mask" / "multi.png")
    assert mask.shape == (50, 60) and set(np.unique(mask)) <= {0, 255}


def test_benchmark_sam_column_is_the_salient_stage(weights, tmp_path):
    from dissam.io import read_image, read_mask, write_png

    root = tmp_path / "data"
    gt = np.zeros((60, 80), np.uint8)
    gt[15:45, 20:60] = 255
    image = np.random.default_rng(0).integers(0, 80, (60, 80, 3), dtype=np.uint8)
    image[gt > 0] += np.array([150, 100, 60], np.uint8)
    write_png(root / "DIS-VD" / "gt" / "a.png", gt)
    write_png(root / "DIS-VD" / "im" / "a.png", image)
    run = tmp_path / "run"
    assert main(["benchmark", "--data", str(root), "--splits", "DIS-VD", "--stage1", "isnet-general-use",
                 "--sam", str(weights[".onnx"]), "--methods", "sam", "--device", "cpu", "--no-progress",
                 "--no-eval", "-o", str(run)]) == 0
    saved = read_mask(run / "predictions" / "sam" / "DIS-VD" / "a.png") > 127
    assert np.array_equal(saved, stage_mask(weights[".onnx"], read_image(root / "DIS-VD" / "im" / "a.png"),
                                            [20, 15, 59, 44]))


def test_video_runs_the_salient_stage_on_every_frame(weights, tmp_path):
    pytest.importorskip("av")
    from dissam.data.clips import clip_frames, moving_clip, write_clip

    spec = moving_clip(2, (48, 64), kind="blob", seed=3)
    path = tmp_path / "clip.mp4"
    write_clip(path, spec, fps=8)
    ys, xs = np.nonzero(next(iter(clip_frames(spec)))[1] > 127)
    box = f"{xs.min()},{ys.min()},{xs.max()},{ys.max()}"
    out = tmp_path / "out"
    assert main(["video", str(path), "--box", box, "--stage1", "isnet-general-use", "--sam", str(weights[".onnx"]),
                 "-o", str(out), "--size", "64", "--device", "cpu"]) == 0
    assert len(list((out / "masks").iterdir())) == 2
