"""Measured figures have provenance: every results file under benchmarks/results says which script and
command made it, when, on which machine and at which commit, holds the tables the docs render, and is
cited by the docs; the writer (benchmarks/results_io.py) and the converter of the GPU suite's reports
(benchmarks/gpu_suite_provenance.py) do what they say."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from docs_harness import PAGES, check_script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite_provenance  # noqa: E402  (benchmarks/ is not a package)
import results_io  # noqa: E402


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_every_results_file_says_how_it_was_made(path):
    doc = json.loads(path.read_text())
    for key in ("script", "command", "date", "machine", "commit", "results", "tables"):
        assert key in doc, f"{path.name}: no {key!r}"
    assert doc["date"][:2] == "20" and doc["machine"].get("cores"), path.name
    assert doc["tables"] and all(t.startswith("| ") and t.endswith("|\n") for t in doc["tables"].values())
    words = shlex.split(doc["command"])
    call = words[words.index("python") + 1 if "python" in words else words.index("python3") + 1:]
    assert call[0] == doc["script"], f"{path.name}: the command runs {call[0]}, not {doc['script']}"
    check_script(ROOT / call[0], call[1:])  # the script exists and still has every flag the command used


def test_every_results_file_is_cited_by_the_docs():
    cited = "\n".join(p.read_text() for p in PAGES)
    orphans = [p.name for p in RESULTS if f"benchmarks/results/{p.name}#" not in cited]
    assert not orphans, f"results files no page renders: {orphans}"


def test_save_writes_the_provenance_and_the_tables(tmp_path, capsys):
    table = results_io.markdown_table(["step", "ms"], [["decode", 12], ["encode", 3]])
    assert table.splitlines()[1] == "|---|---:|"
    out = results_io.save("x", {"ms": {"decode": 12.0}}, {"t": table}, notes="n", out=tmp_path / "x.json")
    doc = json.loads(out.read_text())
    assert doc["results"] == {"ms": {"decode": 12.0}} and doc["notes"] == "n"
    assert doc["tables"]["t"] == table + "\n"
    assert doc["machine"]["cores"] >= 1 and "load_average_at_start" in doc["machine"]
    assert doc["command"].startswith(("python ", "PYTHONPATH=", "OMP_NUM_THREADS="))
    assert isinstance(doc["dirty"], bool) and doc["commit"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind
    assert "| decode | 12 |" in capsys.readouterr().out


def _report(cudnn_benchmark: bool) -> dict:
    rows = [{"path": "refiner fp32 b1", "group": "refiner", "batch": 1, "precision": "fp32", "channels_last": False,
             "ms": 12.5, "peak_mb": 733.0, "img_per_s": 80.0},
            {"path": "refiner bf16 channels_last b8", "group": "refiner", "batch": 8, "precision": "bf16",
             "channels_last": True, "ms": 28.0, "peak_mb": 3364.0, "img_per_s": 285.7},
            {"path": "sam vit_l encoder fp32", "group": "sam", "precision": "fp32", "ms": 108.0, "peak_mb": 3365.0},
            {"path": "sam vit_l encoder bf16", "group": "sam", "precision": "bf16", "ms": 31.0, "peak_mb": 2317.0},
            {"path": "ORT providers available", "group": "ort", "available": ["CPUExecutionProvider"]}]
    return {"environment": {"gpu": "NVIDIA H200", "cpu_count": 16, "torch": "2.11.0+cu130", "python": "3.12.3",
                            "cudnn_benchmark": cudnn_benchmark}, "settings": {"size": 1024}, "rows": rows,
            "notes": "as written by gpu_suite.py"}


def test_gpu_suite_provenance_adds_fields_and_keeps_the_report(tmp_path):
    path = tmp_path / "g.json"
    original = _report(False)
    path.write_text(json.dumps(original))
    assert gpu_suite_provenance.main([str(path), "--command", "python3 benchmarks/gpu_suite.py --out g.json",
                                      "--date", "2026-11-29"]) == 0
    doc = json.loads(path.read_text())
    for key, value in original.items():  # readers of the original format still work
        assert doc[key] == value
    assert doc["date"] == "2026-11-29" and doc["commit"] is None and doc["machine"]["gpu"] == "NVIDIA H200"
    assert doc["machine"]["cores"] == 16 and doc["machine"]["load_average_at_start"] is None
    assert "the date given" in doc["provenance_notes"] and "not recorded" in doc["provenance_notes"]
    assert doc["results"]["refiner"]["bf16_cl_b8"]["ms_per_image"] == pytest.approx(3.5)
    assert "| bf16 `channels_last` | 8 | 3.50 | 3,364 |" in doc["tables"]["refiner"]
    assert "| ViT-L (the paper's stage 1) | 108.0 | 31.0 | 3.48× | 3,365 / 2,317 |" in doc["tables"]["sam"]


def test_gpu_suite_provenance_refuses_other_files(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="not a gpu_suite.py report"):
        gpu_suite_provenance.main([str(path), "--command", "x", "--date", "2026-01-01"])


@pytest.mark.slow
def test_a_benchmark_script_writes_its_results_file(tmp_path):
    out = tmp_path / "synthetic.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synthetic.py"), "--n", "1", "--out", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    doc = json.loads(out.read_text())
    assert doc["script"] == "benchmarks/synthetic.py" and doc["command"].endswith(f"--n 1 --out {out}")
    lines = doc["tables"]["synthetic"].splitlines()
    assert lines[0] == "| step (512x512) | seconds per sample |" and len(lines) == 6
    assert set(doc["results"]["by_kind_s"]) >= {"tree", "fence"} and doc["results"]["grabcut_mask_s"] > 0
