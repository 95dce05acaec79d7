"""`dissam predict` on a folder nobody checked: corrupt, unsupported and valid files, bad prompts,
SIGTERM and SIGKILL in the middle of a run.

Exit status (documented in `dissam predict --help`): 0 all done, 1 an error or some images failed,
143 terminated by SIGTERM.
"""

from __future__ import annotations

import io
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
from dissam.utils import TEMP_MARK, temp_path_for

SRC = str(Path(__file__).resolve().parents[1] / "src")
GOOD = ["good0.png", "good1.jpg", "good2.gif", "good3.webp"]
BAD = {"corrupt.png": "damaged or truncated", "empty.png": "empty", "fake.png": "is EPS (PostScript)",
       "photo.tif": "is QOI", "inverted.png": "box 0 (60, 10, 20, 50) is inverted"}


@pytest.fixture(scope="module")
def job(tmp_path_factory, fixtures_dir, tiny_sam_path, tiny_refiner):
    root = tmp_path_factory.mktemp("hostile_cli")
    photo = np.array(Image.open(fixtures_dir / "sam" / "image.png").convert("RGB"))
    folder = root / "in"
    folder.mkdir()
    prompts = {}
    for k, name in enumerate(GOOD + ["inverted.png"]):
        crop = photo[30 * k: 30 * k + 72, 40 * k: 40 * k + 96]
        Image.fromarray(crop).save(folder / name, **({"lossless": True} if name.endswith(".webp") else {}))
        prompts[Path(name).stem] = [[8, 8, 80, 60]]
    prompts["inverted"] = [[60, 10, 20, 50]]
    png = io.BytesIO()
    Image.fromarray(photo[:72, :96]).save(png, format="PNG")
    (folder / "corrupt.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    eps, qoi = io.BytesIO(), io.BytesIO()
    Image.fromarray(photo[:72, :96]).save(eps, format="EPS")
    Image.fromarray(photo[:72, :96]).save(qoi, format="QOI")
    (folder / "fake.png").write_bytes(eps.getvalue())
    (folder / "photo.tif").write_bytes(qoi.getvalue())
    (folder / "notes.txt").write_text("not an image, and not listed: folders are searched by extension")
    for name in BAD:
        prompts.setdefault(Path(name).stem, [[8, 8, 80, 60]])
    (root / "prompts.json").write_text(json.dumps(prompts))
    ck = save_checkpoint(root / "tiny.safetensors", tiny_refiner, metadata={"input_size": 64})
    args = [str(folder), "--prompts", str(root / "prompts.json"), "--sam", str(tiny_sam_path), "--refiner", str(ck),
            "--soft", "--device", "cpu"]
    return root, args


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for d in (folder, folder / ".dissam-done") if d.is_dir() for p in d.iterdir()
                  if TEMP_MARK in p.name or ".tmp" in p.name)


@pytest.fixture(scope="module")
def first_run(job, tmp_path_factory):
    root, args = job
    out = root / "out"
    import contextlib

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["predict", *args, "-o", str(out)])
    return rc, stdout.getvalue(), _outputs(out)


def test_good_files_written_bad_ones_listed(first_run):
    rc, stdout, outputs = first_run
    assert rc == 1
    assert sorted(outputs) == sorted(f"{Path(n).stem}_0{s}.png" for n in GOOD for s in ("", "_soft"))
    failed = {line.split(": ", 1)[0].strip().rsplit("/", 1)[-1]: line for line in stdout.splitlines()
              if line.startswith("  ")}
    assert set(failed) == set(BAD), stdout
    for name, needle in BAD.items():
        assert needle in failed[name], (name, failed[name])
    assert "unsupported format" in failed["fake.png"] and "DISSAM_IMAGE_FORMATS" in failed["fake.png"]
    assert "5 image(s) failed" in stdout and "Traceback" not in stdout


BIG = "9" * 400


@pytest.mark.parametrize("text, needle", [
    ('{"good0": [[8, 8, ' + BIG + ', 60]]}', 'entry ["good0"][0][2] = 9999'),
    ('{"good0": [[8, 8, 1e400, 60]]}', 'entry ["good0"][0][2] = 1e400 is not a finite number'),
    ('{"good0": [[NaN, 8, 80, 60]]}', 'entry ["good0"][0][0] = NaN'),
    ('{"good0": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested deeper than 32 levels"),
    ('{"good0": [[8, "8", 80, 60]]}', 'entry ["good0"][0][1] must be a number, not a string ("8")'),
    ('{"good0": [{"box": {"box": [1, 2]}}]}', 'entry ["good0"][0]["box"]["box"] must be a box'),
    ('{"good0": [null]}', 'entry ["good0"][0]: cannot read a box from null'),
    ('[[1, 2, 3, 4]]', "must hold an object mapping image names"),
    ('{"good0": [[8, 8, 80, 60]]', "is not valid JSON"),
])
def test_malformed_prompts_are_a_clear_error(job, tmp_path, capsys, text, needle):
    root, args = job
    bad = tmp_path / "bad_prompts.json"
    bad.write_text(text)
    args = list(args)
    args[args.index("--prompts") + 1] = str(bad)
    assert main(["predict", *args, "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"prompts file {bad}" in err and needle in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_sigterm_stops_cleanly(job, first_run, tmp_path, monkeypatch, capsys):
    """SIGTERM after the first image is written: exit 143, each finished image complete, no
    temporary file, the handler given back."""
    import dissam.batch_predict as bp

    root, args = job
    out = tmp_path / "out"
    real, sent = bp.write_prediction, []

    def write_then_terminate(*a, **k):
        names = real(*a, **k)
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return names

    monkeypatch.setattr(bp, "write_prediction", write_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["predict", *args, "-o", str(out)]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before
    assert _temps(out) == []
    markers = [json.loads(p.read_text()) for p in (out / ".dissam-done").glob("*.json")]
    done = _outputs(out)
    assert len(markers) < len(GOOD)  # it stopped early
    for m in markers:  # a finished image has all its files, as an uninterrupted run wrote them
        for f in m["files"]:
            assert done[f] == first_run[2][f]


def test_sigkill_leftovers_are_removed_by_the_next_run(job, first_run, tmp_path):
    root, args = job
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "dissam", "predict", *args, "-o", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if list((out / ".dissam-done").glob("*.json")) if (out / ".dissam-done").is_dir() else []:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # what killed runs leave (planted, so that the test does not depend on where the kill landed)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = temp_path_for(out / "good0_0.png")
    stale = stale.with_name(stale.name.rsplit("-", 1)[0] + f"-{dead.pid}")
    stale.write_bytes(b"half a png")
    legacy = out / f".good1_0.png.tmp{dead.pid}"
    legacy.write_bytes(b"half a png")
    old_elsewhere = out / f".good2_0.png{TEMP_MARK}otherhost-{dead.pid}"
    old_elsewhere.write_bytes(b"half a png")
    os.utime(old_elsewhere, (time.time() - 7200, time.time() - 7200))
    # a concurrent writer's files (this process, alive; another machine, recent) are left alone
    live = temp_path_for(out / "zz_other_rank.png")
    live.write_bytes(b"being written")
    elsewhere = out / f".zz_0.png{TEMP_MARK}otherhost-{dead.pid}"
    elsewhere.write_bytes(b"being written elsewhere")

    assert main(["predict", *args, "-o", str(out)]) == 1  # the bad files fail again
    assert _temps(out) == sorted([live.name, elsewhere.name])
    live.unlink()
    elsewhere.unlink()
    assert _outputs(out) == first_run[2]
