from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dissam.errors import BoxError, DisSamError
from dissam.prompts import boxes_for_image, load_prompts, parse_box
from dissam.visualize import cutout, overlay, panel


def test_parse_box():
    assert parse_box("1,2,3,4") == [1, 2, 3, 4]
    assert parse_box("1 2 3.5 4") == [1, 2, 3.5, 4]
    with pytest.raises(BoxError, match="four numbers"):
        parse_box("1,2,3")
    with pytest.raises(BoxError, match="four numbers"):
        parse_box("a,b,c,d")


def test_prompt_file_schemas(tmp_path):
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps({
        "a.jpg": [[1, 2, 3, 4]],
        "b": [{"box": [5, 6, 7, 8]}, {"type": "rectangle", "data": [9, 10, 11, 12], "label": 1}],
        "c.png": [0, 0, 5, 5],
    }))
    pr = load_prompts(p)
    assert boxes_for_image(Path("x/a.jpg"), pr, None) == [[1, 2, 3, 4]]
    assert boxes_for_image(Path("b.png"), pr, [[0, 0, 1, 1]]) == [[5, 6, 7, 8], [9, 10, 11, 12], [0, 0, 1, 1]]
    assert boxes_for_image(Path("c.png"), pr, None) == [[0, 0, 5, 5]]
    assert boxes_for_image(Path("zzz.png"), pr, None) == []


def test_prompt_file_errors(tmp_path):
    with pytest.raises(DisSamError, match="not found"):
        load_prompts(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(DisSamError, match="not valid JSON"):
        load_prompts(bad)
    pts = tmp_path / "pts.json"
    pts.write_text(json.dumps({"a": [{"type": "point", "data": [1, 2], "label": 1}]}))
    with pytest.raises(BoxError, match='"point" is not supported'):
        load_prompts(pts)


def test_cutout_overlay_panel():
    img = np.full((20, 30, 3), 100, np.uint8)
    soft = np.zeros((20, 30), np.float32)
    soft[5:10, 5:15] = 1.0
    rgba = cutout(img, soft)
    assert rgba.shape == (20, 30, 4) and rgba[7, 7, 3] == 255 and rgba[0, 0, 3] == 0
    ov = overlay(img, [soft > 0.5], [[2, 2, 20, 15]])
    assert ov.shape == img.shape and ov.dtype == np.uint8
    assert not np.array_equal(ov[7, 7], img[7, 7])  # tinted inside the mask
    assert np.array_equal(ov[18, 28], img[18, 28])  # untouched far away
    assert tuple(ov[2, 10]) != (100, 100, 100)  # box edge drawn
    pn = panel([img, soft > 0.5, soft], ["a", "b", "c"], height=40)
    assert pn.shape[0] == 40 and pn.shape[2] == 3
