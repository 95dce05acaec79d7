"""`dissam app` against a hostile client, over real HTTP (uvicorn on a loopback port).

Every class of failure of issue 27, each followed by a normal request that must still work and a
look at the captured log (no ERROR, no traceback): files in formats outside the allow-list (they never
reach a Pillow plugin), damaged files, malformed requests (multipart, JSON, numbers), Host and Origin
checks, the cost budget, clients that go away or trickle their body, messages in the caller's terms,
and more images in flight than the cache holds.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx")

from app_helpers import LogCapture, LoopbackServer, decode_png, png_bytes, raw_http, tiny_predictor  # noqa: E402

from dissam.app.server import create_app  # noqa: E402
from dissam.app.service import Limits  # noqa: E402
from dissam.image_formats import ALLOWED_FORMATS  # noqa: E402

LIMITS = Limits(max_upload_bytes=2**20, max_cost=1_000_000, body_timeout_s=3.0, queue_size=8)


@pytest.fixture(scope="module")
def photo(fixtures_dir) -> np.ndarray:
    return np.array(Image.open(fixtures_dir / "sam" / "image.png").convert("RGB"))


@pytest.fixture(scope="module")
def small(photo) -> np.ndarray:
    """A 200 x 150 crop: quick to embed and refine."""
    return np.ascontiguousarray(photo[100:250, 150:350])


@pytest.fixture(scope="module")
def served(tiny_sam_path, tiny_refiner, small):
    with LogCapture() as logs:
        app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=LIMITS)
        with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=120) as http:
            server = SimpleNamespace(app=app, url=url, http=http, port=int(url.rsplit(":", 1)[1]), logs=logs,
                                     image=png_bytes(small))
            yield server


def _upload(served, data: bytes, name: str = "x.png"):
    return served.http.post("/api/image", files={"image": (name, data, "image/png")})


def refused(r, status: int, *needles: str) -> str:
    """``r`` is a JSON ``{"error": ...}`` answer with ``status`` whose message contains ``needles``."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    message = r.json()["error"]
    for n in needles:
        assert n in message, (n, message)
    assert "--box-format" not in message and "Traceback" not in message
    return message


def still_healthy(served) -> None:
    """A normal two-step request works, and nothing so far was logged as a fault."""
    up = _upload(served, served.image)
    assert up.status_code == 200, up.text
    r = served.http.post("/api/predict", json={"image_id": up.json()["image_id"], "boxes": [[20, 20, 120, 110]]})
    assert r.status_code == 200, r.text
    assert served.logs.faults() == []


# ---------------------------------------------------------------------- 2. formats
def _other_formats() -> dict[str, bytes]:
    """A small image in 18 formats Pillow can write but dissam does not decode, and two non-images."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8))
    out = {}
    for fmt, mode in [("EPS", "RGB"), ("DDS", "RGB"), ("SPIDER", "F"), ("IM", "RGB"), ("QOI", "RGB"), ("MSP", "1"),
                      ("XBM", "1"), ("JPEG2000", "RGB"), ("PCX", "RGB"), ("PPM", "RGB"), ("TGA", "RGB"), ("ICO", "RGB"),
                      ("SGI", "RGB"), ("PDF", "RGB"), ("BLP", "P"), ("PALM", "P"), ("DIB", "RGB"), ("AVIF", "RGB")]:
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():  # Pillow deprecates writing IM; reading it is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                rgb.convert(mode).save(buf, format=fmt)
        except (OSError, KeyError, ValueError):  # a codec this Pillow build lacks
            continue
        out[fmt] = buf.getvalue()
    out["SVG"] = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    out["HTML"] = b"<!DOCTYPE html><p>not an image</p>"
    return out


def _allowed_formats(image: np.ndarray) -> dict[str, bytes]:
    frames = [Image.fromarray(image), Image.fromarray(255 - image)]
    out = {}
    for fmt, kw in [("PNG", {}), ("JPEG", {"quality": 95}), ("TIFF", {"compression": "tiff_deflate"}),
                    ("WEBP", {"lossless": True}), ("BMP", {}), ("GIF", {"save_all": True, "append_images": frames[1:]})]:
        buf = io.BytesIO()
        frames[0].save(buf, format=fmt, **kw)
        out[fmt] = buf.getvalue()
    buf = io.BytesIO()  # an animated PNG: its first frame
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    out["APNG"] = buf.getvalue()
    return out


def test_other_formats_never_reach_a_decoder(served, small, monkeypatch, tmp_path):
    from PIL import Image as PILImage

    from dissam.errors import ImageReadError
    from dissam.io import read_image

    PILImage.init()
    opened = []
    for name, (factory, accept) in list(PILImage.OPEN.items()):
        if name not in ALLOWED_FORMATS:
            def spy(*a, _name=name, _factory=factory, **k):
                opened.append(_name)
                return _factory(*a, **k)
            monkeypatch.setitem(PILImage.OPEN, name, (spy, accept))
    others = _other_formats()
    assert len(others) >= 18
    for fmt, data in others.items():
        msg = refused(_upload(served, data, "photo.png"), 400, "unsupported format", "PNG, JPEG, TIFF, WebP, BMP")
        assert "DISSAM_IMAGE_FORMATS" not in msg  # the app has no opt-in
        r = served.http.post("/api/predict", files={"image": ("p.png", data, "image/png")},
                             data={"boxes": "[[1, 1, 20, 20]]"})
        refused(r, 400, "unsupported format")
        (tmp_path / f"x.{fmt.lower()}").write_bytes(data)
        with pytest.raises(ImageReadError, match="unsupported format"):
            read_image(tmp_path / f"x.{fmt.lower()}")
    assert "is EPS (PostScript)" in refused(_upload(served, others["EPS"]), 400)
    assert opened == [], f"these Pillow plugins saw an upload: {sorted(set(opened))}"
    # the allowed formats decode (the first frame of an animation), as read_image reads the same file
    for fmt, data in _allowed_formats(small).items():
        r = _upload(served, data, f"x.{fmt.lower()}")
        assert r.status_code == 200, (fmt, r.text)
        assert (r.json()["width"], r.json()["height"]) == (200, 150), fmt
    # the CLI and the Python API may opt in; the app ignores the variable
    monkeypatch.setenv("DISSAM_IMAGE_FORMATS", "PPM,TGA")
    assert read_image(tmp_path / "x.ppm").shape == (32, 48, 3)
    refused(_upload(served, others["PPM"]), 400, "unsupported format")
    still_healthy(served)


def test_damaged_files_are_refused_not_crashed(served, small):
    """Truncations and byte flips of every allowed format: 400 (or 200 when a flip is harmless)."""
    rng = np.random.default_rng(27)
    answers = {}
    for fmt, data in _allowed_formats(small).items():
        mutants = [data[:n] for n in (8, 40, len(data) // 3, len(data) - 7)]
        for _ in range(4):
            flipped = bytearray(data)
            for pos in rng.integers(16, len(data), size=12):
                flipped[pos] = int(rng.integers(0, 256))
            mutants.append(bytes(flipped))
        for k, m in enumerate(mutants):
            r = _upload(served, m)
            answers[f"{fmt}-{k}"] = r.status_code
            if r.status_code != 200:
                refused(r, 400)
    assert set(answers.values()) <= {200, 400}, answers
    assert sum(v == 400 for v in answers.values()) >= len(answers) // 2  # truncations at least
    still_healthy(served)


# ---------------------------------------------------------------------- 3. malformed requests
def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: bytes = b"b0und") -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def _post_raw(served, path: str, ctype: str, body: bytes) -> tuple[int, dict]:
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Type: {ctype}\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    status, payload = raw_http(served.port, req)
    return status, json.loads(payload)


def test_malformed_requests_are_4xx_with_a_message(served):
    image = served.image
    iid = _upload(served, image).json()["image_id"]
    post = served.http.post
    big_int = "9" * 400
    deep = "[" * 10_000 + "]" * 10_000

    def jpost(text: str):
        return post("/api/predict", content=text.encode(), headers={"content-type": "application/json"})

    cases = [
        # multipart
        (post("/api/image", files=[("image", ("a.png", image, "image/png")), ("image", ("b.png", image, "image/png"))]),
         400, "two files were sent in the field 'image'"),
        (post("/api/predict", content=_multipart([("boxes", None, b"[[1,1,9,9]]")]),
              headers={"content-type": "multipart/form-data"}), 400, "has no boundary"),
        (post("/api/predict", content=_multipart([("boxes", None, b"[[1,1,9,9]]")]),
              headers={"content-type": "multipart/form-data; boundary=other"}), 400, "multipart body is malformed"),
        (post("/api/predict", content=_multipart([("boxes", None, b"[[1,1,9,9]]")])[:-12],
              headers={"content-type": "multipart/form-data; boundary=b0und"}), 400, "closing boundary"),
        (post("/api/predict", content=_multipart([(f"f{i}", None, b"v") for i in range(50)]),
              headers={"content-type": "multipart/form-data; boundary=b0und"}), 400, "more than 8 parts"),
        (post("/api/predict", content=_multipart([("boxes", None, b" " * 200_000)]),
              headers={"content-type": "multipart/form-data; boundary=b0und"}), 400, 'field "boxes" is larger than'),
        (post("/api/predict", files={"boxes": ("b.json", b"[[1,1,9,9]]", "application/json")}), 400,
         "the image goes in the field 'image'"),
        (post("/api/predict", files={"image": ("x.png", image, "image/png")}, data={"boxes": "[[1,1,9,9]]",
                                                                                   "threshold": "x" * 9000}),
         400, "threshold must be one of"),
        # numbers: 400 digits, NaN, infinity, overflow to inf, booleans, strings
        (jpost(f'{{"image_id": "{iid}", "boxes": [[1, 2, {big_int}, 40]]}}'), 400, "boxes[0][2] = 9999", "400 digits"),
        (post("/api/predict", files={"image": ("x.png", image, "image/png")}, data={"boxes": f"[[1,2,{big_int},40]]"}),
         400, "boxes[0][2] = 9999"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [[1, 2, 30, 40]], "value": {big_int}}}'), 400, "value = 9999"),
        (post("/api/predict", files={"image": ("x.png", image, "image/png")}, data={"boxes": "[[1,2,30,40]]",
                                                                                   "value": big_int}),
         400, "value (the binary threshold) must"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [[NaN, 2, 30, 40]]}}'), 400, "boxes[0][0] = NaN is not a finite"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [[1, 2, Infinity, 40]]}}'), 400, "boxes[0][2] = Infinity"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [[1, 2, 1e400, 40]]}}'), 400, "boxes[0][2] = 1e400"),
        (post("/api/predict", json={"image_id": iid, "boxes": [[True, 2, 30, 40]]}), 400,
         "boxes[0][0] must be a number, not true/false"),
        (post("/api/predict", json={"image_id": iid, "boxes": [["1", 2, 30, 40]]}), 400,
         'boxes[0][0] must be a number, not a string ("1")'),
        (post("/api/predict", json={"image_id": iid, "boxes": [[1, 2, 30, 40]], "value": "nan"}), 400,
         "must lie strictly between 0 and 1"),
        (post("/api/predict", json={"image_id": iid, "boxes": [[1, 2, 30, 40]], "fg_estimation": "maybe"}), 400,
         "fg_estimation must be true or false"),
        # JSON shape and size
        (jpost('{"boxes": ' + deep + "}"), 400, "nested deeper than 8 levels"),
        (post("/api/predict", data={"boxes": deep}), 400, "nested deeper than 8 levels"),
        (jpost('{"image_id": '), 400, "not valid JSON"),
        (jpost("[1, 2]"), 400, "must be an object of fields"),
        (post("/api/predict", content=b"\xff\xfe{}", headers={"content-type": "application/json"}), 400, "not UTF-8"),
        (post("/api/predict", content=b"x", headers={"content-type": "text/plain"}), 400,
         "send multipart/form-data"),
        (jpost('{"image_id": "' + iid + '", "boxes": [' + "[1,2,30,40]," * 2_000_000 + "[1,2,30,40]]}"), 413,
         "the request body is too large"),
        (jpost(json.dumps({"image_id": iid, "boxes": [[1, 2, 30, 40]] * 17})), 400, "boxes has 17 boxes"),
        (post("/api/predict", json={"image_id": "../../etc/passwd", "boxes": [[1, 2, 30, 40]]}), 400,
         "image_id must be the 64-hex-digit id"),
        (post("/api/predict", json={"image_id": iid, "boxs": [[1, 2, 30, 40]]}), 400, 'unknown field "boxs"'),
        (post("/api/image", data={"example": "../../etc/passwd"}), 400, "unknown example"),
        # messages quote the box as sent, in the API's terms (never a CLI flag)
        (post("/api/predict", json={"image_id": iid, "boxes": [[199, 10, 900, 100]]}), 400,
         "boxes[0] [199, 10, 900, 100] only touches the edge of the 200x150 image"),
        (post("/api/predict", json={"image_id": iid, "boxes": [[20, 20, 100, 100], [120, 10, 30, 40]]}), 400,
         "boxes[1] [120, 10, 30, 40] is inverted", "not a width and a height"),
        (post("/api/predict", json={"image_id": iid, "boxes": [[500, 10, 900, 100]]}), 400,
         "lies entirely outside the 200x150 image"),
        # 404 and 405 are JSON too
        (served.http.get("/no/such/page"), 404, "no such page"),
        (served.http.get("/static/missing.js"), 404, "no such page"),
        (served.http.get("/api/predict"), 405, "GET is not allowed on /api/predict"),
    ]
    for k, (r, status, *needles) in enumerate(cases):
        try:
            refused(r, status, *needles)
        except AssertionError as exc:
            raise AssertionError(f"case {k}: {exc}") from None
    assert "POST" in served.http.get("/api/predict").headers["allow"]
    # requests no HTTP client would build
    status, body = _post_raw(served, "/api/predict", "multipart/form-data; boundary=",
                             _multipart([("boxes", None, b"[[1,1,9,9]]")]))
    assert status == 400 and "no boundary" in body["error"]
    status, body = _post_raw(served, "/api/image", "multipart/form-data; boundary=b0und",
                             b"--b0und\r\nContent-Type: image/png\r\n\r\nxx\r\n--b0und--\r\n")
    assert status == 400 and "Content-Disposition" in body["error"]
    status, body = _post_raw(served, "/api/image", "multipart/form-data; boundary=b0und",
                             b"--b0und\r\nContent-Disposition: form-data; name=\"example\"\r\nX-Pad: "
                             + b"p" * 10_000 + b"\r\n\r\nx\r\n--b0und--\r\n")
    assert status == 400 and "header" in body["error"]
    still_healthy(served)


def test_points_are_checked_like_boxes(served):
    """The ``points`` field: every kind of bad click is a 400 naming points[i][j][k] and quoting it,
    counted before it is read; good clicks run (with a box, and alone) and echo back."""
    iid = _upload(served, served.image).json()["image_id"]
    post = served.http.post
    big_int = "9" * 400

    def jpost(text: str):
        return post("/api/predict", content=text.encode(), headers={"content-type": "application/json"})

    box = [20, 20, 120, 110]
    cases = [
        (jpost(f'{{"image_id": "{iid}", "boxes": [{box}], "points": [[[NaN, 40]]]}}'), 400,
         "points[0][0][0] = NaN is not a finite number"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [{box}], "points": [[[30, {big_int}]]]}}'), 400,
         "points[0][0][1] = 9999", "400 digits"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [{box}], "points": [[[1e400, 40]]]}}'), 400, "points[0][0][0] = 1e400"),
        (jpost(f'{{"image_id": "{iid}", "boxes": [{box}], "points": [[[30, 40, Infinity]]]}}'), 400,
         "points[0][0][2] must be 1 (object) or 0 (background), not Infinity"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[[30, 40, 2]]]}), 400,
         "points[0][0][2] must be 1 (object) or 0 (background), not 2"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[[True, 40]]]}), 400,
         "points[0][0][0] must be a number, not true/false"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[[30]]]}), 400,
         "points[0][0] must be a point [x, y] or [x, y, label]"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[30, 40]]}), 400,
         "points[0] [30, 40] is one point, not a list of clicks", "[[[30, 40]]]"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": ["x"]}), 400,
         "points[0] must be a non-empty list of points"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": {"x": 1}}), 400,
         "points must be a list with one list of clicks per box"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[], [[5, 5]]]}), 400,
         "points has 2 entries for 1 boxes"),
        (post("/api/predict", json={"image_id": iid, "boxes": [None], "points": [[]]}), 400,
         "boxes[0] is null and points[0] is empty"),
        (post("/api/predict", json={"image_id": iid, "points": []}), 400, "boxes and points are both empty"),
        (post("/api/predict", json={"image_id": iid, "points": [[[5, 5]]] * 17}), 400,
         "points has 17 objects: at most 16 boxes (objects) per request"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[[200, 40]]]}), 400,
         "points[0][0] [200, 40] lies outside the 200x150 image"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[[-1, 40]]]}), 400,
         "lies outside the 200x150 image"),
        (post("/api/predict", json={"image_id": iid, "boxes": [box], "points": [[[5, 5]] * 65]}), 400,
         "points has 65 clicks: at most 64 per request"),
        (post("/api/predict", data={"image_id": iid, "boxes": json.dumps([box]), "points": "[[[5, 5]"}), 400,
         "points must be JSON"),
        (jpost('{"image_id": "' + iid + '", "points": ' + "[" * 20 + "]" * 20 + "}"), 400,
         "nested deeper than 8 levels"),
    ]
    for k, (r, status, *needles) in enumerate(cases):
        try:
            refused(r, status, *needles)
        except AssertionError as exc:
            raise AssertionError(f"case {k}: {exc}") from None
    ok = post("/api/predict", json={"image_id": iid, "boxes": [box, None],
                                    "points": [[[60, 60], [100, 90, 0]], [[150, 120]]]})
    assert ok.status_code == 200, ok.text
    first, second = ok.json()["results"]
    assert first["points"] == [[60, 60, 1], [100, 90, 0]] and first["box"][:2] == [20, 20]
    assert second["points"] == [[150, 120, 1]] and len(second["box"]) == 4
    form = post("/api/predict", data={"image_id": iid, "boxes": json.dumps([box]), "points": "[[[60, 60]]]"})
    assert form.status_code == 200 and form.json()["results"][0]["points"] == [[60, 60, 1]]
    still_healthy(served)


# ---------------------------------------------------------------------- 4. Host and Origin
def test_host_and_origin_are_checked(served, tiny_sam_path, tiny_refiner):
    http, iid = served.http, _upload(served, served.image).json()["image_id"]
    body = {"image_id": iid, "boxes": [[20, 20, 120, 110]]}
    # DNS rebinding: another name for this address
    refused(http.get("/api/info", headers={"host": "evil.example:7860"}), 400, "does not answer to Host")
    refused(http.post("/api/predict", json=body, headers={"host": "evil.example"}), 400, "--allow-host")
    for host in (f"localhost:{served.port}", f"[::1]:{served.port}", "127.0.0.1"):
        assert http.get("/api/info", headers={"host": host}).status_code == 200, host
    # CSRF: a page of another origin, or marked cross-site by the browser
    refused(http.post("/api/predict", json=body, headers={"origin": "http://evil.example"}), 403,
            "cross-origin request refused", "--allow-origin http://evil.example")
    refused(http.post("/api/predict", json=body, headers={"origin": f"http://127.0.0.1:{served.port + 1}"}), 403)
    refused(http.post("/api/image", data={"example": "x"}, headers={"origin": "null"}), 403)
    refused(http.post("/api/predict", json=body, headers={"sec-fetch-site": "cross-site"}), 403, "Sec-Fetch-Site")
    # the page's own origin, and scripts without Origin (curl, httpx), pass
    assert http.post("/api/predict", json=body, headers={"origin": served.url}).status_code == 200
    assert http.post("/api/predict", json=body, headers={"sec-fetch-site": "same-origin"}).status_code == 200
    assert "frame-ancestors 'self'" in http.get("/").headers["content-security-policy"]
    warnings = [m for m in served.logs.messages() if m.startswith("refused ")]
    assert any("evil.example" in m for m in warnings)
    # --allow-origin: that page may call the API (CORS answers let its scripts read the result) and frame it
    other = "http://tools.example.org"
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=LIMITS, allow_origins=[other])
    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=120) as h2:
        pre = h2.options("/api/predict", headers={"origin": other, "access-control-request-method": "POST",
                                                  "access-control-request-headers": "content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == other
        r = h2.post("/api/image", files={"image": ("x.png", served.image, "image/png")}, headers={"origin": other})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == other
        refused(h2.post("/api/image", data={"example": "x"}, headers={"origin": "http://evil.example"}), 403)
        assert other in h2.get("/").headers["content-security-policy"]
    still_healthy(served)


# ---------------------------------------------------------------------- 5. cost, abandoned and slow clients
def test_cost_budget_answers_413_with_the_numbers(served):
    flat = png_bytes(np.full((480, 640, 3), 128, np.uint8))  # 0.31 MP; the test server's budget is 1 MP x box
    boxes = [[10, 10, 300, 300]] * 4
    msg = refused(served.http.post("/api/predict", files={"image": ("f.png", flat, "image/png")},
                                   data={"boxes": json.dumps(boxes)}), 413,
                  "1.2 megapixel-boxes (4 box(es) on a 640x480 image of 0.3 megapixels)", "the limit is 1 per request",
                  "send at most 3 box(es)")
    iid = _upload(served, flat).json()["image_id"]
    assert refused(served.http.post("/api/predict", json={"image_id": iid, "boxes": boxes}), 413) == msg
    assert served.http.post("/api/predict", json={"image_id": iid, "boxes": boxes[:3]}).status_code == 200
    still_healthy(served)


def test_clients_that_go_away_are_dropped_and_stopped_between_boxes(served, monkeypatch):
    app, service = served.app, served.app.state.service
    worker, predictor = app.state.worker, service.predictor
    iid = _upload(served, served.image).json()["image_id"]
    body = json.dumps({"image_id": iid, "boxes": [[10, 10, 60, 60], [20, 20, 90, 90], [30, 30, 120, 120],
                                                  [40, 40, 150, 140]]}).encode()
    request = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    import socket as socketlib

    # a running request: the client leaves during the first refiner batch; the rest is not computed
    monkeypatch.setattr(predictor, "refiner_batch_size", 1)
    real_refine, calls, entered, release = predictor.refine, [], threading.Event(), threading.Event()

    def refine(*a, **k):
        calls.append(1)
        entered.set()
        release.wait(60)
        return real_refine(*a, **k)

    monkeypatch.setattr(predictor, "refine", refine)
    sock = socketlib.create_connection(("127.0.0.1", served.port))
    sock.sendall(request)
    assert entered.wait(60)
    running = worker.running
    # a second request queued behind it, whose client leaves too: it is taken out of the queue
    queued = socketlib.create_connection(("127.0.0.1", served.port))
    queued.sendall(request)
    deadline = time.monotonic() + 30
    while worker.pending() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.pending() == 1
    queued.close()
    while worker.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.pending() == 0 and worker.dropped == 1
    sock.close()
    while not running.cancel.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    while worker.running is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 1  # stopped after the first of four boxes
    assert service.kept()["held"] == {}  # both requests let go of the image
    monkeypatch.setattr(predictor, "refine", real_refine)
    lines = served.logs.messages()
    assert any("went away while its request waited in the queue" in m for m in lines)
    assert any("went away while its request was running" in m for m in lines)
    still_healthy(served)


def test_slow_and_vanishing_uploads(served):
    port, head = served.port, (f"POST /api/image HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                               "Content-Type: multipart/form-data; boundary=b0und\r\nContent-Length: 500000\r\n\r\n")
    # a client that disconnects mid-body: one INFO line, nothing else
    raw_http(port, head.encode() + b"--b0und\r\n", close_after_send=True)
    # a client that trickles its body: the event loop keeps serving others, then the answer is 408
    import socket as socketlib

    slow = socketlib.create_connection(("127.0.0.1", port))
    slow.sendall(head.encode() + b"--b0und\r\n")
    assert served.http.get("/api/info").status_code == 200  # while the slow body is pending
    slow.settimeout(30)
    answer = b""
    while b"}" not in answer:
        chunk = slow.recv(4096)
        if not chunk:
            break
        answer += chunk
    slow.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 3 s" in answer, answer[:300]
    deadline = time.monotonic() + 10
    while not any("went away after" in m for m in served.logs.messages()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("the client went away after" in m for m in served.logs.messages())
    still_healthy(served)


# ---------------------------------------------------------------------- 1. more images than the cache
def test_more_images_in_flight_than_the_cache_holds(tiny_sam_path, tiny_refiner, photo):
    """Six images, a cache of two: three clients upload then predict, three send one-shot requests,
    all at once. Every answer is 200 and equals the same request on a predictor of its own."""
    crops = [np.ascontiguousarray(photo[40 * k: 40 * k + 150, 60 * k: 60 * k + 200]) for k in range(6)]
    crops[5] = np.ascontiguousarray(crops[5][::-1])
    box = [30, 25, 170, 130]
    expected = [tiny_predictor(tiny_sam_path, tiny_refiner).set_image(c).predict(box=box) for c in crops]
    limits = Limits(cached_images=2, held_uploads=4, queue_size=16)
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=limits)
    with LogCapture() as logs, LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=300) as http:
        def client(k):
            data = png_bytes(crops[k])
            if k % 2:  # one request: the image and the box
                return http.post("/api/predict", files={"image": ("x.png", data, "image/png")},
                                 data={"boxes": json.dumps([box])})
            up = http.post("/api/image", files={"image": ("x.png", data, "image/png")})
            if up.status_code != 200:
                return up
            return http.post("/api/predict", json={"image_id": up.json()["image_id"], "boxes": [box]})

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(client, range(6)))
        for k, r in enumerate(answers):
            assert r.status_code == 200, (k, r.text[:300])
            res = r.json()["results"][0]
            np.testing.assert_array_equal(decode_png(base64.b64decode(res["mask"])) > 127, expected[k].mask)
            np.testing.assert_array_equal(decode_png(base64.b64decode(res["soft"])),
                                          np.rint(expected[k].soft * 255).astype(np.uint8), err_msg=f"client {k}")
        kept = app.state.service.kept()
        assert kept["held"] == {} and len(kept["images"]) <= 2 + len(kept["uploads"])
        assert logs.faults() == []


def test_bodies_received_at_once_are_bounded(tiny_sam_path, tiny_refiner, small):
    """With ``max_receiving=1``, a second body while a slow one is still arriving is answered 503 at
    once with the reason, and a request after the slow one is gone works."""
    import socket as socketlib

    limits = Limits(max_receiving=1, body_timeout_s=20.0, queue_size=4)
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=limits)
    with LogCapture() as logs, LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        port = int(url.rsplit(":", 1)[1])
        slow = socketlib.create_connection(("127.0.0.1", port))
        slow.sendall((f"POST /api/image HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
                      "boundary=b0und\r\nContent-Length: 500000\r\n\r\n--b0und\r\n").encode())
        deadline = time.monotonic() + 10
        while True:  # until the server has taken the slow body's slot
            r = http.post("/api/image", files={"image": ("x.png", png_bytes(small), "image/png")})
            if r.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        refused(r, 503, "busy receiving other uploads (at most 1 at once)", "try again")
        assert http.get("/api/info").status_code == 200  # bodiless requests are not held back
        slow.close()
        deadline = time.monotonic() + 10
        while (r := http.post("/api/image", files={"image": ("x.png", png_bytes(small), "image/png")})).status_code \
                == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        assert logs.faults() == []
