"""The click simulation protocol (dissam.clicks) on hand-computed cases, and ``dissam clicks`` over a
data set (per-case files, resume, the summary)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dissam.cli import main
from dissam.clicks import Click, ClickTrace, next_click, noc, simulate, summarize
from dissam.paper_tables.clicks import ClicksConfig, run_clicks, summary_table
from dissam.prediction import Prediction


def _rect(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return m


# ------------------------------------------------------------------ where the next click goes
def test_first_click_goes_to_the_object_centre():
    gt = _rect((10, 15), (2, 6), (3, 11))  # 5 x 9: 3 px deep on row 4, columns 5..9
    assert next_click(np.zeros_like(gt), gt) == Click(5, 4, True)  # the first of them in row-major order


def test_negative_click_at_the_centre_of_the_false_positive():
    gt = _rect((20, 30), (5, 14), (2, 11))
    pred = gt | _rect((20, 30), (5, 11), (18, 24))  # a separate 7 x 7 false positive, 4 px deep at (21, 8)
    assert next_click(pred, gt) == Click(21, 8, False)


def test_the_deeper_error_wins_and_ties_go_negative():
    gt = _rect((20, 30), (2, 11), (2, 11))
    missed = gt & ~_rect((20, 30), (4, 8), (4, 8))  # a 5 x 5 hole (3 deep)...
    pred = missed | _rect((20, 30), (2, 4), (20, 22))  # ...and a 3 x 3 false positive (2 deep)
    assert next_click(pred, gt) == Click(6, 6, True)
    pred = missed | _rect((20, 30), (2, 6), (20, 24))  # a 5 x 5 false positive: as deep as the hole
    assert next_click(pred, gt) == Click(22, 4, False)


def test_image_border_counts_as_a_border_and_perfect_means_no_click():
    gt = np.ones((5, 5), bool)
    assert next_click(np.zeros_like(gt), gt) == Click(2, 2, True)
    assert next_click(gt, gt) is None
    with pytest.raises(ValueError, match="differ in size"):
        next_click(gt, np.ones((4, 5), bool))


# ------------------------------------------------------------------ the simulation and NoC
SHAPE = (14, 32)
A = _rect(SHAPE, (2, 11), (2, 11))  # object part A, 10 x 10
B = _rect(SHAPE, (2, 11), (20, 29))  # object part B, 10 x 10, 5 px deep at rows 6-7, columns 24-25
C = _rect(SHAPE, (2, 6), (14, 18))  # a 5 x 5 false positive, 3 px deep at (16, 4)
GT = A | B


def _components_segmenter(start: np.ndarray, calls: list):
    """A fake model: the start mask; a positive click adds the ground-truth part under it, a negative
    click removes the mask part under it. Records the state it is handed."""
    import cv2

    def segment(coords, labels, state):
        calls.append(state)
        mask = start.copy()
        for (x, y), label in zip(coords.astype(int), labels):
            source = GT if label else mask
            _, parts = cv2.connectedComponents(source.astype(np.uint8))
            part = parts == parts[y, x]
            mask = (mask | part) if label else (mask & ~part)
        return mask, mask, len(calls)

    return segment


def test_simulation_clicks_iou_and_noc_by_hand():
    calls: list = []
    trace = simulate(_components_segmenter(A | C, calls), GT)
    # start: A and C (IoU 100 / 225); B is the deepest error (5 px): a positive click at its centre;
    # then C (3 px): a negative click; then nothing is wrong and the simulation stops
    assert trace.clicks == [Click(24, 6, True), Click(16, 4, False)]
    np.testing.assert_allclose(trace.ious[:3], [100 / 225, 200 / 225, 1.0])
    assert (trace.ious[3:] == 1.0).all() and len(trace.ious) == 21  # carried forward to click 20
    assert calls == [None, 1, 2]  # each step gets what the previous one returned (mask_input)
    assert noc(trace.ious, 0.85) == 1 and noc(trace.ious, 0.90) == 2
    # without a start prompt the first click lands in the object (A comes first in row-major order)
    calls.clear()
    clicks_only = simulate(_components_segmenter(np.zeros(SHAPE, bool), calls), GT, start=False)
    assert clicks_only.clicks[:2] == [Click(6, 6, True), Click(24, 6, True)]
    assert np.isnan(clicks_only.ious[0]) and clicks_only.ious[1] == 0.5 and clicks_only.ious[2] == 1.0
    assert noc(clicks_only.ious, 0.9) == 2


def test_stopping_rule_and_cases_that_never_get_there():
    stuck = simulate(lambda c, lab, s: (A, None, None), GT, max_clicks=20)
    assert len(stuck.clicks) == 20 and np.allclose(stuck.ious, 0.5)  # every click at B's centre, in vain
    assert noc(stuck.ious, 0.85) == 20 and np.isnan(stuck.coarse_ious).all()
    # good from the start: clicks go on until min_clicks (for IoU@5), then stop
    calls = []
    almost = GT & ~_rect(SHAPE, (11, 11), (2, 2))  # one pixel missed
    good = simulate(lambda c, lab, s: (calls.append(1) or almost, almost, None), GT, min_clicks=5)
    assert len(good.clicks) == 5 and len(calls) == 6 and noc(good.ious, 0.9) == 0


def test_noc_and_summary_by_hand():
    nan = np.nan
    assert noc([nan, 0.5, 0.86, 0.91], 0.85) == 2 and noc([nan, 0.5, 0.86, 0.91], 0.9) == 3
    assert noc([0.95, 0.5], 0.9) == 0 and noc([nan, 0.1, 0.2], 0.9, max_clicks=20) == 20
    t1 = ClickTrace([Click(0, 0, True)] * 5, np.array([0.5, 0.86, 0.91, 0.91, 0.95, 0.95]),
                    np.array([0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))
    t2 = ClickTrace([Click(0, 0, False)] * 5, np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
                    np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7]))
    s = summarize([t1, t2], iou_at=(1, 3, 5), max_clicks=5)
    assert s["cases"] == 2 and s["NoC@85"] == (1 + 5) / 2 and s["NoC@90"] == (2 + 5) / 2 and s["NoF@90"] == 1
    assert s["IoU@0"] == pytest.approx(0.35) and s["IoU@1"] == pytest.approx(0.58) and s["IoU@5"] == pytest.approx(0.825)
    assert s["coarse NoC@90"] == (5 + 5) / 2 and s["coarse IoU@5"] == pytest.approx(0.8)
    assert ClickTrace.from_json(json.loads(json.dumps(t1.to_json()))).clicks == t1.clicks
    assert "| all |" not in summary_table({"x": s}) and summary_table({"x": s}).count("\n") == 3


# ------------------------------------------------------------------ over a data set
def _dataset(root, n=2):
    rng = np.random.default_rng(0)
    for sub in ("im", "gt"):
        (root / "set" / sub).mkdir(parents=True)
    for i in range(n):
        img = np.clip(rng.normal(110, 8, (48, 64, 3)), 0, 255).astype(np.uint8)
        gt = np.zeros((48, 64), np.uint8)
        gt[10:38, 12 + 4 * i:40 + 4 * i] = 255
        img[gt > 0] = (210, 60, 50)
        Image.fromarray(img).save(root / "set" / "im" / f"s{i}.png")
        Image.fromarray(gt).save(root / "set" / "gt" / f"s{i}.png")
    return root / "set"


class FakePredictor:
    """Fills the box, minus a margin; clicks are ignored (enough to test the plumbing)."""

    def __init__(self):
        self.images = 0

    def set_image(self, image):
        self.image = np.asarray(image)
        self.images += 1

    def predict(self, prompts):
        x0, y0, x1, y1 = (int(v) for v in prompts[0].box)
        m = np.zeros(self.image.shape[:2], bool)
        m[y0 + 2:y1 + 1, x0:x1 + 1] = True
        return [Prediction(m.astype(np.float32), m, m, prompts[0].box, None)]


def test_run_clicks_writes_cases_resumes_and_summarizes(tmp_path):
    data = _dataset(tmp_path)
    cfg = ClicksConfig(data=str(data), run_dir=str(tmp_path / "run"), max_clicks=3, progress=False)
    fake = FakePredictor()
    out = run_clicks(cfg, predictor=fake)
    assert out["computed"] == 2 and out["reused"] == 0 and fake.images == 2 and not out["failures"]
    case = json.loads((tmp_path / "run" / "clicks" / "set" / "s0.json").read_text())
    assert case["box"] == [12, 10, 39, 37] and len(case["trace"]["ious"]) == 4
    assert case["trace"]["ious"][0] == pytest.approx(26 / 28)  # the box minus its top two rows
    summary = json.loads((tmp_path / "run" / "clicks.json").read_text())["summary"]
    assert summary["all"]["cases"] == 2 and summary["all"]["NoC@85"] == 0 and summary["all"]["NoC@90"] == 0
    assert "| set | 2 |" in (tmp_path / "run" / "clicks.md").read_text()
    again = run_clicks(cfg, predictor=fake)
    assert again["reused"] == 2 and again["computed"] == 0 and fake.images == 2
    changed = run_clicks(ClicksConfig(**{**cfg.__dict__, "max_clicks": 4}), predictor=fake)
    assert changed["computed"] == 2  # other settings: the cases are redone


def test_clicks_command_end_to_end(tmp_path, tiny_refiner, capsys):
    from dissam.checkpoints import save_checkpoint

    data = _dataset(tmp_path, n=1)
    ck = save_checkpoint(tmp_path / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    args = ["clicks", "--data", str(data), "-o", str(tmp_path / "run"), "--stage1", "grabcut", "--refiner", str(ck),
            "--max-clicks", "2", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "NoC@90" in printed and "1 case(s) simulated" in printed
    case = json.loads((tmp_path / "run" / "clicks" / "set" / "s0.json").read_text())
    assert len(case["trace"]["ious"]) == 3 and len(case["trace"]["seconds"]) == len(case["trace"]["clicks"]) + 1
    assert main(["clicks", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "r2")]) == 1
