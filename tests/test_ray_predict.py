"""``dissam predict --engine ray``: the local engine's files byte for byte, resume, a killed worker,
bad images in the failure list, and the Python entry point for an existing Ray pipeline.

One local 2-CPU Ray serves the module (starting Ray costs seconds); the jobs are tiny (GrabCut stage 1,
a compact refiner at 64 px)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from ray_helpers import files, leftovers, make_images, write_prompts

from dissam.checkpoints import save_checkpoint
from dissam.cli import main

pytest.importorskip("ray.data")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 5


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_refiner):
    root = tmp_path_factory.mktemp("ray_predict")
    prompts = make_images(root / "images", N)
    (root / "images" / "broken.png").write_bytes(b"this is not a PNG")
    prompts["broken"] = [[0, 0, 10, 10]]
    write_prompts(root / "prompts.json", prompts)
    ck = save_checkpoint(root / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    args = [str(root / "images"), "--prompts", str(root / "prompts.json"), "--stage1", "grabcut",
            "--refiner", str(ck), "--device", "cpu", "--soft", "--rgba", "--overlay", "--no-progress"]
    return root, args


@pytest.fixture(scope="module")
def local_run(job):
    root, args = job
    out = root / "local"
    assert main(["predict", *args, "-o", str(out)]) == 1  # the broken image fails, the others are written
    return files(out)


def test_ray_engine_writes_the_local_engine_files_and_survives_a_killed_worker(
        job, local_run, ray_session, tmp_path, monkeypatch, capsys):
    """One actor is killed (os._exit) after predicting its first batch: Ray restarts it and retries
    the batch, and the job ends with every file of the local engine, byte for byte, and one marker per
    image; the broken image is in the failure list, not fatal."""
    root, args = job
    flag = tmp_path / "killed.txt"
    monkeypatch.setenv("DISSAM_RAY_KILL_ONCE", str(flag))
    out = tmp_path / "ray"
    code = main(["predict", *args, "-o", str(out), "--engine", "ray", "--ray-batch-size", "2"])
    text = capsys.readouterr().out
    assert flag.is_file() and "killed pid" in flag.read_text()  # a worker really died
    assert code == 1
    assert f"{N} image(s) predicted, 0 already done, {N + N // 2} box(es), 1 failure(s)" in text
    assert files(out) == local_run  # same names, same bytes
    assert len(local_run) == (N + N // 2) * 4  # mask, soft, cut-out, overlay per box
    markers = sorted(p.name for p in (out / ".dissam-done").iterdir())
    assert markers == [f"im{i}.json" for i in range(N)] == sorted(
        p.name for p in (root / "local" / ".dissam-done").iterdir())
    failures = json.loads((out / ".dissam-failures.json").read_text())
    assert [f["path"] for f in failures] == [str(root / "images" / "broken.png")]
    assert "cannot read image" in failures[0]["error"]
    assert leftovers(out) == []

    # started again: everything finished is skipped (files untouched); a lost file is redone
    monkeypatch.delenv("DISSAM_RAY_KILL_ONCE")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    (out / "im3_0_soft.png").unlink()
    code = main(["predict", *args, "-o", str(out), "--engine", "ray"])
    text = capsys.readouterr().out
    assert f"1 image(s) predicted, {N - 1} already done" in text
    assert files(out) == local_run
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    assert all(after[n] == t for n, t in before.items() if not n.startswith(("im3_", ".")))


@pytest.mark.slow
def test_outputs_through_a_uri_and_cross_image_refinement(job, local_run, ray_session, tmp_path, capsys):
    """A file:// URI for the images and the output folder; --ray-refine-batch batches boxes of several
    images per refiner call: the same masks, soft maps within one 8-bit step."""
    root, args = job
    out = tmp_path / "uri"
    uri_args = [f"file://{root / 'images' / 'im1.png'}", f"file://{root / 'images' / 'im2.png'}", *args[1:]]
    code = main(["predict", *uri_args, "-o", f"file://{out}", "--engine", "ray", "--ray-refine-batch", "3"])
    assert code == 0, capsys.readouterr().out
    got = files(out)
    assert sorted(got) == sorted(n for n in local_run if n.startswith(("im1_", "im2_")))
    for name in got:
        a = np.asarray(Image.open(out / name), dtype=int)
        b = np.asarray(Image.open(root / "local" / name), dtype=int)
        assert np.abs(a - b).max() <= (0 if "_" not in name[4:] else 1), name


def test_predict_dataset_on_an_existing_pipeline(job, local_run, ray_session):
    """dissam.ray.predict_dataset over a Dataset of encoded bytes with boxes: the masks and soft maps
    of the local engine's files, as arrays."""
    import ray

    import dissam.ray as dray

    root, args = job
    prompts = json.loads((root / "prompts.json").read_text())
    rows = [{"path": str(root / "images" / f"im{i}.png"), "bytes": (root / "images" / f"im{i}.png").read_bytes(),
             "boxes": prompts[f"im{i}"]} for i in (0, 1)]
    ds = dray.predict_dataset(ray.data.from_items(rows), stage1="grabcut", refiner=args[args.index("--refiner") + 1],
                              device="cpu", batch_size=2)
    out = sorted(ds.take_all(), key=lambda r: r["path"])
    assert [r["status"] for r in out] == ["done", "done"]
    for i, r in enumerate(out):
        assert r["masks"].shape[0] == len(prompts[f"im{i}"]) == r["boxes"]
        for k in range(r["boxes"]):
            assert np.array_equal(r["masks"][k], np.asarray(Image.open(root / "local" / f"im{i}_{k}.png")))
            assert np.array_equal(r["soft"][k], np.asarray(Image.open(root / "local" / f"im{i}_{k}_soft.png")))


def test_import_and_help_do_not_load_ray():
    code = ("import sys, dissam, dissam.engines; from dissam.cli import build_parser; build_parser(); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    assert out.split() == ["False"]
