"""Point prompts: validation, SAM's selection advice, seeds, the boxes derived from points, prompts
files with clicks and the command line's --point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dissam.errors import BoxError, DisSamError, PointError
from dissam.points import (
    POINT_BOX_GROWTH,
    Prompt,
    make_prompt,
    points_box,
    prompts_from_arrays,
    refiner_box,
    resolve_selection,
    seed_labels,
    seed_radius,
    validate_prompt,
    working_box,
)
from dissam.prompts import load_prompt_file, load_prompts, parse_point, prompts_for_image

HW = (100, 200)


def test_make_and_validate_prompt_shapes():
    p = validate_prompt(make_prompt([10, 20, 80, 90], [[30, 40], [50, 60]], [1, 0]), HW)
    assert p.box.tolist() == [10, 20, 80, 90] and p.point_coords.shape == (2, 2)
    assert p.point_labels.dtype == np.int64 and p.point_labels.tolist() == [1, 0]
    assert p.has_points and p.num_points == 2 and p.positive().tolist() == [[30, 40]]
    one = make_prompt(None, [5, 6], [1])  # a single (2,) point
    assert one.point_coords.shape == (1, 2)
    empty = make_prompt([0, 0, 10, 10], [], [])  # no points at all: a box prompt
    assert not empty.has_points and empty.point_coords is None
    clipped = validate_prompt(make_prompt([-5, -5, 300, 80]), HW)
    assert clipped.box.tolist() == [0, 0, 199, 80]
    xywh = validate_prompt(make_prompt([10, 20, 30, 40]), HW, "xywh")
    assert xywh.box.tolist() == [10, 20, 40, 60]


@pytest.mark.parametrize("coords, labels, match", [
    ([[1, 2, 3]], [1], "P x 2"),
    ([[1, 2]], [1, 0], "one label per point"),
    ([[1, 2]], [2], "1 \\(object\\) or 0"),
    ([[np.nan, 2]], [1], "non-finite"),
    ([[1, 2]], None, "give both"),
])
def test_bad_points(coords, labels, match):
    with pytest.raises(PointError, match=match):
        make_prompt(None, coords, labels)


def test_points_must_lie_on_the_image():
    validate_prompt(make_prompt(None, [[-0.5, 0], [199.49, 99.4]], [1, 1]), HW)  # rounds to pixels of the image
    with pytest.raises(PointError, match=r"point 1 \(200, 5\) lies outside the 200x100 image"):
        validate_prompt(make_prompt(None, [[3, 3], [200, 5]], [1, 0]), HW)
    with pytest.raises(PointError, match="give a box, points or both"):
        validate_prompt(Prompt(), HW)
    with pytest.raises(BoxError, match="inverted"):
        validate_prompt(make_prompt([50, 50, 10, 10], [[3, 3]], [1]), HW)
    with pytest.raises(PointError, match="1 x h x w"):
        make_prompt([0, 0, 5, 5], mask_input=np.zeros((2, 4, 4)))


def test_prompts_from_arrays_pairs_lists():
    ps = prompts_from_arrays(boxes=[[0, 0, 9, 9], [5, 5, 20, 20]], point_coords=[None, [[7, 7]]],
                             point_labels=[None, [0]])
    assert len(ps) == 2 and not ps[0].has_points and ps[1].point_labels.tolist() == [0]
    with pytest.raises(PointError, match="one entry per object"):
        prompts_from_arrays(boxes=[[0, 0, 9, 9]], point_coords=[None, None])


def test_selection_follows_sams_advice():
    box_only = make_prompt([0, 0, 9, 9])
    one_point = make_prompt(None, [[3, 3]], [1])
    box_and_point = make_prompt([0, 0, 9, 9], [[3, 3]], [1])
    two_points = make_prompt(None, [[3, 3], [5, 5]], [1, 0])
    iterated = make_prompt(None, [[3, 3]], [1], mask_input=np.zeros((1, 4, 4)))
    assert resolve_selection(box_only, "first", "auto") == "first"  # the paper's pipeline is unchanged
    assert resolve_selection(box_only, "best", "single") == "best"
    assert resolve_selection(one_point) == "best"  # ambiguous: the best of three
    assert [resolve_selection(p) for p in (box_and_point, two_points, iterated)] == ["single"] * 3
    assert resolve_selection(one_point, "first", "first") == "first"
    with pytest.raises(PointError, match="unknown point mask selection"):
        resolve_selection(one_point, "first", "bogus")


def test_seed_discs_radius_and_later_click_wins():
    assert seed_radius((480, 640)) == 6 and seed_radius((1024, 1024)) == 10 and seed_radius((20, 30)) == 2
    seeds = seed_labels((20, 30), np.array([[10, 10], [13, 10]]), np.array([1, 0]), 2)
    assert seeds.dtype == np.int8 and set(np.unique(seeds)) == {-1, 0, 1}
    assert seeds[10, 8] == 1 and seeds[10, 10] == 1 and seeds[10, 11] == 0 and seeds[10, 13] == 0  # overlap: later wins
    assert seeds[10, 15] == 0 and seeds[10, 16] == -1 and seeds[12, 10] == 1 and seeds[13, 10] == -1
    # discs of radius 2 hold 13 pixels; the negative one took 2 of the positive one's
    assert (seeds == 0).sum() == 13 and (seeds == 1).sum() == 11


def test_boxes_derived_from_points():
    hw = (400, 400)
    grow = POINT_BOX_GROWTH * 400  # 100 px
    np.testing.assert_array_equal(points_box(np.array([[200, 150]]), np.array([1]), hw),
                                  [200 - grow, 150 - grow, 200 + grow, 150 + grow])
    # a wide spread grows by half of it; negative points do not shape the box; clipped to the image
    np.testing.assert_array_equal(points_box(np.array([[10, 200], [390, 210], [5, 5]]), np.array([1, 1, 0]), hw),
                                  [0, 10, 399, 399])
    with pytest.raises(PointError, match="at least one positive point"):
        points_box(np.array([[5, 5]]), np.array([0]), hw)
    # with a box: grown to hold a positive seed disc outside it, not a negative one
    p = make_prompt([100, 100, 200, 200], [[250, 150], [20, 20]], [1, 0])
    np.testing.assert_array_equal(working_box(p, hw, 6), [100, 100, 256, 200])


def test_refiner_box_rule():
    hw = (100, 200)
    coarse = np.zeros(hw, bool)
    coarse[20:40, 50:90] = True
    box = make_prompt([40, 10, 120, 60], [[60, 30]], [1])
    np.testing.assert_array_equal(refiner_box(box, coarse, hw), [40, 10, 120, 60])  # the user's box
    outside = make_prompt([40, 10, 120, 60], [[150, 80]], [1])
    coarse2 = coarse.copy()
    coarse2[75:85, 140:160] = True
    np.testing.assert_array_equal(refiner_box(outside, coarse2, hw), [40, 10, 159, 84])  # grown to the mask
    no_box = make_prompt(None, [[60, 30]], [1])
    np.testing.assert_array_equal(refiner_box(no_box, coarse, hw), [50, 20, 89, 39])  # tight box of the mask
    empty = np.zeros(hw, bool)
    np.testing.assert_array_equal(refiner_box(no_box, empty, hw), [59, 29, 61, 31])  # the point, widened
    np.testing.assert_array_equal(refiner_box(make_prompt(None, [[60, 30]], [0]), empty, hw), [0, 0, 199, 99])


# ------------------------------------------------------------------ prompts files and --point
def test_parse_point():
    assert parse_point("10,20") == (10.0, 20.0, 1)
    assert parse_point("10 20 0") == (10.0, 20.0, 0)
    for bad, match in (("1", "x,y or x,y,label"), ("1,2,3", "must be 1"), ("a,b", "cannot parse")):
        with pytest.raises(PointError, match=match):
            parse_point(bad)


def test_prompt_file_with_points(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({
        "a.jpg": [[1, 2, 30, 40]],
        "b": [{"box": [5, 6, 70, 80], "points": [[10, 10], [20, 20, 0]]}, {"points": [[3, 4]]}],
        "c": [{"type": "rectangle", "data": [1, 1, 50, 50], "label": 1}, {"type": "point", "data": [10, 10], "label": 0}],
        "d": [{"box": [1, 1, 9, 9], "point_coords": [[2, 2]], "point_labels": [0]}],
        "e": [{"type": "point", "data": [7, 8]}],
    }))
    pr = load_prompt_file(path)
    assert pr["a.jpg"][0].box.tolist() == [1, 2, 30, 40] and not pr["a.jpg"][0].has_points
    b0, b1 = pr["b"]
    assert b0.box.tolist() == [5, 6, 70, 80] and b0.point_coords.tolist() == [[10, 10], [20, 20]]
    assert b0.point_labels.tolist() == [1, 0] and b1.box is None and b1.point_labels.tolist() == [1]
    assert len(pr["c"]) == 1 and pr["c"][0].box.tolist() == [1, 1, 50, 50] and pr["c"][0].point_labels.tolist() == [0]
    assert pr["d"][0].point_labels.tolist() == [0]
    assert pr["e"][0].box is None and pr["e"][0].point_coords.tolist() == [[7, 8]]
    found = prompts_for_image(Path("x/b.png"), pr, [make_prompt([0, 0, 3, 3])])
    assert len(found) == 3 and found[2].box.tolist() == [0, 0, 3, 3]
    # the box-only reader still refuses entries without a box
    with pytest.raises(BoxError, match="cannot read a box"):
        load_prompts(path)


@pytest.mark.parametrize("entry, match", [
    ({"box": [1, 1, 9, 9], "points": []}, "non-empty list"),
    ({"points": [[1, 2, 5]]}, r'\["points"\]\[0\]\[2\] must be 1 \(object\) or 0'),
    ({"points": [[1, "a"]]}, r'\["points"\]\[0\]\[1\] must be a number, not a string \("a"\)'),
    ({"points": [[1, 2, True]]}, r"must be 1 \(object\) or 0 \(background\), not true"),
    ({"points": [[1, 2, 0.5]]}, "must be 1"),
    ({"points": [[1, 2], [3]]}, r'\["points"\]\[1\] must be a point \[x, y\]'),
    ({"points": [[1, 2]] * 1001}, "at most 1000"),
    ({"point_coords": [[1, 2]], "point_labels": [1, 0]}, "same length"),
    ({"label": 1}, "give \"box\", \"points\" or both"),
])
def test_prompt_file_errors_name_file_image_and_entry(tmp_path, entry, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"cat.jpg": [[0, 0, 5, 5], entry]}))
    with pytest.raises(DisSamError, match=match) as info:
        load_prompt_file(path)
    assert 'bad.json, entry ["cat.jpg"][1]' in str(info.value)


@pytest.mark.parametrize("text, match", [
    ('{"a": [{"points": [[NaN, 2]]}]}', r'entry \["a"\]\[0\]\["points"\]\[0\]\[0\] = NaN is not a finite number'),
    ('{"a": [{"points": [[1e400, 2]]}]}', "1e400 is not a finite number in range"),
    ('{"a": [{"points": [[1, ' + "9" * 400 + ']]}]}', r"\(400 digits\) is not a finite number in range"),
    ('{"a": [{"points": [[1, 2, Infinity]]}]}', r"must be 1 \(object\) or 0 \(background\), not Infinity"),
    ('{"a": [{"type": "point", "data": [-Infinity, 2]}]}', "-Infinity is not a finite number"),
    ('{"a": ' + "[" * 100 + "]" * 100 + "}", "nested deeper than 32 levels"),
])
def test_prompt_file_refuses_unusable_numbers_in_points(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DisSamError, match=match):
        load_prompt_file(path)


def test_parse_point_refuses_non_finite_numbers():
    for bad in ("nan,2", "1,inf", "1e400,3"):
        with pytest.raises(PointError, match="is not a finite number"):
            parse_point(bad)


def test_rembg_points_with_several_rectangles_are_ambiguous(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"a": [{"type": "rectangle", "data": [0, 0, 5, 5]}, {"type": "rectangle", "data": [1, 1, 9, 9]},
                                      {"type": "point", "data": [2, 2], "label": 1}]}))
    with pytest.raises(PointError, match="one rectangle, but there are 2"):
        load_prompt_file(path)


def test_cli_points_go_with_one_box():
    from dissam.commands.predict import _cli_prompts

    [p] = _cli_prompts([[0, 0, 50, 50]], ["10,10", "20,20,0"])
    assert p.box.tolist() == [0, 0, 50, 50] and p.point_labels.tolist() == [1, 0]
    [alone] = _cli_prompts([], ["5,5"])
    assert alone.box is None and alone.point_coords.tolist() == [[5, 5]]
    assert [q.box.tolist() for q in _cli_prompts([[0, 0, 5, 5], [1, 1, 9, 9]], [])] == [[0, 0, 5, 5], [1, 1, 9, 9]]
    with pytest.raises(PointError, match="--point goes with one --box, but 2"):
        _cli_prompts([[0, 0, 5, 5], [1, 1, 9, 9]], ["3,3"])


# ------------------------------------------------------------------ clicks on a weight-free stage's mask
def _correct(image, mask, box, coords, labels, radius=3):
    from dissam.seeds import correct_with_seeds

    coords, labels = np.asarray(coords, float), np.asarray(labels)
    seeds = seed_labels(mask.shape, coords, labels, radius)
    return correct_with_seeds(image, mask, box, seeds, coords, labels, radius)


def test_negative_click_removes_its_colour_through_a_fences_holes_within_its_reach():
    image = np.full((80, 80, 3), (40, 160, 60), np.uint8)  # green background seen through the fence
    image[::10, :] = image[:, ::10] = (90, 60, 30)  # a brown grid, 1 px lines every 10 px
    fence = np.zeros((80, 80), bool)
    fence[::10, :] = fence[:, ::10] = True
    box = [0, 0, 79, 79]
    whole = np.ones((80, 80), bool)  # the mask took the whole box
    # in the middle, 35 px deep: it reaches 70 px, every hole goes and every line stays
    np.testing.assert_array_equal(_correct(image, whole, box, [[45, 45]], [0]), fence)
    # 6 px from the edge, it reaches 12 px: the holes next to it go, the far ones stay
    near_edge = _correct(image, whole, box, [[5, 45]], [0])
    assert not near_edge[45, 5] and not near_edge[45, 15] and near_edge[45, 35] and near_edge[45, 75]
    assert near_edge[fence].all()


def test_a_colour_both_sides_share_flips_the_disc_only():
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), bool)
    for x0 in (5, 35):  # two blue squares, both in the mask
        image[10:30, x0:x0 + 20] = (30, 30, 200)
        mask[10:30, x0:x0 + 20] = True
    out = _correct(image, mask, [0, 0, 59, 39], [[45, 20]], [0], radius=2)
    assert out.sum() == mask.sum() - 13 and not out[20, 45]  # the rest of the mask is blue too: only the disc
    alone = mask.copy()
    alone[:, :30] = False  # with only that square (no other side known), its colour goes
    assert not _correct(image, alone, [0, 0, 59, 39], [[45, 20]], [0]).any()
