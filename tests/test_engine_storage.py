"""The Ray engine's pieces that need no Ray: folders on any filesystem (fsspec's in-memory one, file://
URIs, plain paths), the boxes of each image, and several images through one predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dissam.engines.batching import predict_many
from dissam.engines.inputs import BoxSource, expand_inputs, job_rows
from dissam.engines.storage import Storage, read_uri_bytes, split_uri
from dissam.errors import DisSamError
from dissam.io import decode_image_bytes, encode_png, read_image, write_png

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kind", ["memory", "file", "path"])
def test_storage_lists_reads_and_writes_atomically(kind, tmp_path):
    root = {"memory": f"memory://dissam-test-{tmp_path.name}/out", "file": f"file://{tmp_path}/out",
            "path": str(tmp_path / "out")}[kind]
    st = Storage(root)
    st.make_folder()
    picture = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    st.write_bytes("b.png", encode_png(picture))
    st.write_bytes("a.jpg", b"not really a jpeg")
    st.write_bytes(".hidden.png", b"x")
    st.write_bytes(".dissam-done/b.json", b'{"key": "k"}')
    st.write_bytes("notes.txt", b"x")
    assert st.list_images() == ["a.jpg", "b.png"] and st.is_folder()
    assert np.array_equal(decode_image_bytes(st.read_bytes("b.png"), "b.png"), picture)
    assert st.exists(".dissam-done/b.json") and not st.exists("c.png") and st.try_read("c.png") is None
    st.delete("a.jpg")
    st.delete("a.jpg")  # deleting what is gone is fine
    assert st.list_images() == ["b.png"]
    assert read_uri_bytes(st.location("notes.txt")) == b"x"
    if kind != "memory":
        assert sorted(p.name for p in (tmp_path / "out").iterdir() if ".tmp" in p.name) == []
        assert (tmp_path / "out" / "b.png").read_bytes() == encode_png(picture)


def test_encode_png_writes_what_write_png_writes(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (9, 7, 4), dtype=np.uint8)
    write_png(tmp_path / "a.png", arr)
    assert (tmp_path / "a.png").read_bytes() == encode_png(arr)
    assert np.array_equal(decode_image_bytes(encode_png(arr[..., :3])), read_image(arr[..., :3]))
    with pytest.raises(DisSamError, match="cannot read image shop/x.png: unsupported format"):
        decode_image_bytes(b"junk", "shop/x.png")


def test_inputs_from_a_uri_folder_and_boxes_per_image(tmp_path):
    root = f"memory://dissam-inputs-{tmp_path.name}"
    st = Storage(root)
    for name in ("cat.png", "dog.jpg", "readme.md"):
        st.write_bytes(name, b"x")
    assert expand_inputs([root]) == [f"{root}/cat.png", f"{root}/dog.jpg"]
    assert split_uri(f"{root}/cat.png") == (root, "cat.png")
    with pytest.raises(DisSamError, match="share the name 'cat'"):
        expand_inputs([root, str(tmp_path / "cat.png")])
    source = BoxSource(prompts={"cat": [[1, 2, 30, 40]]}, cli_boxes=[], full_image_box=True)
    rows = job_rows([f"{root}/cat.png", f"{root}/dog.jpg"], source)
    assert rows[0]["boxes"] == [[1.0, 2.0, 30.0, 40.0]] and not rows[0]["whole"]
    assert rows[1]["boxes"] == [] and rows[1]["whole"]  # the whole image: known once it is decoded
    strict = job_rows([f"{root}/dog.jpg"], BoxSource(prompts={}, box_format="xywh"))
    assert "no box given" in strict[0]["error"]
    assert BoxSource(cli_boxes=[[1, 2, 10, 10]], box_format="xywh").boxes("x.png").tolist() == [[1, 2, 11, 12]]
    assert json.dumps(rows)  # rows are plain data for Ray


def test_predict_many_is_predict_per_image_or_batched_across_images(tiny_refiner):
    from dissam.predictor import DisSamPredictor
    from dissam.stages.grabcut import GrabCutStage

    pred = DisSamPredictor(GrabCutStage(), tiny_refiner, size=64, device="cpu", refiner_batch_size=2)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8) for i in range(3)]
    boxes = [np.array([[4, 4, 40, 30], [10, 8, 50, 36]][: 1 + i % 2], float) for i in range(3)]
    boxes.append(np.array([[200, 200, 300, 300]], float))  # outside the image: that image fails
    images.append(images[0])
    per_image = predict_many(pred, images, boxes)
    for image, bx, got in zip(images[:3], boxes[:3], per_image[:3]):
        pred.set_image(image)
        want = pred.predict(boxes=bx)
        assert all(np.array_equal(a.soft, b.soft) and np.array_equal(a.mask, b.mask) for a, b in zip(got, want))
    assert isinstance(per_image[3], DisSamError)
    across = predict_many(pred, images, boxes, refine_batch=3)
    assert isinstance(across[3], DisSamError)
    for a_list, b_list in zip(per_image[:3], across[:3]):
        for a, b in zip(a_list, b_list):
            assert np.abs(a.soft - b.soft).max() < 1e-5 and np.array_equal(a.coarse, b.coarse)
            assert np.array_equal(a.box, b.box)


def test_ray_options_are_checked_and_a_missing_ray_says_how_to_install(monkeypatch):
    import sys

    from dissam.engines.ray_runtime import RayOptions, actor_device, require_ray

    with pytest.raises(DisSamError, match="--ray-actors must be >= 1.*--ray-batch-size must be >= 1"):
        RayOptions(actors=0, batch_size=0)
    with pytest.raises(DisSamError, match="--ray-gpus-per-actor must be >= 0"):
        RayOptions(gpus_per_actor=-1)
    opts = RayOptions(actors=3, gpus_per_actor=0.5, cpus_per_actor=1.5, batch_size=8, read_cpus=0)
    assert opts.threads == 2 and opts.gpus(None, "cuda") == 0.5
    assert opts.actor_args(None, "cuda") == {"num_cpus": 1.5, "num_gpus": 0.5, "batch_size": 8, "batch_format": "numpy"}
    assert opts.read_args()["num_cpus"] == 0
    assert RayOptions().gpus(None, "cpu") == 0.0  # --device cpu never asks for a GPU
    assert actor_device("auto", 0.5) == "cuda" and actor_device(None, 0) == "cpu" and actor_device("cpu", 1) == "cpu"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(DisSamError, match=r"pip install 'dissam\[ray\]'"):
        require_ray()
