"""``dissam eval`` through the real entry point, folder evaluation and the benchmark table."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import sys

import cv2
import numpy as np
import pytest

from dissam.cli import main
from dissam.errors import DatasetError
from dissam.evaluate import (
    TEST_MEAN,
    evaluate_folders,
    evaluate_table,
    mean_over_splits,
    pair_files,
)
from dissam.evaluation_tables import format_table
from dissam.metrics import ALL_METRICS, MetricSuite

FAST = ["maxFm", "MAE", "mIoU"]


@pytest.fixture(scope="module")
def expected(fixtures_dir):
    return json.loads((fixtures_dir / "metrics" / "expected.json").read_text())


def _copy_subset(fixtures_dir, dst, names):
    for sub in ("pred", "gt"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy(fixtures_dir / "metrics" / sub / n, dst / sub / n)
    return dst / "pred", dst / "gt"


def test_cli_eval_writes_json_and_csv(fixtures_dir, expected, tmp_path, capsys):
    m = fixtures_dir / "metrics"
    rc = main(
        ["eval", "--pred", str(m / "pred"), "--gt", str(m / "gt"), "--json", str(tmp_path / "o.json"),
         "--csv", str(tmp_path / "o.csv"), "--skeleton-cache", str(tmp_path / "skel"), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert list(out["aggregate"]) == list(ALL_METRICS)
    for k in ALL_METRICS:
        assert out["aggregate"][k] == pytest.approx(expected["aggregate"][k], abs=1e-6), k
    assert [r["name"] for r in out["per_image"]] == [r["name"] for r in expected["per_image"]]
    assert "opencv" in out["versions"] and out["n_images"] == 18
    assert len(out["curves"]["fm"]) == 256
    rows = list(csv.reader(io.StringIO((tmp_path / "o.csv").read_text())))
    assert rows[0] == ["name", *ALL_METRICS] and len(rows) == 20 and rows[-1][0] == "mean"
    assert float(rows[-1][1]) == out["aggregate"]["maxFm"]
    assert len(list((tmp_path / "skel").glob("*.png"))) > 0
    printed = capsys.readouterr().out
    assert "maxFm: 0.8021" in printed and "OpenCV" in printed


def test_workers_2_equals_serial(fixtures_dir, tmp_path):
    names = sorted(p.name for p in (fixtures_dir / "metrics" / "pred").iterdir())[:7]
    pred, gt = _copy_subset(fixtures_dir, tmp_path, names)
    serial = evaluate_folders(pred, gt, workers=1, progress=False, skeleton_cache=None)
    par = evaluate_folders(pred, gt, workers=2, progress=False, skeleton_cache=tmp_path / "skel")
    assert par["aggregate"] == serial["aggregate"]
    assert par["per_image"] == serial["per_image"]
    assert par["curves"] == serial["curves"]


def test_missing_pairs_are_listed(fixtures_dir, tmp_path, capsys):
    pred, gt = _copy_subset(
        fixtures_dir, tmp_path, ["00_soft_blur.png", "01_binary_sam.png", "02_shifted.png"]
    )
    (pred / "01_binary_sam.png").unlink()
    shutil.copy(gt / "00_soft_blur.png", pred / "zz_extra.png")
    rc = main(["eval", "--pred", str(pred), "--gt", str(gt), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "zz_extra.png" in err and "01_binary_sam.png" in err
    assert "without ground truth" in err and "without prediction" in err


def test_empty_and_missing_folder(tmp_path, fixtures_dir, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["eval", "--pred", str(tmp_path / "empty"), "--gt", str(fixtures_dir / "metrics" / "gt")])
    assert rc == 1 and "holds no image files" in capsys.readouterr().err
    rc = main(["eval", "--pred", str(tmp_path / "nope"), "--gt", str(fixtures_dir / "metrics" / "gt")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_unreadable_file(fixtures_dir, tmp_path, capsys):
    pred, gt = _copy_subset(fixtures_dir, tmp_path, ["00_soft_blur.png", "01_binary_sam.png"])
    (pred / "01_binary_sam.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc = main(["eval", "--pred", str(pred), "--gt", str(gt), "--metrics", "MAE", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "could not be read" in err and "01_binary_sam.png" in err


def test_size_mismatch_is_resized_with_warning(fixtures_dir, tmp_path, caplog):
    pred, gt = _copy_subset(fixtures_dir, tmp_path, ["00_soft_blur.png", "05_thin_lines.png"])
    p = cv2.imread(str(pred / "05_thin_lines.png"), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(pred / "05_thin_lines.png"), small)
    with caplog.at_level(logging.WARNING, logger="dissam.evaluate"):
        out = evaluate_folders(pred, gt, metrics=FAST, progress=False)
    assert len(out["warnings"]) == 1 and "05_thin_lines.png" in out["warnings"][0]
    assert "resized" in caplog.text
    g = cv2.imread(str(gt / "05_thin_lines.png"), cv2.IMREAD_GRAYSCALE)
    ref = MetricSuite(FAST)
    ref.step(cv2.imread(str(pred / "00_soft_blur.png"), 0), cv2.imread(str(gt / "00_soft_blur.png"), 0))
    ref.step(cv2.resize(small, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR), g)
    assert out["aggregate"] == ref.results()


def test_pairing_by_stem(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    img = np.zeros((8, 8), np.uint8)
    cv2.imwrite(str(tmp_path / "p" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "g" / "a.bmp"), img)
    assert [n for n, _, _ in pair_files(tmp_path / "p", tmp_path / "g")] == ["a.png"]
    cv2.imwrite(str(tmp_path / "p" / "a.jpg"), img)
    with pytest.raises(DatasetError, match="same name stem"):
        pair_files(tmp_path / "p", tmp_path / "g")


def test_metrics_option(fixtures_dir, tmp_path, capsys):
    m = fixtures_dir / "metrics"
    rc = main(["eval", "--pred", str(m / "pred"), "--gt", str(m / "gt"), "--metrics", "MAE,maxFm",
               "--json", str(tmp_path / "o.json"), "--no-progress"])  # fmt: skip
    assert rc == 0
    assert list(json.loads((tmp_path / "o.json").read_text())["aggregate"]) == ["maxFm", "MAE"]
    assert main(["eval", "--pred", str(m / "pred"), "--gt", str(m / "gt"), "--metrics", "Fmax"]) == 1
    assert "unknown metric" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# table


def test_format_table_exact():
    results = {
        "DIS-SAM": {
            "DIS-VD": {"maxFm": 0.91234, "MAE": 0.0321, "HCE": 1024.6},
            "DIS-TE1": {"maxFm": 0.9, "MAE": 0.04, "HCE": 150.4},
        },
        "IS-Net": {
            "DIS-VD": {"maxFm": 0.791, "MAE": 0.074, "HCE": 1116.0},
            "DIS-TE1": {"maxFm": 0.74, "MAE": 0.0746, "HCE": 149.0, "robust_maxFm": 0.5},
        },
    }
    md, csv_text = format_table(results, ["DIS-VD", "DIS-TE1"], ["DIS-SAM", "IS-Net"])
    assert md == (
        "| Split | Metric | DIS-SAM | IS-Net |\n"
        "|---|---|---:|---:|\n"
        "| DIS-VD | maxFm ↑ | 0.912 | 0.791 |\n"
        "|  | MAE ↓ | 0.032 | 0.074 |\n"
        "|  | HCE ↓ | 1025 | 1116 |\n"
        "| DIS-TE1 | maxFm ↑ | 0.900 | 0.740 |\n"
        "|  | MAE ↓ | 0.040 | 0.075 |\n"
        "|  | HCE ↓ | 150 | 149 |\n"
        "|  | robust_maxFm | - | 0.500 |\n"
    )
    assert csv_text == (
        "split,metric,DIS-SAM,IS-Net\n"
        "DIS-VD,maxFm,0.91234,0.791\n"
        "DIS-VD,MAE,0.0321,0.074\n"
        "DIS-VD,HCE,1024.6,1116.0\n"
        "DIS-TE1,maxFm,0.9,0.74\n"
        "DIS-TE1,MAE,0.04,0.0746\n"
        "DIS-TE1,HCE,150.4,149.0\n"
        "DIS-TE1,robust_maxFm,,0.5\n"
    )


def _make_layout(root, fixtures_dir, methods, splits, n=2):
    """PREDS/<method>/<split>/*.png and DIS5K/<split>/gt/*.png from fixture pairs."""
    names = sorted(p.name for p in (fixtures_dir / "metrics" / "gt").iterdir())
    for i, split in enumerate(splits):
        chosen = names[i * n : i * n + n]
        (root / "DIS5K" / split / "gt").mkdir(parents=True)
        for name in chosen:
            shutil.copy(fixtures_dir / "metrics" / "gt" / name, root / "DIS5K" / split / "gt" / name)
        for j, method in enumerate(methods):
            d = root / "PREDS" / method / split
            d.mkdir(parents=True)
            for name in chosen:
                src = fixtures_dir / "metrics" / ("gt" if j == 0 else "pred") / name
                shutil.copy(src, d / name)


def test_evaluate_table_with_test_mean(fixtures_dir, tmp_path):
    splits = ["DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4"]
    _make_layout(tmp_path, fixtures_dir, ["oracle", "model"], splits, n=1)
    out = evaluate_table(tmp_path / "DIS5K", tmp_path / "PREDS", splits, metrics=FAST, progress=False)
    assert out["methods"] == ["model", "oracle"]
    assert out["splits"] == [*splits, TEST_MEAN]
    res = out["results"]
    te = [res["model"][s] for s in splits[1:]]
    for k in FAST:
        assert res["model"][TEST_MEAN][k] == pytest.approx(np.mean([t[k] for t in te]), abs=1e-15)
    assert res["oracle"]["DIS-TE1"]["MAE"] == 0.0 and res["oracle"]["DIS-TE1"]["mIoU"] == 1.0
    assert mean_over_splits({"a": {"x": 1.0}, "b": {"x": 2.0, "y": 1.0}}, ["a", "b"]) == {"x": 1.5}


def test_cli_table_files_and_plot(fixtures_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _make_layout(tmp_path, fixtures_dir, ["oracle", "model"], ["DIS-VD", "DIS-TE1"])
    rc = main(["eval", "--table", "--gt-root", str(tmp_path / "DIS5K"), "--pred-root", str(tmp_path / "PREDS"),
               "--splits", "DIS-VD,DIS-TE1", "--metrics", *FAST, "--out-dir", str(tmp_path / "out"), "--plot",
               "--no-progress"])  # fmt: skip
    assert rc == 0
    out_dir = tmp_path / "out"
    data = json.loads((out_dir / "results.json").read_text())
    md, csv_text = format_table(data["results"], data["splits"], data["methods"])
    assert (out_dir / "table.md").read_text() == md
    assert (out_dir / "table.csv").read_text() == csv_text
    assert md in capsys.readouterr().out
    assert TEST_MEAN not in data["splits"]  # only 1 of the 4 test splits
    for split in ("DIS-VD", "DIS-TE1"):
        png = cv2.imread(str(out_dir / f"curves_{split}.png"))
        assert png is not None and png.shape[0] > 100


def test_cli_table_reports_missing_split_and_plot_dependency(fixtures_dir, tmp_path, capsys, monkeypatch):
    _make_layout(tmp_path, fixtures_dir, ["a"], ["DIS-VD"])
    args = ["eval", "--table", "--gt-root", str(tmp_path / "DIS5K"), "--pred-root", str(tmp_path / "PREDS"),
            "--metrics", "MAE", "--no-progress"]  # fmt: skip
    assert main([*args, "--splits", "DIS-VD", "DIS-TE1"]) == 1
    err = capsys.readouterr().err
    assert "[a / DIS-TE1]" in err and "does not exist" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main([*args, "--splits", "DIS-VD", "--out-dir", str(tmp_path / "o"), "--plot"]) == 1
    assert "pip install 'dissam[plot]'" in capsys.readouterr().err
