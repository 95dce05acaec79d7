"""The CPU default (ONNX Runtime for networks read from a weights file) and the lean loading under it:
no random initialisation, memory-mapped weights, a cache keyed by the file's digest, locked exports,
and SAM's torch model never built once its graphs are cached. (The rest of the suite runs with
``DISSAM_BACKEND=torch``: tests/conftest.py.)"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def default_env(monkeypatch, tmp_path):
    monkeypatch.delenv("DISSAM_BACKEND", raising=False)
    monkeypatch.setenv("DISSAM_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def weights(tmp_path, tiny_sam_path, tiny_refiner):
    """The tiny SAM (official .pth) and a compact refiner (.safetensors) in a folder of their own."""
    import shutil

    from dissam.checkpoints import save_checkpoint

    folder = tmp_path / "w"
    folder.mkdir()
    sam = folder / "sam_tiny.pth"
    shutil.copy(tiny_sam_path, sam)
    ref = save_checkpoint(folder / "ref.safetensors", tiny_refiner, metadata={"input_size": 64})
    return sam, ref


def test_default_runs_file_weights_on_onnx_runtime_and_matches_torch(default_env, weights, image, boxes, caplog):
    from dissam.predictor import DisSamPredictor

    sam, ref = weights
    with caplog.at_level(logging.INFO, logger="dissam.predictor"):
        p = DisSamPredictor.from_pretrained(sam=str(sam), refiner=str(ref), device="cpu")
        DisSamPredictor.from_pretrained(sam=str(sam), refiner=str(ref), device="cpu")
    assert sum("CPU default" in r.getMessage() for r in caplog.records) == 1  # logged once per process
    assert p.backend == "onnx" and p.sam_stage.encoder_runner.backend == "onnx"
    assert p.sam_stage.decoder_runner is not None
    assert p.sam_stage._model is None  # the export's torch model was dropped; nothing else needs it
    got = p.set_image(image).predict(boxes=boxes)
    assert p.sam_stage._model is None and p.refiner_runner.backend == "onnx"
    want = DisSamPredictor.from_pretrained(sam=str(sam), refiner=str(ref), device="cpu", backend="torch")
    assert want.backend == "torch" and want.sam_stage.encoder_runner is None
    for a, b in zip(want.set_image(image).predict(boxes=boxes), got):
        assert (a.coarse != b.coarse).mean() < 1e-4
        np.testing.assert_allclose(a.soft, b.soft, atol=1e-4, rtol=0)



def test_clicks_on_the_default_build_the_torch_decoder_and_match_torch(default_env, weights, image, boxes):
    """The exported decoder takes boxes only: a click (or a mask prompt) on the ONNX default builds
    SAM's torch decoder on first use, and the result equals the torch backend's."""
    from dissam.predictor import DisSamPredictor

    sam, ref = weights
    p = DisSamPredictor.from_pretrained(sam=str(sam), refiner=str(ref), device="cpu").set_image(image)
    assert p.sam_stage._model is None
    box = [float(v) for v in boxes[0]]
    click = [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]
    got = p.predict(box=box, point_coords=click, point_labels=[0])
    assert p.sam_stage._model is not None  # built for the click, not before
    want = DisSamPredictor.from_pretrained(sam=str(sam), refiner=str(ref), device="cpu", backend="torch")
    exp = want.set_image(image).predict(box=box, point_coords=click, point_labels=[0])
    assert (exp.coarse != got.coarse).mean() < 1e-4
    np.testing.assert_allclose(exp.soft, got.soft, atol=1e-4, rtol=0)
    boxes_only = p.predict(box=box)  # a box alone still goes through the exported decoder
    np.testing.assert_allclose(boxes_only.soft, want.predict(box=box).soft, atol=1e-4, rtol=0)

def test_default_keeps_torch_for_networks_built_in_python(default_env, tiny_refiner):
    from dissam.predictor import DisSamPredictor

    assert DisSamPredictor(None, tiny_refiner).backend == "torch"  # no file to cache an export for


def test_environment_variable_sets_the_default(default_env, weights, monkeypatch):
    from dissam.errors import DisSamError
    from dissam.predictor import DisSamPredictor

    monkeypatch.setenv("DISSAM_BACKEND", "torch")
    assert DisSamPredictor.from_pretrained(refiner=str(weights[1]), stage1="none").backend == "torch"
    monkeypatch.setenv("DISSAM_BACKEND", "tensorrt")
    with pytest.raises(DisSamError, match="DISSAM_BACKEND"):
        DisSamPredictor.from_pretrained(refiner=str(weights[1]), stage1="none")


def test_second_run_exports_nothing_and_hashes_nothing(default_env, weights, monkeypatch):
    """The cache key comes from the file's digest, computed once and kept beside the cache; a second
    load neither exports nor reads the file to hash it, and builds no SAM model."""
    from dissam.runtime import cache, onnx_export, runners
    from dissam.stages.sam import load_sam

    sam, _ = weights
    first = load_sam(sam)
    first.use_runtime("onnx", "fp32")
    assert (sam.parent / ".dissam-onnx" / "sam_tiny.digest.json").is_file()

    def refuse(*a, **k):
        raise AssertionError("exported or hashed again")

    for module, name in ((runners, "export_sam_encoder"), (runners, "export_sam_decoder"),
                         (cache, "_sha256_file"), (cache, "weights_hash"), (onnx_export, "_export")):
        monkeypatch.setattr(module, name, refuse)
    second = load_sam(sam)
    second.use_runtime("onnx", "fp32")
    assert second._model is None
    assert second.encoder_runner.path == first.encoder_runner.path


def test_changed_file_or_changed_tensors_get_another_graph(default_env, weights):
    from dissam.hub.loading import load_refiner
    from dissam.runtime.cache import cached_path

    _, ref = weights
    r = load_refiner(ref)
    assert r.weights_are_source
    path = cached_path(r.net, r.source, "refiner", 64, 5, pristine=r.weights_are_source)
    with torch.no_grad():
        next(r.net.parameters()).add_(1.0)  # changed in memory: no longer the file's weights
    assert not r.weights_are_source
    assert cached_path(r.net, r.source, "refiner", 64, 5, pristine=False) != path
    time.sleep(0.01)
    ref.write_bytes(ref.read_bytes() + b" ")  # another size and time: hashed again, another key
    assert cached_path(None, ref, "refiner", 64, 5) != path


def test_concurrent_exports_of_one_graph_happen_once(tmp_path):
    from dissam.runtime.runners import exported

    calls = []

    def slow_export(p):
        calls.append(p)
        time.sleep(0.3)
        p.write_bytes(b"graph")

    threads = [threading.Thread(target=exported, args=(tmp_path / "g.onnx", slow_export)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and (tmp_path / "g.onnx").read_bytes() == b"graph"


def test_weights_are_loaded_without_init_and_memory_mapped(tmp_path, tiny_refiner):
    from dissam.checkpoints import build_with_weights, read_state_dict
    from dissam.hub.loading import load_refiner
    from dissam.models.isnet import build_refiner

    torch.save(tiny_refiner.state_dict(), tmp_path / "r.pth")
    sd = read_state_dict(tmp_path / "r.pth")
    built = []
    net = build_with_weights(lambda: built.append(1) or build_refiner("dis-sam-compact"), sd, "r.pth")
    assert built == [1]  # built once, on the meta device: no second, initialised copy
    assert not any(t.is_meta for t in net.state_dict().values())
    key = "conv_in.weight"
    assert net.state_dict()[key].data_ptr() == sd[key].data_ptr()  # the file's tensor itself, not a copy
    loaded = load_refiner(tmp_path / "r.pth")
    for k, v in tiny_refiner.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[k], v, rtol=0, atol=0)


def test_sam_stage_is_checked_at_load_and_built_on_first_use(tiny_sam_path):
    from dissam.stages.sam import load_sam

    stage = load_sam(tiny_sam_path)
    assert stage._model is None and "hidden=64" in repr(stage) and stage.image_size == 1024
    assert stage.weights_are_source
    model = stage.model  # built now, from the memory-mapped file
    assert stage.model is model and stage.weights_are_source
    assert not any(p.requires_grad for p in model.parameters())
