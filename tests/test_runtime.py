"""Backend and precision choice of the predictor (dissam.runtime.runners)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dissam.errors import DisSamError
from dissam.runtime.runners import TorchRefinerRunner, resolve_runtime

CPU = torch.device("cpu")


def test_defaults_and_impossible_combinations():
    assert resolve_runtime(CPU) == ("torch", "fp32")
    assert resolve_runtime(CPU, "torch", "bf16") == ("torch", "bf16")
    assert resolve_runtime(CPU, "auto", "bf16") == ("torch", "bf16")  # bf16 exists only in torch
    from dissam.runtime.runners import onnx_available

    assert resolve_runtime(CPU, "auto") == ("onnx" if onnx_available() else "torch", "fp32")
    with pytest.raises(DisSamError, match="int8 runs on the ONNX backend"):
        resolve_runtime(CPU, "torch", "int8")
    with pytest.raises(DisSamError, match="torch backend"):
        resolve_runtime(CPU, "onnx", "bf16")
    with pytest.raises(DisSamError, match="fp16 autocast is for CUDA"):
        resolve_runtime(CPU, "torch", "fp16")
    with pytest.raises(DisSamError, match="unknown backend"):
        resolve_runtime(CPU, "tensorrt", "fp32")


def test_torch_fp32_channels_last_is_lossless_and_bf16_is_close(tiny_refiner):
    from dissam.refiner import Refiner, forward_d1

    ref = Refiner.from_module(tiny_refiner, input_size=64)
    x = torch.rand(2, 5, 64, 64) - 0.5
    want = forward_d1(tiny_refiner, x)
    cl = TorchRefinerRunner(ref, "fp32", channels_last=True)(x)
    try:
        assert cl.dtype == torch.float32 and cl.shape == (2, 1, 64, 64)
        np.testing.assert_allclose(cl.numpy(), want.numpy(), atol=1e-5, rtol=0)
        bf = TorchRefinerRunner(ref, "bf16", channels_last=True)(x)
        diff = float((bf - want).abs().max())
        assert bf.dtype == torch.float32 and 0 < diff < 0.05  # bf16 has 8 mantissa bits: close, not equal
    finally:
        tiny_refiner.to(memory_format=torch.contiguous_format)


def test_predictor_onnx_backend_matches_torch(tmp_path, tiny_sam_path, tiny_refiner, image, boxes, monkeypatch):
    """The whole predictor on ONNX Runtime (SAM encoder + refiner) gives torch's soft maps; int8 runs
    SAM's encoder quantised (close, not equal) and keeps the fp32 refiner."""
    pytest.importorskip("onnxruntime")
    from dissam.checkpoints import save_checkpoint
    from dissam.predictor import DisSamPredictor

    monkeypatch.setenv("DISSAM_CACHE", str(tmp_path / "cache"))
    ck = save_checkpoint(tmp_path / "w" / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    results = {}
    for backend, precision in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")):
        p = DisSamPredictor.from_pretrained(sam=str(tiny_sam_path), refiner=ck, device="cpu", backend=backend,
                                            precision=precision)
        assert (p.backend, p.precision) == (backend, precision)
        results[backend, precision] = p.set_image(image).predict(boxes=boxes)
        if backend == "onnx":
            assert p.refiner_runner.backend == "onnx" and p.sam_stage.encoder_runner.backend == "onnx"
            assert p.refiner_runner.path.parent == tmp_path / "w" / ".dissam-onnx"  # cached next to the weights
    for a, b in zip(results["torch", "fp32"], results["onnx", "fp32"]):
        assert (a.coarse != b.coarse).mean() < 1e-4
        np.testing.assert_allclose(a.soft, b.soft, atol=1e-4, rtol=0)
    for a, b in zip(results["torch", "fp32"], results["onnx", "int8"]):
        assert a.soft.shape == b.soft.shape and (a.coarse == b.coarse).mean() > 0.9
    # one refiner graph for fp32 and int8 (int8 keeps the fp32 refiner), exported once, and ONNX
    # Runtime's optimised copy of it
    graphs = sorted(p.name for p in (tmp_path / "w" / ".dissam-onnx").glob("*.onnx"))
    assert len(graphs) == 2 and ".opt-" not in graphs[0] and graphs[1].startswith(graphs[0][:-5] + ".opt-")


def test_cli_precision_flags(tmp_path, fixtures_dir, capsys):
    from dissam.cli import main

    img = str(fixtures_dir / "sam" / "image.png")
    assert main(["predict", img, "--box", "1,1,50,50", "--dtype", "bf16", "--precision", "fp32",
                 "-o", str(tmp_path)]) == 1
    assert "disagree" in capsys.readouterr().err
    assert main(["predict", img, "--box", "1,1,50,50", "--precision", "int8", "-o", str(tmp_path)]) == 1
    assert "int8 runs on the ONNX backend" in capsys.readouterr().err
