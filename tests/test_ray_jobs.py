"""``dissam prepare-masks`` and ``dissam benchmark`` with ``--engine ray``: the local engine's files,
resume, and (prepare-masks) a killed worker. GrabCut stage 1 and a compact refiner keep them small."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from data_helpers import gt_two_big_one_tiny, make_split
from ray_helpers import leftovers
from test_tosnet_layout import make_tosnet

from dissam.checkpoints import save_checkpoint
from dissam.cli import main

pytest.importorskip("ray.data")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parent.name in ("mask", "mask_comp")}


@pytest.mark.slow
def test_prepare_masks_on_ray_equals_local_and_survives_a_killed_worker(tmp_path, ray_session, monkeypatch, capsys):
    square = np.zeros((48, 64), np.uint8)
    square[10:40, 12:50] = 255
    gts = {"two": gt_two_big_one_tiny(), "square": square, "empty": np.zeros((40, 40), np.uint8)}
    local = make_split(tmp_path / "local" / "S", gts, masks=False)
    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    (tmp_path / "ray" / "S" / "im" / "broken.png").write_bytes(b"not an image")
    shutil.copy(local / "gt" / "square.png", tmp_path / "ray" / "S" / "gt" / "broken.png")
    common = ["--stage1", "grabcut", "--enrich", "--device", "cpu", "--no-progress"]
    assert main(["prepare-masks", str(local), *common]) == 0
    flag = tmp_path / "killed"
    monkeypatch.setenv("DISSAM_RAY_KILL_ONCE", str(flag))
    code = main(["prepare-masks", str(tmp_path / "ray" / "S"), *common, "--engine", "ray", "--ray-batch-size", "2"])
    out = capsys.readouterr().out
    assert flag.is_file()  # an actor was killed and its batch retried
    assert code == 1 and "broken.png" in out  # the broken image is reported, the others written
    made = _tree(local)
    assert _tree(tmp_path / "ray" / "S") == made
    assert sorted(made) == ["mask/empty.png", "mask/square.png", "mask/two.png", "mask_comp/square_comp_1.png",
                            "mask_comp/two_comp_0.png", "mask_comp/two_comp_1.png", "mask_comp/two_comp_2.png"]
    assert leftovers(tmp_path / "ray") == []
    monkeypatch.delenv("DISSAM_RAY_KILL_ONCE")
    (tmp_path / "ray" / "S" / "im" / "broken.png").unlink()
    (tmp_path / "ray" / "S" / "gt" / "broken.png").unlink()
    assert main(["prepare-masks", str(tmp_path / "ray" / "S"), *common, "--engine", "ray"]) == 0
    assert "0 image(s) done, 3 already done, 0 mask(s)" in capsys.readouterr().out
    assert json.loads((tmp_path / "ray" / "S" / "enrich.json").read_text()) == json.loads(
        (local / "enrich.json").read_text())  # the manifest, written on the driver once the masks exist


def test_benchmark_on_ray_equals_local_on_the_tosnet_layout(tmp_path, ray_session, tiny_refiner, capsys, monkeypatch):
    """The maps of the local engine, byte for byte, through a killed actor; the tables equal; a rerun
    reuses everything."""
    root = make_tosnet(tmp_path / "data")
    ck = save_checkpoint(tmp_path / "ref.safetensors", tiny_refiner, metadata={"input_size": 64})
    args = ["benchmark", "--data", str(root), "--splits", "COIFT,ThinObject5K", "--stage1", "grabcut", "--refiner",
            str(ck), "--methods", "dis-sam", "sam", "--size", "64", "--device", "cpu", "--metrics", "MAE", "mIoU",
            "--box-jitter", "10", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "local")]) == 0
    monkeypatch.setenv("DISSAM_RAY_KILL_ONCE", str(tmp_path / "killed"))
    assert main([*args, "-o", str(tmp_path / "ray"), "--engine", "ray", "--ray-batch-size", "2"]) == 0
    assert (tmp_path / "killed").is_file()  # an actor died with a batch and Ray retried it
    monkeypatch.delenv("DISSAM_RAY_KILL_ONCE")
    assert "4 image(s) predicted, 16 map(s), 0 failure(s)" in capsys.readouterr().out

    def predictions(run):
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "predictions").rglob("*.png"))}

    assert predictions(tmp_path / "ray") == predictions(tmp_path / "local") and len(predictions(tmp_path / "local")) == 16
    tables = [json.loads((tmp_path / r / "table.json").read_text())["results"] for r in ("local", "ray")]
    assert tables[0] == tables[1]
    assert main([*args, "-o", str(tmp_path / "ray"), "--engine", "ray"]) == 0  # resumed: nothing left to do
    assert "0 prediction(s) computed, 16 reused" in capsys.readouterr().out
