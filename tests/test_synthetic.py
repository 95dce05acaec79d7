"""Synthetic DIS-like data: determinism, exact coverage GT, thin structures, layout, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dissam.boxes import box_from_mask
from dissam.data.synthetic import (
    KINDS,
    SUPERSAMPLE,
    coverage,
    coverage_to_u8,
    draw_rectangle,
    generate_dataset,
    generate_sample,
    sample_stem,
)
from dissam.errors import DatasetError
from dissam.io import read_image, read_mask

SMALL = (64, 96)


def test_sample_is_deterministic_and_seed_dependent():
    a = generate_sample(5, seed=7, size_range=SMALL)
    b = generate_sample(5, seed=7, size_range=SMALL)
    c = generate_sample(5, seed=8, size_range=SMALL)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1]) or not np.array_equal(a[0], c[0])


def test_shapes_dtypes_and_sizes():
    for i in range(4):
        image, gt, box = generate_sample(i, seed=1, size_range=SMALL)
        h, w = gt.shape
        assert SMALL[0] <= h <= SMALL[1] and SMALL[0] <= w <= SMALL[1]
        assert image.shape == (h, w, 3) and image.dtype == np.uint8 and gt.dtype == np.uint8
        assert box.dtype == np.int64 and box.shape == (4,)
    image, gt, _ = generate_sample(0, seed=1, size=(50, 70))
    assert gt.shape == (50, 70) and image.shape == (50, 70, 3)


def test_rectangle_coverage_is_exact():
    cov = coverage(draw_rectangle(20, 30, 4, 3, 17, 11))
    gt = coverage_to_u8(cov)
    inside = np.zeros((20, 30), bool)
    inside[3:11, 4:17] = True
    assert (gt[inside] == 255).all() and (gt[~inside] == 0).all()
    # half a pixel covered -> 0.5 exactly -> 128 (round half to even of 127.5)
    c = np.zeros((2 * SUPERSAMPLE, 2 * SUPERSAMPLE), np.uint8)
    c[:, : SUPERSAMPLE // 2] = 1
    assert coverage(c)[0, 0] == 0.5 and coverage_to_u8(coverage(c))[0, 0] == 128


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gt_levels_are_coverage_fractions(kind):
    _, gt, box = generate_sample(3, seed=0, size=160, kind=kind)
    levels = {int(v) for v in np.rint(np.arange(SUPERSAMPLE**2 + 1) * 255.0 / SUPERSAMPLE**2)}
    assert set(np.unique(gt).tolist()) <= levels
    assert (gt == 255).any() and ((gt > 0) & (gt < 255)).any()  # solid and anti-aliased pixels
    np.testing.assert_array_equal(box, box_from_mask(gt > 0))


def _thin_runs(gt: np.ndarray) -> int:
    """Number of horizontal or vertical runs of ``gt > 0`` at most 2 px long that reach >= 128."""
    count = 0
    for m, v in ((gt > 0, gt), ((gt > 0).T, gt.T)):
        for row, vals in zip(m, v, strict=True):
            d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
            starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
            for s, e in zip(starts, ends, strict=True):
                if e - s <= 2 and vals[s:e].max() >= 128:
                    count += 1
    return count


@pytest.mark.parametrize("kind", ["tree", "wheel", "insect", "fence"])
def test_thin_structures_reach_one_pixel(kind):
    total = sum(_thin_runs(generate_sample(i, seed=0, size=256, kind=kind)[1]) for i in range(3))
    assert total >= 20


def test_distractors_are_not_in_gt():
    # the GT is one object's coverage: its box is a single object and the area outside it is zero
    for i in range(6):
        image, gt, box = generate_sample(i, seed=2, size=128)
        x0, y0, x1, y1 = box
        outside = np.ones_like(gt, bool)
        outside[y0 : y1 + 1, x0 : x1 + 1] = False
        assert (gt[outside] == 0).all()
        # the image outside the box is not flat: background and distractors are there
        assert image[outside].std() > 0


def test_dataset_layout_and_independence_of_n(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    boxes_a = generate_dataset(a, 3, seed=4, size_range=SMALL, masks="degrade", progress=False)
    boxes_b = generate_dataset(b, 5, seed=4, size_range=SMALL, masks="degrade", progress=False, workers=2)
    assert list(boxes_a) == [sample_stem(i) for i in range(3)]
    assert json.loads((a / "boxes.json").read_text()) == boxes_a
    for stem, box in boxes_a.items():
        assert boxes_b[stem] == box
        for sub, ext in (("im", "jpg"), ("gt", "png"), ("mask", "png")):
            assert (a / sub / f"{stem}.{ext}").read_bytes() == (b / sub / f"{stem}.{ext}").read_bytes()
        image, gt = read_image(a / "im" / f"{stem}.jpg"), read_mask(a / "gt" / f"{stem}.png")
        assert image.shape[:2] == gt.shape
        assert box == box_from_mask(gt > 0).astype(int).tolist()
        mask = read_mask(a / "mask" / f"{stem}.png")
        assert set(np.unique(mask).tolist()) <= {0, 255}
    # the same command writes the same bytes again
    generate_dataset(a, 3, seed=4, size_range=SMALL, masks="degrade", progress=False)
    for stem in boxes_a:
        assert (a / "im" / f"{stem}.jpg").read_bytes() == (b / "im" / f"{stem}.jpg").read_bytes()


def test_errors():
    with pytest.raises(DatasetError, match="kind"):
        generate_sample(0, kind="spaceship")
    with pytest.raises(DatasetError, match="mask source"):
        generate_dataset("/nonexistent-never-written", 1, masks="sam", progress=False)
    with pytest.raises(DatasetError, match="size"):
        generate_sample(0, size_range=(100, 50))


def test_cli_synth(tmp_path, capsys):
    from dissam.cli import main

    out = tmp_path / "syn"
    assert main(["synth", str(out), "-n", "2", "--size-min", "64", "--size-max", "80", "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "im").iterdir()) == ["synth_000000.jpg", "synth_000001.jpg"]
    assert sorted(json.loads((out / "boxes.json").read_text())) == ["synth_000000", "synth_000001"]
    assert not (out / "mask").exists()
    assert main(["synth", str(tmp_path / "x"), "-n", "0"]) == 1
    assert "-n must be at least 1" in capsys.readouterr().err


def test_bundled_examples_match_the_generator():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples"
    spec = importlib.util.spec_from_file_location("make_examples", root / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    prompts = json.loads((root / "prompts.json").read_text())
    assert sorted(prompts) == sorted(f"{stem}.jpg" for stem, *_ in (*mod.EXAMPLES, *mod.PHOTO_EXAMPLES))
    for stem, name, entry in mod.PHOTO_EXAMPLES:  # the real photographs, as scikit-image ships them
        photo, box = mod.photo_example(name, entry)
        assert prompts[f"{stem}.jpg"] == [box]
        bundled = read_image(root / "images" / f"{stem}.jpg").astype(np.int16)
        assert bundled.shape == photo.shape and np.abs(bundled - photo).mean() < 4
    for stem, index, kind, bg in mod.EXAMPLES:
        image, gt, box = generate_sample(index, mod.SEED, size=(480, 640), kind=kind, background_kind=bg)
        assert prompts[f"{stem}.jpg"] == [box.tolist()]
        np.testing.assert_array_equal(read_mask(root / "gt" / f"{stem}.png"), gt)
        bundled = read_image(root / "images" / f"{stem}.jpg").astype(np.int16)
        assert bundled.shape == image.shape
        assert np.abs(bundled - image).mean() < 4  # JPEG q88 of the same pixels


def test_multi_target_ground_truths_split_under_enrichment():
    """--max-targets: max_targets=1 is exactly the single-target generator; with K > 1 the GT holds
    1..K objects in separate slots under one box, and enrichment finds the separate objects."""
    from dissam.data.enrich import components

    for i in range(3):
        for x, y in zip(
            generate_sample(i, seed=5, size_range=SMALL),
            generate_sample(i, seed=5, size_range=SMALL, max_targets=1),
            strict=True,
        ):
            np.testing.assert_array_equal(x, y)
    seen_multi = 0
    for i in range(12):
        image, gt, box = generate_sample(i, seed=9, size_range=(256, 320), max_targets=3)
        again = generate_sample(i, seed=9, size_range=(256, 320), max_targets=3)
        np.testing.assert_array_equal(gt, again[1])
        np.testing.assert_array_equal(image, again[0])
        assert box.tolist() == box_from_mask(gt > 0).astype(int).tolist()
        comps = components(gt)
        if 0 in comps:  # several components survive the 0.4 % area filter: enrichment splits them
            seen_multi += 1
            assert len(comps) >= 3
            np.testing.assert_array_equal(comps[0], gt >= 128)
    single = sum(0 in components(generate_sample(i, seed=9, size_range=(256, 320))[1]) for i in range(12))
    assert seen_multi >= 4 and seen_multi > single
    with pytest.raises(DatasetError, match="max_targets"):
        generate_sample(0, max_targets=0)


def test_cli_synth_max_targets(tmp_path):
    from dissam.cli import main

    out = tmp_path / "multi"
    assert (
        main(
            [
                "synth",
                str(out),
                "-n",
                "2",
                "--size-min",
                "96",
                "--size-max",
                "128",
                "--max-targets",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    ref = generate_sample(0, 0, size_range=(96, 128), max_targets=3)[1]
    np.testing.assert_array_equal(read_mask(out / "gt" / "synth_000000.png"), ref)


@pytest.mark.parametrize("max_targets", [1, 3])
def test_smallest_sizes_render(max_targets):
    """Every size the generator accepts renders (a 9 px distractor blob once asked for a hole radius
    in [1, 0.72))."""
    for i in range(60):
        image, gt, box = generate_sample(i, seed=i % 7, size_range=(32, 48), max_targets=max_targets)
        assert image.shape[:2] == gt.shape and gt.max() > 0
