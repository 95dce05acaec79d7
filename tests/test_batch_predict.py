"""``dissam predict`` over folders: sharded across processes (RANK/WORLD_SIZE by hand, as torchrun sets
them), resumable after a crash, and skipping only what a run with the same settings finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dissam.checkpoints import save_checkpoint
from dissam.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
N_IMAGES = 5


@pytest.fixture(scope="module")
def job(tmp_path_factory, fixtures_dir, tiny_sam_path, tiny_refiner):
    """Five small images (crops of the SAM fixture image), a prompts file and the CLI arguments."""
    root = tmp_path_factory.mktemp("batch")
    src = np.array(Image.open(fixtures_dir / "sam" / "image.png").convert("RGB"))
    folder = root / "images"
    folder.mkdir()
    prompts = {}
    for i in range(N_IMAGES):
        crop = src[20 * i: 20 * i + 160, 30 * i: 30 * i + 200]
        Image.fromarray(crop).save(folder / f"im{i}.png")
        prompts[f"im{i}"] = [[10, 10, 150 - 5 * i, 120], [40, 30, 190, 150]]
    (root / "prompts.json").write_text(json.dumps(prompts))
    ck = save_checkpoint(root / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    args = [str(folder), "--prompts", str(root / "prompts.json"), "--sam", str(tiny_sam_path),
            "--refiner", str(ck), "--soft"]
    return root, args


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _cli(args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "dissam", "predict", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def single_run(job):
    root, args = job
    out = root / "single"
    assert main(["predict", *args, "-o", str(out)]) == 0
    return _files(out)


@pytest.mark.slow
def test_two_processes_write_the_union_of_a_single_run(job, single_run):
    root, args = job
    out = root / "sharded"
    procs = [_cli([*args, "-o", str(out)], {"RANK": str(r), "WORLD_SIZE": "2"}) for r in range(2)]
    logs = [p.communicate(timeout=300) for p in procs]
    for p, (_, e) in zip(procs, logs):
        assert p.returncode == 0, e[-2000:]
    # disjoint shards: 3 + 2 images, 2 boxes each
    assert "4 mask(s) for 2 image(s)" in logs[1][0] and "6 mask(s) for 3 image(s)" in logs[0][0]
    assert len(single_run) == N_IMAGES * 2 * 2  # mask + soft map per box
    assert _files(out) == single_run  # same names, same bytes


@pytest.mark.slow
def test_killed_run_resumes_and_skips_only_what_is_finished(job, single_run):
    root, args = job
    out = root / "resumed"
    done = out / ".dissam-done"
    proc = _cli([*args, "-o", str(out)])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.glob("*.json"))) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    finished = sorted(p.stem for p in done.glob("*.json"))
    assert len(finished) >= 2
    mtimes = {s: (done / f"{s}.json").stat().st_mtime_ns for s in finished}
    # every image with a marker has all its files, byte-identical to the uninterrupted run
    for s in finished:
        for k in (0, 1):
            for suffix in ("", "_soft"):
                name = f"{s}_{k}{suffix}.png"
                assert (out / name).read_bytes() == single_run[name]
    rerun = _cli([*args, "-o", str(out)])
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-2000:]
    if proc.returncode == -signal.SIGKILL and len(finished) < N_IMAGES:
        assert f"{len(finished)} already done" in stdout
    assert {s: (done / f"{s}.json").stat().st_mtime_ns for s in finished} == mtimes  # not redone
    assert _files(out) == single_run


def test_changed_settings_redo_and_overwrite(job, tmp_path, capsys):
    root, args = job
    out = tmp_path / "o"
    one = [a for a in args]
    one[0] = str(Path(args[0]) / "im0.png")
    assert main(["predict", *one, "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", *one, "-o", str(out)]) == 0
    assert "0 image(s)" in capsys.readouterr().out and (out / "im0_0.png").is_file()
    # another threshold changes the outputs: the image is redone, not skipped
    assert main(["predict", *one, "-o", str(out), "--threshold", "0.7"]) == 0
    assert "1 image(s)" in capsys.readouterr().out
    assert main(["predict", *one, "-o", str(out), "--threshold", "0.7", "--overwrite"]) == 0
    assert "1 image(s)" in capsys.readouterr().out
    # a marker whose files were deleted does not count
    (out / "im0_1_soft.png").unlink()
    assert main(["predict", *one, "-o", str(out), "--threshold", "0.7"]) == 0
    assert "1 image(s)" in capsys.readouterr().out and (out / "im0_1_soft.png").is_file()


# ------------------------------------------------------- in-process versions (default suite, fast)
def _api_job(job):
    from dissam.batch_predict import OutputOptions
    from dissam.boxes import as_boxes
    from dissam.io import list_images
    from dissam.predictor import DisSamPredictor
    from dissam.prompts import load_prompts

    root, args = job
    prompts = load_prompts(root / "prompts.json")
    images = list_images(args[0])

    def factory():
        return DisSamPredictor.from_pretrained(sam=args[4], refiner=args[6], device="cpu")

    def boxes_for(path, hw):
        return as_boxes(prompts[path.stem])

    return factory, images, boxes_for, OutputOptions(soft=True)


def test_shards_of_two_ranks_equal_a_single_run(job, single_run, tmp_path):
    """Rank 0 and rank 1 of a 2-process job (run one after the other here) take disjoint shards whose
    union is byte-identical to the single-process run."""
    from dissam.batch_predict import predict_images
    from dissam.sharding import DistEnv

    factory, images, boxes_for, options = _api_job(job)
    sums = [predict_images(factory, images[::-1], tmp_path, boxes_for, options=options, progress=False,
                           env=DistEnv(r, r, 2)) for r in range(2)]
    assert [s.total for s in sums] == [3, 2] and [s.done for s in sums] == [3, 2]
    assert _files(tmp_path) == single_run


class _Crash(Exception):
    pass


def test_crash_after_k_images_then_resume(job, single_run, tmp_path):
    """A run that dies after 2 images keeps those 2 (with their markers); the rerun predicts only the
    other 3 and the folder ends up equal to an uninterrupted run."""
    from dissam.batch_predict import predict_images

    factory, images, boxes_for, options = _api_job(job)
    calls = {"n": 0}

    def crashing_factory():
        pred = factory()
        real = pred.predict

        def predict(*a, **k):
            if calls["n"] == 2:
                raise _Crash("simulated crash")
            calls["n"] += 1
            return real(*a, **k)

        pred.predict = predict
        return pred

    with pytest.raises(_Crash):
        predict_images(crashing_factory, images, tmp_path, boxes_for, options=options, progress=False)
    assert sorted(p.stem for p in (tmp_path / ".dissam-done").glob("*.json")) == ["im0", "im1"]
    again = predict_images(factory, images, tmp_path, boxes_for, options=options, progress=False)
    assert (again.skipped, again.done) == (2, 3)
    assert _files(tmp_path) == single_run
