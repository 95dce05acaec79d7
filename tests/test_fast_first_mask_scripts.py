"""The issue-29 benchmark scripts on tiny inputs: benchmarks/gpu_launch.py (refuses a missing GPU; on
the CPU with --smoke every path has a row, the CUDA-only ones say why they were skipped),
benchmarks/cpu_default.py, benchmarks/big_photo.py and benchmarks/zoom_scenes.py (each writes its
results file with the tables docs/benchmarks.md shows)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(BENCH / script), *args], check=True, env=env, capture_output=True)
    return json.loads(Path(args[args.index("--out") + 1]).read_text())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_gpu_launch_without_cuda_says_so(tmp_path, capsys):
    assert _module("gpu_launch").main(["--out", str(tmp_path / "g.json")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run")
def test_gpu_launch_cpu_smoke_has_every_row(tmp_path):
    out = tmp_path / "g.json"
    assert _module("gpu_launch").main(["--device", "cpu", "--smoke", "--out", str(out)]) == 0
    rows = {r["path"]: r for r in json.loads(out.read_text())["rows"]}
    for b in (1, 2):
        for prec in ("fp32", "bf16"):
            assert rows[f"refiner eager {prec} b{b}"]["ms"] > 0
            assert "needs CUDA" in rows[f"refiner cuda graph {prec} b{b}"]["error"]
    for prec in ("fp32", "bf16"):
        assert "needs CUDA" in rows[f"refiner compile reduce-overhead {prec} b1"]["error"]
    assert rows["refiner eager fp32 b1"]["max_abs_diff_vs_eager_fp32"] == 0.0
    assert rows["sam vit_b encoder bf16 eager"]["attention_class"] != rows["sam vit_b encoder bf16 sdpa"]["attention_class"]
    for name in ("folder naive loop", "folder predict_images (overlapped decode/write)"):
        assert rows[name]["img_per_s"] > 0 and rows[name]["images"] == 3


@pytest.mark.slow
def test_cpu_default_smoke_writes_both_tables(tmp_path):
    res = _run("cpu_default.py", "--smoke", "--threads", "1", "--out", str(tmp_path / "c.json"))
    assert set(res["tables"]) == {"startup", "refiner"}
    startup = res["results"]["startup"]
    assert startup["default (ORT fp32, cached graphs)"]["backend"] == {"refiner": "onnx", "sam encoder": "onnx"}
    assert startup["default (ORT fp32, cached graphs)"]["sam_model_built"] is False
    assert startup["DISSAM_BACKEND=torch"]["backend"]["refiner"] == "torch"
    ref = res["results"]["refiner"]
    assert ref["default (ORT fp32, cached graph)"]["max_abs_diff_vs_torch"] < 1e-4


@pytest.mark.slow
def test_big_photo_and_zoom_scenes_smoke(tmp_path):
    res = _run("big_photo.py", "--sizes", "0.3", "--base", "HEAD", "--threads", "1", "--out", str(tmp_path / "b.json"))
    runs = res["results"]["runs"]
    assert len(runs) == 2 and all(r["rc"] == 0 and r["peak_rss_mb"] > 0 for r in runs)
    assert runs[-1]["vs_this_tree"]["mask_equal"]
    res = _run("big_photo.py", "--phases", "0.3", "--threads", "1", "--out", str(tmp_path / "p.json"))
    phases = res["results"]["phases"]
    assert {"decode JPEG", "make cutout", "PNG encode cutout (as written)"} <= set(phases)
    assert all(v["seconds"] >= 0 and v["peak_rss_mb"] > 0 for v in phases.values())
    res = _run("zoom_scenes.py", "--long-side", "600", "--ratios", "0.2", "--seeds", "1", "--out", str(tmp_path / "z.json"))
    by = res["results"]["by_ratio"]["0.2"]
    assert set(by) == {"whole image", "zoom 0.25"} and all(0 <= v["mBIoU"] <= 1 for v in by.values())
