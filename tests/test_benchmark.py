"""``dissam benchmark``: prompts from the GT, saved maps, tables, resuming, jitter, mask/, sharding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dissam.errors import DatasetError, DisSamError
from dissam.paper_tables import (
    BenchmarkConfig,
    Item,
    jitter_box,
    method_name,
    parse_jitters,
    run_benchmark,
    shard,
    whole_gt_box,
)

H, W = 96, 128
METRICS = ["maxFm", "MAE", "mIoU", "mBIoU"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ tiny data


def _gt(kind: str) -> np.ndarray:
    import cv2

    gt = np.zeros((H, W), np.uint8)
    if kind == "rect":
        gt[20:70, 30:90] = 255
    elif kind == "ellipse":
        cv2.ellipse(gt, (64, 48), (40, 25), 20, 0, 360, 255, -1)
    elif kind == "two":  # two components, both above 0.4% of the area
        gt[10:40, 10:40] = 255
        gt[50:85, 70:120] = 255
    return gt


def _image(gt: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
    img[gt > 0] += np.array([150, 100, 60], np.uint8)
    return img


def _make_split(root: Path, split: str, kinds: list[str], seed: int, masks: dict | None = None) -> None:
    from dissam.io import write_png

    for i, kind in enumerate(kinds):
        gt = _gt(kind)
        stem = f"{split.lower()}_{i}_{kind}"
        write_png(root / split / "gt" / f"{stem}.png", gt)
        write_png(root / split / "im" / f"{stem}.png", _image(gt, seed + i))
        if masks is not None and stem in masks:
            write_png(root / split / "mask" / f"{stem}.png", masks[stem])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_data")
    _make_split(root, "DIS-VD", ["rect", "two", "ellipse"], 0)
    _make_split(root, "DIS-TE1", ["ellipse", "rect", "two"], 10)
    return root


def _coarse_like(gt: np.ndarray, shift: int) -> np.ndarray:
    """A stand-in "SAM mask": the GT shifted right and down (deliberately unlike SAM's output)."""
    m = np.zeros_like(gt)
    m[shift:, shift:] = gt[: H - shift, : W - shift]
    return m


@pytest.fixture(scope="module")
def masked_root(tmp_path_factory) -> Path:
    """Two DIS-5K splits whose mask/ folders hold every coarse mask: no SAM needed."""
    root = tmp_path_factory.mktemp("bench_masked")
    for split, kinds, seed in (
        ("DIS-VD", ["rect", "two", "ellipse"], 20),
        ("DIS-TE1", ["two", "rect", "ellipse"], 30),
    ):
        stems = [f"{split.lower()}_{i}_{k}" for i, k in enumerate(kinds)]
        masks = {s: _coarse_like(_gt(k), 3 + i) for i, (s, k) in enumerate(zip(stems, kinds))}
        _make_split(root, split, kinds, seed, masks=masks)
    return root


@pytest.fixture(scope="module")
def refiner_path(tmp_path_factory, tiny_refiner) -> Path:
    from dissam.checkpoints import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("refiner") / "refiner.safetensors", tiny_refiner)


@pytest.fixture(scope="module")
def isnet_path(tmp_path_factory) -> Path:
    import torch

    from dissam.models.isnet import ISNetDIS

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("isnet") / "isnet.pth"
    torch.save(ISNetDIS(3, width=0.25).eval().state_dict(), path)
    return path


def _cli(*argv) -> int:
    from dissam.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_root, tiny_sam_path, refiner_path, isnet_path):
    """One CLI run: dis-sam, sam, isnet and 10% jitter on two splits of three images."""
    run_dir = tmp_path_factory.mktemp("run")
    rc = _cli(
        "benchmark", "--data", data_root, "--splits", "DIS-VD,DIS-TE1", "--sam", tiny_sam_path,
        "--refiner", refiner_path, "--isnet", isnet_path, "--box-jitter", "10", "--jitter-seed", "3",
        "--size", "128", "--device", "cpu", "--metrics", *METRICS, "--no-progress", "-o", run_dir,
    )  # fmt: skip
    assert rc == 0
    return run_dir


def _stems(root: Path, split: str) -> list[str]:
    return sorted(p.stem for p in (root / split / "gt").iterdir())


# ------------------------------------------------------------------ prompts


def test_whole_gt_box_components():
    box, fb = whole_gt_box(_gt("rect"))
    assert box.tolist() == [30, 20, 89, 69] and not fb
    box, fb = whole_gt_box(_gt("two"))  # several survivors -> the whole binarised mask
    assert box.tolist() == [10, 10, 119, 84] and not fb
    gt = _gt("rect")
    gt[2:4, 2:4] = 255  # 4 px < 0.4% of 96*128 = 49 px: dropped, single survivor's box
    gt[90:92, 120:122] = 100  # < 128: not foreground at all
    box, fb = whole_gt_box(gt)
    assert box.tolist() == [30, 20, 89, 69] and not fb
    tiny = np.zeros((H, W), np.uint8)
    tiny[5:10, 5:10] = 255  # 25 px: nothing survives -> fallback to the whole mask
    box, fb = whole_gt_box(tiny)
    assert box.tolist() == [5, 5, 9, 9] and fb
    diag = np.zeros((H, W), np.uint8)
    diag[np.arange(60), np.arange(60)] = 255  # 8-connected diagonal = one component of 60 px
    box, fb = whole_gt_box(diag)
    assert box.tolist() == [0, 0, 59, 59] and not fb
    box, fb = whole_gt_box(np.full((H, W), 127, np.uint8))  # nothing >= 128: the box of gt > 0
    assert box.tolist() == [0, 0, W - 1, H - 1] and fb
    assert whole_gt_box(np.zeros((H, W), np.uint8)) == (None, False)


def test_jitter_reproducible_and_bounded():
    box = np.array([30.0, 20.0, 89.0, 69.0])
    a = jitter_box(box, 10, 0, "DIS-TE1", "img", (H, W))
    assert np.array_equal(a, jitter_box(box, 10, 0, "DIS-TE1", "img", (H, W)))  # same seed, same box
    assert not np.array_equal(a, jitter_box(box, 10, 1, "DIS-TE1", "img", (H, W)))  # other seed
    assert not np.array_equal(a, jitter_box(box, 10, 0, "DIS-TE1", "img2", (H, W)))  # other image
    assert not np.array_equal(a, jitter_box(box, 10, 0, "DIS-TE2", "img", (H, W)))  # other split
    assert not np.array_equal(a, box)
    w, h = 60, 50
    assert np.all(np.abs(a - box) <= np.array([0.1 * w, 0.1 * h, 0.1 * w, 0.1 * h]) + 0.5)
    assert np.array_equal(a, np.round(a))
    assert np.array_equal(jitter_box(box, 0, 5, "s", "x", (H, W)), box)
    # same directions for every pct; clipped to the image
    big = jitter_box([0, 0, W - 1, H - 1], 40, 0, "s", "x", (H, W))
    assert big.min() >= 0 and big[2] <= W - 1 and big[3] <= H - 1 and big[2] > big[0] and big[3] > big[1]
    with pytest.raises(DisSamError):
        jitter_box(box, 50, 0, "s", "x", (H, W))


def test_parse_jitters_and_names():
    assert parse_jitters(["5,10", "20%", "10", "0"]) == [5.0, 10.0, 20.0]
    assert parse_jitters(None) == []
    with pytest.raises(DisSamError, match="box-jitter"):
        parse_jitters(["ten"])
    with pytest.raises(DisSamError):
        parse_jitters(["60"])
    assert method_name("dis-sam", 10.0) == "dis-sam@jitter10" and method_name("sam", None) == "sam"
    assert method_name("sam", 2.5) == "sam@jitter2.5"


def test_shard_covers_each_item_once():
    items = [Item(s, f"{i:03d}", Path("a"), Path("b")) for s in ("B", "A") for i in range(7)]
    key = lambda it: (it.split, it.stem)  # noqa: E731
    parts = [shard(items, r, 3, key=key) for r in range(3)]
    flat = [(it.split, it.stem) for p in parts for it in p]
    assert sorted(flat) == sorted((it.split, it.stem) for it in items) and len(flat) == len(set(flat))
    assert shard(items, 0, 1, key=key) == sorted(items, key=key)
    assert shard(items[::-1], 1, 3, key=key) == parts[1]  # whatever order the items were found in
    with pytest.raises(DisSamError, match="bad rank"):
        shard(items, 3, 3)


# ------------------------------------------------------------------ end to end


def test_predictions_written_with_names_and_sizes(full_run, data_root):
    cols = ["dis-sam", "sam", "isnet", "dis-sam@jitter10", "sam@jitter10"]
    assert sorted(p.name for p in (full_run / "predictions").iterdir()) == sorted(cols)
    for col in cols:
        for split in ("DIS-VD", "DIS-TE1"):
            files = sorted((full_run / "predictions" / col / split).iterdir())
            assert [f.stem for f in files] == _stems(data_root, split)
            for f in files:
                from dissam.io import read_mask

                m = read_mask(f)
                assert f.suffix == ".png" and m.shape == (H, W) and m.dtype == np.uint8
    # SAM baseline is binary {0, 255}; refined maps are min-max normalised (0 and 255 both reached)
    from dissam.io import read_mask

    sam = read_mask(full_run / "predictions" / "sam" / "DIS-VD" / "dis-vd_0_rect.png")
    assert set(np.unique(sam)) <= {0, 255}
    ds = read_mask(full_run / "predictions" / "dis-sam" / "DIS-VD" / "dis-vd_0_rect.png")
    assert ds.min() == 0 and ds.max() == 255
    assert not (full_run / "predictions" / "isnet@jitter10").exists()  # no prompt, no jitter


def test_saved_png_equals_authors_postprocessing(full_run, data_root, tiny_refiner):
    import torch

    from dissam.io import read_image, read_mask
    from dissam.stages.sam import load_sam
    from dissam.transforms import faithful_sample, postprocess, to_authors_png

    split, stem = "DIS-TE1", "dis-te1_2_two"
    image = read_image(data_root / split / "im" / f"{stem}.png")
    gt = read_mask(data_root / split / "gt" / f"{stem}.png")
    # the cached SAM mask is SAM's masks[0] on the whole-GT box
    box = json.loads((full_run / "boxes" / "gt-box" / split / f"{stem}.json").read_text())["box_xyxy"]
    assert box == [10, 10, 119, 84]
    sam = load_sam(json.loads((full_run / "table.json").read_text())["config"]["sam"], "cpu")
    sam.set_image(image)
    coarse = np.where(sam.coarse_masks(np.array([box]), selection="first")[0], 255, 0).astype(np.uint8)
    cached = read_mask(full_run / "sam-masks" / "sam-gt-box" / split / f"{stem}.png")
    assert np.array_equal(coarse, cached)
    sample = faithful_sample(image, gt, coarse, size=128)
    with torch.inference_mode():
        d1 = tiny_refiner(torch.as_tensor(sample["image"])[None].float())[0][0]
    expected = to_authors_png(postprocess(d1[0, 0], (H, W)))
    saved = read_mask(full_run / "predictions" / "dis-sam" / split / f"{stem}.png")
    assert np.array_equal(saved, np.asarray(expected))
    # the sam baseline is the same coarse mask
    assert np.array_equal(read_mask(full_run / "predictions" / "sam" / split / f"{stem}.png"), coarse)


def test_table_has_every_split_and_method(full_run):
    table = json.loads((full_run / "table.json").read_text())
    cols = ["dis-sam", "sam", "isnet", "dis-sam@jitter10", "sam@jitter10"]
    assert table["methods"] == cols
    assert table["splits"] == ["DIS-VD", "DIS-TE1"]  # no DIS-TE(1-4) without the four test splits
    for col in cols:
        for split in ("DIS-VD", "DIS-TE1"):
            agg = table["results"][col][split]
            assert set(agg) == set(METRICS)
            assert 0 <= agg["mIoU"] <= 1 and 0 <= agg["MAE"] <= 1
    md = (full_run / "table.md").read_text()
    assert all(c in md for c in cols) and "DIS-VD" in md and "mBIoU" in md
    csv_lines = (full_run / "table.csv").read_text().splitlines()
    assert csv_lines[0] == "split,metric," + ",".join(cols) and len(csv_lines) == 1 + 2 * len(METRICS)
    per = json.loads((full_run / "per_image" / "dis-sam" / "DIS-TE1.json").read_text())
    assert sorted(r["name"] for r in per) == sorted(
        f"{s}.png" for s in ("dis-te1_0_ellipse", "dis-te1_1_rect", "dis-te1_2_two")
    )
    assert (full_run / "per_image" / "sam@jitter10" / "DIS-VD.csv").is_file()
    # the SAM baseline's mIoU is the mean of the per-image IoUs of its binary masks
    sam_per = json.loads((full_run / "per_image" / "sam" / "DIS-TE1.json").read_text())
    assert table["results"]["sam"]["DIS-TE1"]["mIoU"] == pytest.approx(np.mean([r["mIoU"] for r in sam_per]))
    assert json.loads((full_run / "failures.json").read_text()) == []


def test_jitter_boxes_recorded_and_reproducible(full_run, data_root):
    for split in ("DIS-VD", "DIS-TE1"):
        for stem in _stems(data_root, split):
            rec = json.loads((full_run / "boxes" / "jitter10" / split / f"{stem}.json").read_text())
            gt_box = json.loads((full_run / "boxes" / "gt-box" / split / f"{stem}.json").read_text())
            assert rec["gt_box_xyxy"] == gt_box["box_xyxy"] and rec["jitter_seed"] == 3
            assert rec["box_xyxy"] == jitter_box(gt_box["box_xyxy"], 10, 3, split, stem, (H, W)).tolist()
    # (the tiny SAM's masks hardly depend on the box, so the refiner's box channel makes the difference)
    a, b = full_run / "predictions" / "dis-sam@jitter10", full_run / "predictions" / "dis-sam"
    diffs = [(a / p.relative_to(b)).read_bytes() != p.read_bytes() for p in sorted(b.rglob("*.png"))]
    assert len(diffs) == 6 and any(diffs)


def test_jittered_refiner_input_uses_box_map_from_box(full_run, data_root, tiny_refiner):
    import torch

    from dissam.io import read_image, read_mask
    from dissam.transforms import box_map_from_box, faithful_sample, postprocess, to_authors_png

    split, stem = "DIS-VD", "dis-vd_0_rect"
    image = read_image(data_root / split / "im" / f"{stem}.png")
    gt = read_mask(data_root / split / "gt" / f"{stem}.png")
    box = json.loads((full_run / "boxes" / "jitter10" / split / f"{stem}.json").read_text())["box_xyxy"]
    coarse = read_mask(full_run / "sam-masks" / "sam-jitter10" / split / f"{stem}.png")
    x = torch.as_tensor(faithful_sample(image, gt, coarse, size=128)["image"]).float().clone()
    x[4] = box_map_from_box(box, (H, W), 128)[0].float() / 255.0
    with torch.inference_mode():
        exp = to_authors_png(postprocess(tiny_refiner(x[None])[0][0][0, 0], (H, W)))
    saved = read_mask(full_run / "predictions" / "dis-sam@jitter10" / split / f"{stem}.png")
    assert np.array_equal(saved, exp)
    assert np.array_equal(
        read_mask(full_run / "predictions" / "sam@jitter10" / split / f"{stem}.png"), coarse
    )


def test_second_run_reuses_predictions(full_run, data_root, tiny_sam_path, refiner_path, isnet_path):
    files = sorted((full_run / "predictions").rglob("*.png"))
    before = {p: p.stat().st_mtime_ns for p in files}
    cfg = BenchmarkConfig(
        data=str(data_root), run_dir=str(full_run), splits=["DIS-VD", "DIS-TE1"], sam=str(tiny_sam_path),
        refiner=str(refiner_path), isnet=str(isnet_path), jitters=[10.0], jitter_seed=3, size=128,
        device="cpu", metrics=METRICS, progress=False, evaluate=False,
    )  # fmt: skip
    out = run_benchmark(cfg)
    assert out["stats"] == {"computed": 0, "reused": 30, "sam_calls": 0, "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_mask_folder_used_instead_of_sam(tmp_path, masked_root, refiner_path, tiny_refiner):
    import torch

    from dissam.io import read_image, read_mask
    from dissam.transforms import faithful_sample, postprocess, to_authors_png

    run_dir = tmp_path / "run"
    # no --sam at all: the masks come from mask/
    rc = _cli(
        "benchmark", "--data", masked_root, "--splits", "DIS-TE1", "--refiner", refiner_path,
        "--size", "128", "--device", "cpu", "--metrics", "MAE", "--no-progress", "-o", run_dir,
    )  # fmt: skip
    assert rc == 0
    split = masked_root / "DIS-TE1"
    for stem in _stems(masked_root, "DIS-TE1"):
        given = read_mask(split / "mask" / f"{stem}.png")
        assert np.array_equal(read_mask(run_dir / "predictions" / "sam" / "DIS-TE1" / f"{stem}.png"), given)
        rec = json.loads((run_dir / "boxes" / "gt-box" / "DIS-TE1" / f"{stem}.json").read_text())
        assert rec["sam_mask"] == "mask/"
    assert not (run_dir / "sam-masks").exists()
    # the refiner saw the given mask: recompute one map from it
    stem = "dis-te1_0_two"
    im = read_image(split / "im" / f"{stem}.png")
    gt = read_mask(split / "gt" / f"{stem}.png")
    x = torch.as_tensor(faithful_sample(im, gt, read_mask(split / "mask" / f"{stem}.png"), size=128)["image"])
    with torch.inference_mode():
        exp = to_authors_png(postprocess(tiny_refiner(x[None].float())[0][0][0, 0], (H, W)))
    assert np.array_equal(read_mask(run_dir / "predictions" / "dis-sam" / "DIS-TE1" / f"{stem}.png"), exp)


def test_sharding_two_ranks_cover_every_image_once(tmp_path, masked_root, monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("DISSAM_RUN_ID", "test-shards")
    run_dir = tmp_path / "run"

    def cfg(rank):
        return BenchmarkConfig(
            data=str(masked_root), run_dir=str(run_dir), methods=["sam"],
            device="cpu", metrics=["MAE"], progress=False, rank=rank, world_size=2, barrier_timeout_s=30,
        )  # fmt: skip

    out1 = run_benchmark(cfg(1))  # rank 1 finishes first and does not evaluate
    assert out1["table"] is None and out1["reports"] is None
    assert (run_dir / "shards" / "test-shards" / "rank1.json").is_file()
    assert not (run_dir / "table.json").exists()
    out0 = run_benchmark(cfg(0))  # rank 0 finds rank 1's report, then evaluates everything
    items = [i for r in out0["reports"] for i in r["items"]]
    everything = [f"{s}/{st}" for s in ("DIS-TE1", "DIS-VD") for st in _stems(masked_root, s)]
    assert sorted(items) == sorted(everything) and len(items) == len(set(items)) == 6
    assert out0["stats"]["computed"] == 3 and out1["stats"]["computed"] == 3
    table = json.loads((run_dir / "table.json").read_text())
    assert set(table["results"]["sam"]) == {"DIS-VD", "DIS-TE1"}  # default splits: DIS-5K ones present


def test_isnet_baseline_matches_direct_computation(full_run, data_root, isnet_path):
    import torch

    from dissam.hub.loading import load_refiner
    from dissam.io import read_image, read_mask
    from dissam.transforms import faithful_sample, postprocess, to_authors_png

    net = load_refiner(isnet_path).net
    split, stem = "DIS-VD", "dis-vd_2_ellipse"
    im = read_image(data_root / split / "im" / f"{stem}.png")
    gt = read_mask(data_root / split / "gt" / f"{stem}.png")
    x = torch.as_tensor(faithful_sample(im, gt, np.zeros((H, W), np.uint8), size=128)["image"]).float()[:3]
    with torch.inference_mode():
        exp = to_authors_png(postprocess(net(x[None])[0][0][0, 0], (H, W)))
    assert np.array_equal(read_mask(full_run / "predictions" / "isnet" / split / f"{stem}.png"), exp)


def test_missing_weights_skip_or_error(tmp_path, data_root, masked_root, caplog):
    with pytest.raises(DisSamError, match="dis-sam needs --refiner"):
        run_benchmark(BenchmarkConfig(data=str(data_root), run_dir=str(tmp_path / "r"), methods=["dis-sam"]))
    rc = _cli(
        "benchmark", "--data", masked_root, "--splits", "DIS-VD", "--device", "cpu",
        "--metrics", "MAE", "--no-progress", "--no-eval", "-o", tmp_path / "r2",
    )  # fmt: skip
    assert rc == 0
    # logged (the CLI's handler prints it to stderr), each skipped method once
    skipped = sorted(r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("skipping"))
    assert skipped == ["skipping dis-sam", "skipping hq-sam", "skipping isnet"]
    assert sorted(p.name for p in (tmp_path / "r2" / "predictions").iterdir()) == ["sam"]
    with pytest.raises(DisSamError, match="--sam"):  # no mask/ and no SAM
        run_benchmark(BenchmarkConfig(data=str(data_root), run_dir=str(tmp_path / "r3"), methods=["sam"]))
    with pytest.raises(DatasetError, match="not found"):
        run_benchmark(
            BenchmarkConfig(data=str(data_root), run_dir=str(tmp_path / "r4"), splits=["HRSOD"], sam="x")
        )


def test_failed_image_listed_and_exit_code(tmp_path, capsys):
    from dissam.io import write_png

    root = tmp_path / "data"
    _make_split(
        root,
        "COIFT",
        ["rect", "ellipse"],
        0,
        masks={"coift_0_rect": _gt("rect"), "coift_1_ellipse": _gt("ellipse")},
    )
    write_png(root / "COIFT" / "gt" / "coift_9_empty.png", np.zeros((H, W), np.uint8))
    write_png(root / "COIFT" / "mask" / "coift_9_empty.png", np.zeros((H, W), np.uint8))
    write_png(root / "COIFT" / "im" / "coift_9_empty.png", _image(np.zeros((H, W), np.uint8), 1))
    rc = _cli(
        "benchmark", "--data", root, "--splits", "COIFT", "--device", "cpu",
        "--metrics", "MAE", "--no-progress", "-o", tmp_path / "run",
    )  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 prediction(s) failed" in err and "COIFT/coift_9_empty" in err and "empty" in err
    fails = json.loads((tmp_path / "run" / "failures.json").read_text())
    assert [(f["method"], f["stem"]) for f in fails] == [("sam", "coift_9_empty")]
    assert len(list((tmp_path / "run" / "predictions" / "sam" / "COIFT").iterdir())) == 2


def test_hq_sam_baseline_same_box(tmp_path, masked_root):
    import torch
    from transformers import SamHQConfig, SamHQModel

    from dissam.io import read_image, read_mask
    from dissam.stages.sam import load_sam

    torch.manual_seed(0)
    cfg = SamHQConfig(  # a 256-pixel HQ-SAM keeps this test fast
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            global_attn_indexes=[1],
            image_size=256,
            mlp_dim=64,
        ),
        prompt_encoder_config=dict(image_size=256),
        mask_decoder_config=dict(vit_dim=32),
    )
    SamHQModel(cfg).save_pretrained(tmp_path / "hq")
    run_dir = tmp_path / "run"
    rc = _cli(
        "benchmark", "--data", masked_root, "--splits", "DIS-VD", "--methods", "hq-sam", "--hq-sam",
        tmp_path / "hq", "--box-jitter", "5", "--device", "cpu", "--metrics", "MAE", "--no-progress", "-o", run_dir,
    )  # fmt: skip
    assert rc == 0
    table = json.loads((run_dir / "table.json").read_text())
    assert table["methods"] == ["hq-sam", "hq-sam@jitter5"]
    stage = load_sam(tmp_path / "hq", "cpu", hq=True)
    stem = "dis-vd_1_two"
    stage.set_image(read_image(masked_root / "DIS-VD" / "im" / f"{stem}.png"))
    for sub, col in (("gt-box", "hq-sam"), ("jitter5", "hq-sam@jitter5")):
        box = json.loads((run_dir / "boxes" / sub / "DIS-VD" / f"{stem}.json").read_text())["box_xyxy"]
        exp = np.where(stage.coarse_masks(np.array([box]), selection="single")[0], 255, 0)
        assert np.array_equal(read_mask(run_dir / "predictions" / col / "DIS-VD" / f"{stem}.png"), exp)


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(tmp_path, masked_root):
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dissam",
        "benchmark", "--data", str(masked_root), "--methods", "sam", "--metrics", "MAE", "--no-progress",
        "-o", str(run_dir),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (
        "[rank 0] 3 prediction(s) computed" in res.stdout
        and "[rank 1] 3 prediction(s) computed" in res.stdout
    )
    table = json.loads((run_dir / "table.json").read_text())
    assert set(table["results"]["sam"]) == {"DIS-VD", "DIS-TE1"}
    assert len(list((run_dir / "predictions" / "sam").rglob("*.png"))) == 6
    assert not (run_dir / "shards").exists()  # the gloo gather, not the file barrier


def test_changed_settings_refused(tmp_path, masked_root, refiner_path, isnet_path):
    run_dir = tmp_path / "run"
    base = dict(
        data=str(masked_root), run_dir=str(run_dir), splits=["DIS-VD"], progress=False, evaluate=False
    )
    run_benchmark(BenchmarkConfig(**base, methods=["sam"]))
    # adding weights is fine (a None setting is not a change); the settings file remembers them
    run_benchmark(BenchmarkConfig(**base, methods=["isnet"], isnet=str(isnet_path), size=64, device="cpu"))
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["isnet"] == str(isnet_path.resolve()) and settings["size"] == 64
    with pytest.raises(DisSamError, match="other settings.*size"):
        run_benchmark(
            BenchmarkConfig(**base, methods=["isnet"], isnet=str(isnet_path), size=128, device="cpu")
        )
    with pytest.raises(DisSamError, match="isnet"):
        run_benchmark(
            BenchmarkConfig(**base, methods=["isnet"], isnet=str(refiner_path), size=64, device="cpu")
        )


def test_test_mean_column_over_four_test_splits(tmp_path):
    root = tmp_path / "data"
    for k, split in enumerate(("DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4", "DIS-VD")):
        kinds = ["rect", "two"] if k % 2 else ["ellipse", "rect"]
        stems = [f"{split.lower()}_{i}_{kind}" for i, kind in enumerate(kinds)]
        masks = {s: _coarse_like(_gt(kind), 2 + k + i) for i, (s, kind) in enumerate(zip(stems, kinds))}
        _make_split(root, split, kinds, 40 + k, masks=masks)
    (root / "DIS-TR" / "im").mkdir(parents=True)  # the training split is not a default benchmark split
    (root / "DIS-TR" / "gt").mkdir(parents=True)
    out = run_benchmark(
        BenchmarkConfig(
            data=str(root),
            run_dir=str(tmp_path / "run"),
            methods=["sam"],
            metrics=["MAE", "mIoU"],
            progress=False,
        )
    )
    t = out["table"]
    assert t["splits"] == ["DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4", "DIS-TE(1-4)"]
    res = t["results"]["sam"]
    for metric in ("MAE", "mIoU"):
        assert res["DIS-TE(1-4)"][metric] == pytest.approx(
            np.mean([res[f"DIS-TE{i}"][metric] for i in range(1, 5)])
        )
    assert "DIS-TE(1-4)" in (tmp_path / "run" / "table.md").read_text()


def test_wrong_weights_stop_the_run(tmp_path, masked_root, isnet_path, capsys):
    base = ["benchmark", "--data", masked_root, "--splits", "DIS-VD", "--device", "cpu", "--size", "64"]
    base += ["--metrics", "MAE", "--no-progress", "--methods", "dis-sam", "-o", tmp_path / "run"]
    assert _cli(*base, "--refiner", isnet_path) == 1  # a 3-channel net given as the refiner
    err = capsys.readouterr().err
    assert "3-channel network; expected 5" in err and "failed" not in err
    assert not (tmp_path / "run" / "predictions").exists()
    assert not (tmp_path / "run" / "settings.json").exists()  # nothing recorded: the fixed run may go on
    assert _cli(*base, "--refiner", tmp_path / "missing.pth") == 1
    assert "not found" in capsys.readouterr().err


def test_file_barrier_reports_a_stopped_rank(tmp_path, masked_root, isnet_path, refiner_path, monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("DISSAM_RUN_ID", "test-fatal")

    def cfg(rank, refiner):
        return BenchmarkConfig(
            data=str(masked_root), run_dir=str(tmp_path / "run"), methods=["dis-sam"], refiner=str(refiner),
            device="cpu", size=64, progress=False, rank=rank, world_size=2, barrier_timeout_s=30,
        )  # fmt: skip

    with pytest.raises(DisSamError, match="3-channel"):
        run_benchmark(cfg(1, isnet_path))  # wrong weights on rank 1's machine: it stops and says so
    with pytest.raises(DisSamError, match="rank 1 stopped: .*3-channel"):
        run_benchmark(cfg(0, refiner_path))  # rank 0 does its part, then stops without waiting


def test_mask_only_ablation_model_gets_no_box(tmp_path, masked_root, tiny_refiner):
    """A refiner trained with the box always dropped (Table 2's "mask only") is evaluated with a
    zero box channel, exactly like its training and validation inputs."""
    import torch

    from dissam.checkpoints import save_checkpoint
    from dissam.io import read_image, read_mask
    from dissam.transforms import faithful_sample, postprocess, to_authors_png

    ck = save_checkpoint(
        tmp_path / "mask_only.safetensors", tiny_refiner, metadata={"train_config": {"data": {"prompt_dropout": [0.0, 1.0]}}}
    )
    run_dir = tmp_path / "run"
    rc = _cli(
        "benchmark", "--data", masked_root, "--splits", "DIS-TE1", "--refiner", ck, "--methods", "dis-sam",
        "--size", "128", "--device", "cpu", "--metrics", "MAE", "--no-progress", "-o", run_dir,
    )  # fmt: skip
    assert rc == 0
    split = masked_root / "DIS-TE1"
    stem = "dis-te1_0_two"
    im, gt = read_image(split / "im" / f"{stem}.png"), read_mask(split / "gt" / f"{stem}.png")
    x = torch.as_tensor(faithful_sample(im, gt, read_mask(split / "mask" / f"{stem}.png"), size=128)["image"]).clone()
    assert x[4].abs().max() > 0
    x[4] = 0.0
    with torch.inference_mode():
        exp = to_authors_png(postprocess(tiny_refiner(x[None].float())[0][0][0, 0], (H, W)))
    assert np.array_equal(read_mask(run_dir / "predictions" / "dis-sam" / "DIS-TE1" / f"{stem}.png"), exp)


def test_runtime_choice_matches_the_faithful_path_and_is_guarded(tmp_path, masked_root, refiner_path):
    """--backend torch (channels_last fp32 on the CPU) gives the faithful path's saved maps up to a
    grey level or two (float32 rounding before the uint8 truncation); a run dir made with one runtime
    refuses another."""
    from dissam.io import read_mask

    base = dict(data=str(masked_root), splits=["DIS-VD"], progress=False, evaluate=False, methods=["dis-sam"],
                refiner=str(refiner_path), size=64, device="cpu")
    run_benchmark(BenchmarkConfig(**base, run_dir=str(tmp_path / "faithful")))
    run_benchmark(BenchmarkConfig(**base, run_dir=str(tmp_path / "torch"), backend="torch"))
    a = sorted((tmp_path / "faithful" / "predictions" / "dis-sam" / "DIS-VD").glob("*.png"))
    b = sorted((tmp_path / "torch" / "predictions" / "dis-sam" / "DIS-VD").glob("*.png"))
    assert [p.name for p in a] == [p.name for p in b] and a
    for pa, pb in zip(a, b):
        assert np.abs(read_mask(pa).astype(int) - read_mask(pb).astype(int)).max() <= 2
    with pytest.raises(DisSamError, match="other settings.*precision"):
        run_benchmark(BenchmarkConfig(**base, run_dir=str(tmp_path / "torch"), backend="torch", precision="bf16"))
