"""benchmarks/gpu_suite.py runs unattended: it refuses a missing CUDA device with a message, and on the
CPU (``--quick``: tiny sizes) it writes a JSON report with one row per path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_without_cuda_it_says_so(tmp_path, capsys):
    assert _suite().main(["--out", str(tmp_path / "g.json")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


@pytest.mark.slow
def test_cpu_quick_smoke_run_writes_every_row(tmp_path):
    out = tmp_path / "g.json"
    assert _suite().main(["--device", "cpu", "--quick", "--out", str(out), "--repeats", "1"]) == 0
    res = json.loads(out.read_text())
    rows = {r["path"]: r for r in res["rows"]}
    for prec in ("fp32", "bf16"):
        for cl in ("", " channels_last"):
            for b in (1, 2):
                assert rows[f"refiner {prec}{cl} b{b}"]["ms"] > 0
    assert "refiner fp16 b1" not in rows  # fp16 autocast is CUDA-only
    assert rows["sam vit_b encoder fp32"]["ms"] > 0 and rows["sam vit_b encoder fp32"]["tiny"] is True
    assert res["environment"]["device"] == "cpu" and res["total_s"] < 600
