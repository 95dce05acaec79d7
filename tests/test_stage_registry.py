"""The stage-1 registry: one table that the commands, the app and video read; plugins through entry
points; per-image state through the Stage1 protocol; runtime choices checked per stage; the one rule
that tells a hub id from a missing path."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image
from stage1_helpers import tiny_sam2

import dissam.stages.registry as registry
from dissam.cli import build_parser, main
from dissam.errors import CheckpointError, DisSamError
from dissam.hub.sources import is_hub_id
from dissam.predictor import DisSamPredictor
from dissam.stages import Stage1, StageSpec, get_spec, load_stage1, register_stage, stage_names
from dissam.stages.grabcut import GrabCutStage
from dissam.stages.sam import load_sam
from dissam.stages.sam2 import PromptableStage

H, W = 60, 80
BOX = np.array([10.0, 8.0, 49.0, 39.0])

PLUGIN = textwrap.dedent('''
    """A third-party stage 1: the box, filled (what a plugin package would ship)."""
    import numpy as np

    from dissam.stages import StageSpec
    from dissam.stages.base import ImageKeepingStage


    class FillBox(ImageKeepingStage):
        name = "fill-box"

        def coarse_masks(self, boxes, selection="first"):
            image = self._require_image()
            out = np.zeros((len(boxes), *image.shape[:2]), bool)
            for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes).round().astype(int)):
                out[i, y0:y1 + 1, x0:x1 + 1] = True
            return out


    def load(source=None, device=None):
        return FillBox()


    SPEC = StageSpec("fill-box", "Filled box", "the box itself", "fill_box_plugin:load", needs_weights=False,
                     backends=None, license="MIT")
''')


class _EntryPoint:
    """What importlib.metadata returns for one entry point (name, value, load)."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def load(self):
        module, _, attr = self.value.partition(":")
        return getattr(importlib.import_module(module), attr)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``fill_box_plugin`` importable and announced in the ``dissam.stage1`` group, with a broken
    plugin and one that takes a built-in name beside it."""
    (tmp_path / "fill_box_plugin.py").write_text(PLUGIN)
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('missing dependency')\n")
    (tmp_path / "clash_plugin.py").write_text(
        "from dissam.stages import StageSpec\nSPEC = StageSpec('sam', 'SAM?', 'clash', 'x:y')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [_EntryPoint("fill-box", "fill_box_plugin:SPEC"), _EntryPoint("broken", "broken_plugin:SPEC"),
           _EntryPoint("clash", "clash_plugin:SPEC")]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(registry.importlib.metadata, "entry_points",
                        lambda **kw: eps if kw.get("group") == registry.ENTRY_POINT_GROUP else real(**kw))
    monkeypatch.setattr(registry, "_PLUGINS", None)
    yield
    monkeypatch.setattr(registry, "_PLUGINS", None)
    for name in ("fill_box_plugin", "broken_plugin", "clash_plugin"):
        sys.modules.pop(name, None)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(img).save(path)
    return path


def _option(parser, command: str, flag: str):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next((a for a in sub._actions if flag in a.option_strings), None)


def test_every_command_that_runs_a_stage_lists_the_registry_and_the_same_runtimes():
    parser = build_parser()
    expected = ["auto", *stage_names()]
    for command in ("predict", "app", "video", "benchmark", "prepare-masks"):
        assert _option(parser, command, "--stage1").choices == expected, command
        assert _option(parser, command, "--sam") is _option(parser, command, "--stage1-weights"), command
    backends = _option(parser, "predict", "--backend").choices
    precisions = _option(parser, "predict", "--precision").choices
    for command in ("app", "video", "benchmark"):
        assert _option(parser, command, "--backend").choices == backends, command
        assert _option(parser, command, "--precision").choices == precisions, command
    assert _option(parser, "video", "--dtype") is not None  # the old spelling is kept for scripts


def test_the_builtin_table():
    names = stage_names()
    assert names[:5] == ("sam", "sam-hq", "sam2", "sam3", "grabcut")
    assert {"u2netp", "u2netp-grabcut", "u2netp-auto"} <= set(names)
    assert registry.OFFLINE_DEFAULT == "u2netp-auto" and get_spec("u2netp-auto").bundled
    assert get_spec("sam2").video_loader and get_spec("grabcut").video_loader is None
    assert get_spec("sam3").text and not get_spec("sam").text
    with pytest.raises(DisSamError, match="did you mean sam2"):
        get_spec("sam22")


def test_a_plugin_stage_is_listed_loaded_and_runs_from_the_command_line(plugin, image_file, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="dissam.stages.registry"):
        names = stage_names()
    assert "fill-box" in names and names.count("sam") == 1
    assert "broken" in caplog.text and "built-in stage" in caplog.text  # reported and skipped, not fatal
    assert isinstance(load_stage1("fill-box"), Stage1)
    assert _option(build_parser(), "predict", "--stage1").choices[-1] == "fill-box"
    out = tmp_path / "out"
    box = ",".join(str(int(v)) for v in BOX)
    assert main(["predict", str(image_file), "--box", box, "--stage1", "fill-box", "-o", str(out),
                 "--save-coarse", "--device", "cpu"]) == 0
    coarse = np.asarray(Image.open(out / "photo_0_coarse.png")) > 0
    want = np.zeros((H, W), bool)
    want[8:40, 10:50] = True
    assert np.array_equal(coarse, want)


def test_register_stage_from_python(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    spec = StageSpec("boxes-only", "Boxes", "the box", "dissam.stages.grabcut:load_stage", needs_weights=False,
                     backends=None)
    register_stage(spec)
    assert get_spec("boxes-only") is spec and isinstance(load_stage1("boxes-only"), GrabCutStage)
    with pytest.raises(DisSamError, match="registered already"):
        register_stage(spec)
    register_stage(spec, replace=True)
    for bad in ("auto", "none"):
        with pytest.raises(DisSamError, match="selector"):
            register_stage(StageSpec(bad, "x", "x", "x:y"))


def test_auto_reads_the_source(tmp_path, tiny_sam_path):
    assert registry.detect_stage(tiny_sam_path) == "sam"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(DisSamError, match="--stage1"):
        registry.detect_stage(onnx)
    assert registry.resolve_stage("none") == registry.REFINE_ONLY
    assert registry.resolve_stage(None) == "u2netp-auto"


def test_the_one_rule_for_hub_ids_and_missing_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("facebook/sam2.1-hiera-tiny") and is_hub_id("someone/model")
    assert not is_hub_id("./models/x") and not is_hub_id("/abs/x") and not is_hub_id("a/b/c")
    assert not is_hub_id("org/weights.pth") and not is_hub_id("org/u2net.onnx")
    (tmp_path / "models").mkdir()
    assert not is_hub_id("models/sam2.1-hiera-tiny")  # a folder of that name is here: a missing path
    t0 = time.perf_counter()
    for load in (lambda: load_stage1("sam2", "models/sam2.1-hiera-tiny"), lambda: load_sam("models/sam_vit_b.pth")):
        with pytest.raises(CheckpointError, match="no such file or folder"):
            load()
    assert time.perf_counter() - t0 < 10  # at once: no hub lookup


def test_runtime_is_checked_per_stage(tiny_refiner):
    with pytest.raises(DisSamError, match="stage 1 sam2 runs on torch only"):
        registry.check_runtime(get_spec("sam2"), "onnx", None)
    with pytest.raises(DisSamError, match="--precision int8: stage 1 sam3"):
        registry.check_runtime(get_spec("sam3"), None, "int8")
    registry.check_runtime(get_spec("u2netp-auto"), "onnx", "bf16")  # fixed runtime: the flags are the refiner's
    registry.check_runtime(get_spec("sam2"), "auto", "bf16")
    stage = PromptableStage(tiny_sam2())
    with pytest.raises(DisSamError, match="torch only"):
        DisSamPredictor(stage, tiny_refiner, backend="onnx")
    DisSamPredictor(stage, tiny_refiner, precision="bf16")
    assert stage.dtype == torch.bfloat16


def test_bf16_encoder_of_a_promptable_stage_stays_close_to_fp32():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    model = tiny_sam2()
    fp32 = PromptableStage(model)
    fp32.set_image(img)
    bf16 = PromptableStage(model)
    bf16.use_runtime("torch", "bf16")
    bf16.set_image(img)
    for a, b in zip(fp32.get_image_state().embeddings, bf16.get_image_state().embeddings):
        assert b.dtype == torch.float32 and torch.allclose(a, b, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("make", [lambda p: load_sam(p), lambda p: PromptableStage(tiny_sam2()),
                                  lambda p: GrabCutStage(), lambda p: load_stage1("u2netp")],
                         ids=["sam", "sam2", "grabcut", "u2netp"])
def test_image_state_round_trip_without_re_encoding(make, tiny_sam_path, tiny_refiner):
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(2))
    a[10:40, 15:50] = (240, 30, 30)
    stage = make(tiny_sam_path)
    pred = DisSamPredictor(stage, tiny_refiner, device="cpu")
    pred.set_image(a)
    first = pred.predict(box=BOX).coarse
    state = pred.get_image_state()
    pred.set_image(b)
    pred.predict(box=BOX)
    calls = getattr(stage, "encoder_calls", None)
    pred.set_image_state(state)
    assert np.array_equal(pred.predict(box=BOX).coarse, first)
    assert getattr(stage, "encoder_calls", None) == calls  # restored, not encoded again
    assert np.array_equal(pred.image, a)


def test_video_without_weights_uses_the_offline_default_per_frame(caplog):
    from dissam.video.trackers import StageTracker, load_tracker

    tracker = load_tracker(None, None, "cpu")
    assert isinstance(tracker, StageTracker) and tracker.stage.name == "u2netp-auto"
