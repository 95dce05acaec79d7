"""`dissam app` without a browser: uploads and limits, the JSON API against the predictor, kept SAM
embeddings, errors, the bounded queue, and 20 concurrent requests on a loopback server."""

from __future__ import annotations

import base64
import gc
import importlib.util
import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("python_multipart")

from app_helpers import SIZE, LoopbackServer, bomb_png, decode_png, png_bytes, tiny_predictor  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from dissam.app.server import create_app  # noqa: E402
from dissam.app.service import Limits, RequestError, decode_upload  # noqa: E402
from dissam.errors import ImageReadError  # noqa: E402
from dissam.io import read_image  # noqa: E402

BOXES = [[100, 80, 300, 280], [320, 100, 560, 400], [40, 40, 200, 440]]


@pytest.fixture(scope="module")
def image_bytes(fixtures_dir):
    return (fixtures_dir / "sam" / "image.png").read_bytes()


@pytest.fixture(scope="module")
def reference(tiny_sam_path, tiny_refiner, image_bytes):
    """An independent predictor on the same image: what the app must return."""
    p = tiny_predictor(tiny_sam_path, tiny_refiner)
    p.set_image(Image.open(io.BytesIO(image_bytes)))
    return p


@pytest.fixture()
def client(tiny_sam_path, tiny_refiner):
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=Limits(max_upload_bytes=2**20))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _png(b64: str) -> np.ndarray:
    return decode_png(base64.b64decode(b64))


# ---------------------------------------------------------------------- uploads
def test_odd_images_decode_like_read_image(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    cases = {
        "16bit.png": lambda p: Image.fromarray((rng.integers(0, 65535, (24, 40))).astype(np.uint16)).save(p),
        "palette.png": lambda p: Image.fromarray(rgb).convert("P").save(p),
        "rgba.png": lambda p: Image.fromarray(np.dstack([rgb, rgb[..., 0]])).save(p),
        "cmyk.jpg": lambda p: Image.fromarray(rgb).convert("CMYK").save(p),
    }
    for name, write in cases.items():
        write(tmp_path / name)
        out = decode_upload((tmp_path / name).read_bytes(), max_pixels=10**6)
        assert out.shape == (24, 40, 3) and out.dtype == np.uint8, name
        np.testing.assert_array_equal(out, read_image(tmp_path / name), err_msg=name)
    # EXIF orientation 6 (rotate 90° clockwise): a 40 x 24 file is shown as 24 wide, 40 tall
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif)
    assert decode_upload((tmp_path / "rot.jpg").read_bytes(), 10**6).shape == (40, 24, 3)


def test_bombs_and_garbage_are_refused_with_a_message():
    with pytest.raises(RequestError, match="8000x8000 is 64.0 megapixels; the limit is 40 megapixels"):
        decode_upload(bomb_png(8000, 8000), max_pixels=40_000_000)
    with pytest.raises(RequestError, match="image refused: it declares too many pixels"):
        decode_upload(bomb_png(30000, 30000), max_pixels=40_000_000)  # PIL's own bomb check fires first
    with pytest.raises(ImageReadError, match="not an image"):
        decode_upload(b"GIF89a but not really", max_pixels=10**6)
    with pytest.raises(ImageReadError, match="empty"):
        decode_upload(b"", max_pixels=10**6)


# ---------------------------------------------------------------------- the API
def test_predict_matches_the_predictor_and_keeps_the_embedding(client, image_bytes, reference):
    info = client.get("/api/info").json()
    # what was loaded: the tests' tiny refiner (built in Python) and tiny SAM, so no built-in notice
    assert info["models"]["refiner"] == "model" and not info["models"]["builtin"]
    assert info["models"]["notice"] == "" and info["models"]["refiner_size"] == SIZE
    up = client.post("/api/image", files={"image": ("x.png", image_bytes, "image/png")}).json()
    assert (up["width"], up["height"]) == (640, 480) and up["preview"].startswith("data:image/jpeg;base64,")
    service = client.app.state.service
    stage = service.predictor.sam_stage
    for k, box in enumerate(BOXES):
        r = client.post("/api/predict", json={"image_id": up["image_id"], "boxes": [box]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["embedding_cached"] == (k > 0)
        assert (out["timings"]["embedding_ms"] > 0) == (k == 0)
        res, ref = out["results"][0], reference.predict(box=box)
        np.testing.assert_array_equal(_png(res["mask"]) > 127, ref.mask)
        np.testing.assert_array_equal(_png(res["coarse"]) > 127, ref.coarse)
        np.testing.assert_array_equal(_png(res["soft"]), np.rint(ref.soft * 255).astype(np.uint8))
        cut = _png(res["cutout"])
        assert cut.shape == (480, 640, 4)
        np.testing.assert_array_equal(cut[..., 3], np.rint(ref.soft * 255).astype(np.uint8))  # soft alpha
        assert _png(res["overlay"]).shape == (480, 640, 3)
        assert res["box"] == [float(v) for v in box]
    assert stage.encoder_calls == 1  # three boxes, one SAM image embedding


def test_switching_images_reuses_each_kept_embedding(client, image_bytes):
    other = png_bytes(np.flipud(read_image(Image.open(io.BytesIO(image_bytes)))).copy())
    ids = [client.post("/api/image", files={"image": ("x.png", b, "image/png")}).json()["image_id"]
           for b in (image_bytes, other)]
    assert ids[0] != ids[1]
    stage = client.app.state.service.predictor.sam_stage
    masks = {}
    for iid in ids + ids:  # a, b, a, b: two embeddings in all
        out = client.post("/api/predict", json={"image_id": iid, "boxes": [BOXES[0]]}).json()
        masks.setdefault(iid, []).append(out["results"][0]["mask"])
    assert stage.encoder_calls == 2
    assert all(m[0] == m[1] for m in masks.values())  # the restored state gives the same answer
    assert masks[ids[0]][0] != masks[ids[1]][0]
    # a re-upload of known bytes is not decoded again
    assert client.post("/api/image", files={"image": ("x.png", other, "image/png")}).json()["cached"]


def test_threshold_modes_and_one_shot_multipart(client, image_bytes, reference):
    reference.threshold = "otsu"
    try:
        ref = reference.predict(box=BOXES[1])
    finally:
        reference.threshold = 0.5
    r = client.post("/api/predict", files={"image": ("x.png", image_bytes, "image/png")},
                    data={"boxes": json.dumps(BOXES[1]), "threshold": "otsu"})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    np.testing.assert_array_equal(_png(res["mask"]) > 127, ref.mask)
    np.testing.assert_array_equal(_png(res["cutout"])[..., 3], ref.mask.astype(np.uint8) * 255)  # binary alpha
    iid = r.json()["image_id"]
    out = client.post("/api/predict", json={"image_id": iid, "boxes": [BOXES[1]], "threshold": "binary",
                                            "value": 0.8, "fg_estimation": False}).json()["results"][0]
    np.testing.assert_array_equal(_png(out["mask"]) > 127, ref.soft > 0.8)
    cut = _png(out["cutout"])
    np.testing.assert_array_equal(cut[..., :3], reference.image)  # no estimation: the image's colours


def test_errors_are_answered_and_the_server_keeps_serving(client, image_bytes, monkeypatch, caplog):
    post = client.post
    assert post("/api/image", files={"image": ("x.png", b"garbage", "image/png")}).json()["error"].startswith(
        "the upload is not an image")
    r = post("/api/image", files={"image": ("b.png", bomb_png(8000, 8000), "image/png")})
    assert r.status_code == 400 and "megapixels" in r.json()["error"]
    r = post("/api/image", files={"image": ("big.bin", b"\0" * (2**20 + 10), "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = post("/api/predict", json={"image_id": "0" * 64, "boxes": [BOXES[0]]})
    assert r.status_code == 404 and "upload it again" in r.json()["error"]
    iid = post("/api/image", files={"image": ("x.png", image_bytes, "image/png")}).json()["image_id"]
    for body, msg in [({"image_id": iid, "boxes": "[[1, 2]"}, "boxes must be JSON"),
                      ({"image_id": iid, "boxes": [[1, 2, 3]]}, "boxes[0] must be a box [x0, y0, x1, y1]"),
                      ({"image_id": iid, "boxes": [[300, 10, 100, 50]]}, "inverted or empty"),
                      ({"image_id": iid, "boxes": []}, "at least one box"),
                      ({"image_id": iid, "boxes": [BOXES[0]] * 17}, "at most 16 boxes"),
                      ({"image_id": iid, "boxes": [BOXES[0]], "threshold": "magic"}, "threshold must be one of"),
                      ({"image_id": iid, "boxes": [BOXES[0]], "example": "x"}, 'unknown field "example"')]:
        r = post("/api/predict", json=body)
        assert r.status_code == 400 and msg in r.json()["error"], (body, r.text)
    assert post("/api/image", data={"example": "../../etc/passwd"}).json()["error"].startswith("unknown example")
    # an unexpected failure inside the model is reported, logged, and the next request works
    predictor = client.app.state.service.predictor
    real = predictor.refine
    monkeypatch.setattr(predictor, "refine", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with caplog.at_level(logging.ERROR, logger="dissam.app"):
        r = post("/api/predict", json={"image_id": iid, "boxes": [BOXES[0]]})
    assert r.status_code == 500 and "boom" in r.json()["error"] and "keeps running" in r.json()["error"]
    monkeypatch.setattr(predictor, "refine", real)
    assert post("/api/predict", json={"image_id": iid, "boxes": [BOXES[0]]}).status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing referenced off the server


def test_full_queue_answers_busy(tiny_sam_path, tiny_refiner, image_bytes):
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=Limits(queue_size=1))
    service = app.state.service
    gate, entered = threading.Event(), threading.Event()
    real = service.predict

    def slow_predict(*a, **k):
        entered.set()
        gate.wait(30)
        return real(*a, **k)

    service.predict = slow_predict
    with TestClient(app, base_url="http://127.0.0.1") as c:
        iid = c.post("/api/image", files={"image": ("x.png", image_bytes, "image/png")}).json()["image_id"]
        body = {"image_id": iid, "boxes": [BOXES[0]]}
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(c.post, "/api/predict", json=body)
            assert entered.wait(30)  # the worker is busy with the first request
            waiting = pool.submit(c.post, "/api/predict", json=body)
            for _ in range(200):  # until the second one sits in the queue
                if app.state.worker.pending() == 1:
                    break
                threading.Event().wait(0.01)
            r = c.post("/api/predict", json=body)
            assert r.status_code == 503 and "busy" in r.json()["error"]
            gate.set()
            assert running.result().status_code == 200 and waiting.result().status_code == 200


def test_twenty_concurrent_requests_on_loopback(tiny_sam_path, tiny_refiner, image_bytes):
    """All answered, each with its own box's mask, and memory back near its start."""
    httpx = pytest.importorskip("httpx")
    psutil = pytest.importorskip("psutil")
    small = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB").resize((320, 240)))
    image_bytes = png_bytes(small)  # a smaller image keeps 40 requests quick
    reference = tiny_predictor(tiny_sam_path, tiny_refiner).set_image(small)
    rng = np.random.default_rng(7)
    boxes = []
    for _ in range(20):
        x0, y0 = int(rng.integers(0, 200)), int(rng.integers(0, 150))
        boxes.append([x0, y0, x0 + int(rng.integers(30, 115)), y0 + int(rng.integers(30, 85))])
    expected = [reference.predict(box=b) for b in boxes]
    # the random tiny refiner says "foreground" almost everywhere, so the soft maps and the SAM masks,
    # not only the binary masks, are compared: they differ from box to box, so a mix-up would show
    assert len({np.rint(e.soft * 255).astype(np.uint8).tobytes() for e in expected}) == 20
    # 20 bodies in flight at once: above the default max_receiving (16), which would answer 503
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=Limits(queue_size=32, max_receiving=24))
    proc = psutil.Process()
    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        iid = http.post("/api/image", files={"image": ("x.png", image_bytes, "image/png")}).json()["image_id"]

        def one(k):  # every request uploads again (one-shot form) or names the image: both paths
            if k % 2:
                return http.post("/api/predict", json={"image_id": iid, "boxes": [boxes[k]]})
            return http.post("/api/predict", files={"image": ("x.png", image_bytes, "image/png")},
                             data={"boxes": json.dumps([boxes[k]])})

        for k in range(2):  # warm-up: the server's and the client's first allocations
            assert one(k).status_code == 200
        gc.collect()
        rss_start = proc.memory_info().rss
        with ThreadPoolExecutor(20) as pool:  # the bounded client: 20 in flight, no more
            responses = list(pool.map(one, range(20)))
        for k, r in enumerate(responses):
            assert r.status_code == 200, r.text
            res = r.json()["results"][0]
            assert res["box"] == [float(v) for v in boxes[k]]
            exp = expected[k]
            np.testing.assert_array_equal(_png(res["mask"]) > 127, exp.mask, err_msg=f"request {k}")
            np.testing.assert_array_equal(_png(res["coarse"]) > 127, exp.coarse, err_msg=f"request {k}")
            np.testing.assert_array_equal(_png(res["soft"]), np.rint(exp.soft * 255).astype(np.uint8))
        del responses
        gc.collect()
        rss_end = proc.memory_info().rss
        assert app.state.worker.pending() == 0
        assert app.state.service.predictor.sam_stage.encoder_calls == 1  # one image, one embedding
    print(f"RSS before the 20 requests: {rss_start / 2**20:.0f} MiB, after: {rss_end / 2**20:.0f} MiB")
    assert rss_end - rss_start < 64 * 2**20, f"memory grew by {(rss_end - rss_start) / 2**20:.0f} MiB over 20 requests"


def test_app_command_builds_on_given_weights_and_warns_on_a_public_bind(tmp_path, tiny_sam_path, tiny_refiner,
                                                                      image_bytes, monkeypatch, caplog):
    import uvicorn

    from dissam.checkpoints import save_checkpoint
    from dissam.cli import main
    from dissam.commands.app import is_loopback

    ckpt = save_checkpoint(tmp_path / "r.safetensors", tiny_refiner, metadata={"input_size": 128})
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "sample.png").write_bytes(image_bytes)
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.update(app=app, host=host, port=port))
    with caplog.at_level(logging.WARNING, logger="dissam.app"):
        rc = main(["app", "--sam", str(tiny_sam_path), "--refiner", str(ckpt), "--device", "cpu", "--host", "0.0.0.0",
                   "--port", "7999", "--examples", str(tmp_path / "ex"), "--queue-size", "3",
                   "--allow-origin", "https://tools.example.org", "--max-megapixel-boxes", "2", "--body-timeout", "5",
                   "--max-points", "5"])
    assert rc == 0 and served["host"] == "0.0.0.0" and served["port"] == 7999
    assert "listening on 0.0.0.0" in caplog.text and "no login" in caplog.text
    with TestClient(served["app"], base_url="http://127.0.0.1") as c:
        info = c.get("/api/info").json()
        assert info["models"]["sam"] == str(tiny_sam_path) and info["models"]["refiner"] == str(ckpt)
        assert not info["models"]["builtin"] and info["models"]["notice"] == ""
        assert info["limits"]["queue_size"] == 3 and info["examples"] == ["sample"]
        assert info["limits"]["max_cost"] == 2_000_000 and info["limits"]["body_timeout_s"] == 5
        assert info["limits"]["max_points"] == 5
        # the listening address (0.0.0.0: any IP address) and the allowed origin pass; others do not
        assert c.get("/api/info", headers={"host": "evil.example"}).status_code == 400
        r = c.post("/api/image", data={"example": "nope"}, headers={"origin": "https://tools.example.org"})
        assert r.status_code == 400 and r.headers["access-control-allow-origin"] == "https://tools.example.org"
        assert c.post("/api/image", data={"example": "x"}, headers={"origin": "https://evil.example"}).status_code == 403
        up = c.post("/api/image", data={"example": "sample"}).json()
        assert up["name"] == "sample" and (up["width"], up["height"]) == (640, 480)
        r = c.post("/api/predict", json={"image_id": up["image_id"], "boxes": [BOXES[0]]})
        assert r.status_code == 200 and r.json()["results"][0]["box"] == [float(v) for v in BOXES[0]]
    for bad in (["--allow-origin", "tools.example.org"], ["--allow-origin", "https://x.org/page"],
                ["--body-timeout", "nan"], ["--max-megapixel-boxes", "0"], ["--max-points", "0"],
                ["--queue-size", "0"]):  # refused before any model loads
        assert main(["app", *bad]) == 1
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "example.org", "::"))


def test_the_page_says_when_it_runs_on_the_built_in_models():
    """No weights given: GrabCut and the built-in refiner, and the page says so; a preset or explicit
    weights name what was loaded (here the built-in refiner named by path still counts as built-in)."""
    from dissam.app.service import describe_models
    from dissam.predictor import BUILTIN_REFINER, DisSamPredictor

    pred = DisSamPredictor.from_pretrained(stage1="grabcut", device="cpu")
    info = describe_models(pred)
    assert info["builtin"] and info["sam"] == "GrabCut (weight-free)"
    assert info["refiner"] == "built-in dis-sam-compact" and "built-in compact model" in info["notice"]
    info = describe_models(pred, refiner=str(BUILTIN_REFINER))
    assert info["refiner"] == "built-in dis-sam-compact"
    if importlib.util.find_spec("onnxruntime") is not None:
        for kind, label in (("u2netp", "U²-Netp"), ("u2netp-grabcut", "U²-Netp + GrabCut"),
                            ("u2netp-auto", "U²-Netp auto")):
            info = describe_models(DisSamPredictor.from_pretrained(stage1=kind, device="cpu"))
            assert info["builtin"] and info["sam"] == f"{label} (bundled)"
            assert f"stage 1 is the bundled {label} (no --sam given)" in info["notice"]
