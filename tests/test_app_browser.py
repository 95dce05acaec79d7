"""`dissam app` in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

Runs in the default suite when /usr/bin/chromium and Playwright are present; skipped otherwise,
except in CI (``CI=true``), where their absence is a failure (`.ci/run` installs both).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from app_helpers import LoopbackServer, bomb_png, tiny_predictor
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DISSAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "app.png"


def _require_browser():
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"chromium ({CHROMIUM}; apt-get install -y chromium)")
    for module in ("playwright", "starlette", "uvicorn", "python_multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module} (pip install -e '.[app,browser-test]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _drag(page, start, end, steps=6):
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def _boxes(page) -> list[list[int]]:
    return [[int(v) for v in t.split(", ")] for t in page.locator("#boxes li").all_inner_texts()]


def test_draw_a_box_run_download_and_recover_from_errors(browser, tiny_sam_path, tiny_refiner, fixtures_dir,
                                                         tmp_path):
    from dissam.app.server import create_app

    image_path = fixtures_dir / "sam" / "image.png"
    reference = tiny_predictor(tiny_sam_path, tiny_refiner).set_image(image_path)
    from dissam.app.service import Limits

    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), limits=Limits(max_upload_bytes=2**20))
    from playwright.sync_api import expect

    with LoopbackServer(app) as url:
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        offsite = []
        page.on("request", lambda r: offsite.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
        page.goto(url + "/")
        # (waits use locators: the page's CSP forbids the eval behind wait_for_function)
        # the page names what was loaded: the tests' tiny SAM and refiner (no built-in notice)
        expect(page.locator("#models")).to_contain_text("refiner: model (128²)")
        expect(page.locator("#models")).to_contain_text("sam_tiny.pth")
        expect(page.locator("#models")).to_contain_text("stage 1: SAM, ")  # the registry's label and licence
        expect(page.locator("#models")).to_contain_text("(licence: Apache-2.0)")

        page.set_input_files("#file", str(image_path))
        expect(page.locator("#status")).to_contain_text("640×480 image loaded")
        canvas = page.locator("#canvas").bounding_box()
        scale = 640 / canvas["width"]  # image pixels per screen pixel

        def at(x, y):  # image pixel -> screen point
            return canvas["x"] + x / scale, canvas["y"] + y / scale

        # draw two boxes, delete the second with the keyboard, move and resize the first
        _drag(page, at(90, 70), at(290, 270))
        _drag(page, at(400, 300), at(500, 400))
        assert len(_boxes(page)) == 2
        page.keyboard.press("Delete")
        assert len(_boxes(page)) == 1
        _drag(page, at(190, 170), at(200, 180))       # move by (+10, +10): grab inside the box
        _drag(page, at(300, 280), at(320, 300))       # resize: grab the bottom-right corner
        (box,) = _boxes(page)
        for got, want in zip(box, [100, 80, 320, 300]):
            assert abs(got - want) <= 2 * scale + 1, (box, "the dragged box is not where the mouse went")

        page.click("#run")
        page.wait_for_selector("#result-0")
        sent = json.loads(page.get_attribute("#result-0", "data-box"))
        assert sent == [float(v) for v in box]  # the page sends its rounded integer box
        expected = reference.predict(box=box)
        timings = page.locator("#timings").inner_text()
        assert "image embedding (stage 1)" in timings and "refiner" in timings

        def download(selector) -> np.ndarray:
            with page.expect_download() as info:
                page.click(selector)
            target = tmp_path / info.value.suggested_filename
            info.value.save_as(target)
            return np.asarray(Image.open(target))

        mask = download("#dl-mask-0")
        np.testing.assert_array_equal(mask > 127, expected.mask)
        np.testing.assert_array_equal(download("#dl-soft-0"), np.rint(expected.soft * 255).astype(np.uint8))
        cut = download("#dl-cutout-0")
        assert cut.shape == (480, 640, 4)
        np.testing.assert_array_equal(cut[..., 3], np.rint(expected.soft * 255).astype(np.uint8))
        inside = cut[..., 3] == 255  # fully opaque pixels keep the image's colour exactly
        np.testing.assert_array_equal(cut[..., :3][inside], reference.image[inside])

        # a garbage file and a decompression bomb: the error is shown, the loaded image stays
        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
        expect(page.locator("#error")).to_contain_text("not an image")
        page.set_input_files("#file", {"name": "bomb.png", "mimeType": "image/png", "buffer": bomb_png(9000, 9000)})
        expect(page.locator("#error")).to_contain_text("megapixels")
        page.set_input_files("#file", {"name": "big.png", "mimeType": "image/png", "buffer": b"\0" * (2**20 + 1)})
        expect(page.locator("#error")).to_contain_text("too large")
        # and a good request again: a second box on the same image reuses the embedding
        _drag(page, at(330, 110), at(560, 400))
        page.click("#run")
        expect(page.locator(".result")).to_have_count(2)
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#timings")).to_contain_text("(kept)")
        second = json.loads(page.get_attribute("#result-1", "data-box"))
        with page.expect_download() as info:
            page.click("#dl-mask-1")
        got = np.asarray(Image.open(io.BytesIO(Path(info.value.path()).read_bytes())))
        np.testing.assert_array_equal(got > 127, reference.predict(box=second).mask)

        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        assert Image.open(shot).size[0] == 1280
        if os.environ.get("DISSAM_SAVE_SCREENSHOT"):
            shutil.copy(shot, SCREENSHOT)
        assert offsite == [], f"the page fetched from elsewhere: {offsite}"
        assert app.state.service.predictor.sam_stage.encoder_calls == 1
        context.close()


OTHER_PAGE = """<!doctype html><html><body>
<form id="csrf" method="post" enctype="multipart/form-data" action="{app}/api/image">
  <input name="example" value="sample"><button id="send">send</button>
</form></body></html>"""


def test_a_page_of_another_origin_cannot_post(browser, tiny_sam_path, tiny_refiner, fixtures_dir, tmp_path):
    """A page served on another loopback port (another origin) posts a form to the app and calls it with
    fetch: the server refuses both (403, logged), computes nothing, and the app's own page still works."""
    import http.server
    import threading

    from app_helpers import LogCapture

    from dissam.app.server import create_app

    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "sample.png").write_bytes((fixtures_dir / "sam" / "image.png").read_bytes())
    app = create_app(tiny_predictor(tiny_sam_path, tiny_refiner), examples={"sample": tmp_path / "ex" / "sample.png"})
    service = app.state.service
    with LogCapture() as logs, LoopbackServer(app) as url:
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "index.html").write_text(OTHER_PAGE.format(app=url))

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(tmp_path / "site"), **k)

            def log_message(self, *a):
                pass

        other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=other.serve_forever, daemon=True).start()
        other_url = f"http://127.0.0.1:{other.server_address[1]}"
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(other_url + "/index.html")
            # a classic CSRF: a form posted to the app; the browser shows the app's answer
            with page.expect_navigation():
                page.click("#send")
            assert "cross-origin request refused" in page.inner_text("body")
            page.goto(other_url + "/index.html")
            # fetch from the other page: a "simple" request (sent without preflight) and a JSON one
            simple = page.evaluate("""async (u) => { const r = await fetch(u + '/api/predict', {method: 'POST',
                mode: 'no-cors', headers: {'content-type': 'text/plain'}, body: '{}'}); return r.type; }""", url)
            assert simple == "opaque"  # the page cannot read it; the server refused it (below)
            blocked = page.evaluate("""async (u) => { try { await fetch(u + '/api/predict', {method: 'POST',
                headers: {'content-type': 'application/json'}, body: '{"boxes": [[1, 1, 9, 9]]}'});
                return 'read'; } catch (e) { return 'blocked'; } }""", url)
            assert blocked == "blocked"
            refusals = [m for m in logs.messages() if m.startswith("refused POST") and other_url in m]
            assert len(refusals) >= 2, logs.messages()
            assert service.kept()["images"] == [] and service.embeddings_computed == 0  # nothing was done
            # the app's own page is not affected
            own = context.new_page()
            own.goto(url + "/")
            own.select_option("#example", "sample")
            from playwright.sync_api import expect

            expect(own.locator("#status")).to_contain_text("640×480 image loaded")
            assert logs.faults() == []
            context.close()
        finally:
            other.shutdown()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_clicks_correct_the_mask_and_undo_restores_it(browser):
    """On an example with the offline default (U²-Netp auto + the built-in refiner): a box, then a
    shift-click (a negative point) in the middle of the mask makes the mask smaller, undo brings the
    first mask back, redo the corrected one; a right-click adds another negative point, a click on a
    marker deletes it, and the image is embedded once."""
    pytest.importorskip("onnxruntime")
    from playwright.sync_api import expect

    from dissam.app.server import create_app
    from dissam.predictor import DisSamPredictor

    name = "photo_coffee"
    box = json.loads((EXAMPLES / "prompts.json").read_text())[f"{name}.jpg"][0]
    predictor = DisSamPredictor.from_pretrained(stage1="u2netp-auto", size=256)
    reference = DisSamPredictor.from_pretrained(stage1="u2netp-auto", size=256)
    reference.set_image(EXAMPLES / "images" / f"{name}.jpg")
    h, w = reference.image.shape[:2]
    app = create_app(predictor, examples={name: EXAMPLES / "images" / f"{name}.jpg"})
    with LoopbackServer(app) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url + "/")
        page.select_option("#example", name)
        expect(page.locator("#status")).to_contain_text(f"{w}×{h} image loaded")
        canvas = page.locator("#canvas").bounding_box()
        scale = w / canvas["width"]

        def at(px, py):
            return canvas["x"] + px / scale, canvas["y"] + py / scale

        _drag(page, at(box[0], box[1]), at(box[2], box[3]))
        page.click("#run")
        result = page.locator("#result-0")
        expect(result).to_have_attribute("data-pixels", re.compile(r"^\d+$"))
        sent = [int(v) for v in json.loads(result.get_attribute("data-box"))]
        first = reference.predict(box=sent)
        before = int(first.mask.sum())
        assert int(result.get_attribute("data-pixels")) == before
        import cv2

        depth = cv2.distanceTransform(first.mask.astype(np.uint8), cv2.DIST_L2, 5)
        y, x = (int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))  # the mask's deepest pixel
        page.keyboard.down("Shift")
        page.mouse.click(*at(x, y))
        page.keyboard.up("Shift")
        expect(page.locator("#boxes li")).to_contain_text(["0+ 1−"])
        expect(result).not_to_have_attribute("data-pixels", str(before))  # updated without pressing Segment
        after = int(result.get_attribute("data-pixels"))
        fixed = reference.predict(box=sent, point_coords=[[x, y]], point_labels=[0])
        assert after == int(fixed.mask.sum()) and after < before, (before, after)
        page.click("#undo")
        expect(result).to_have_attribute("data-pixels", str(before))
        expect(page.locator("#boxes li")).not_to_contain_text(["−"])
        page.keyboard.press("Control+Shift+Z")
        expect(result).to_have_attribute("data-pixels", str(after))
        # a right-click is a negative point too; a click on a marker deletes it
        corner = at(sent[0] + 20, sent[3] - 20)
        page.mouse.click(*corner, button="right")
        expect(page.locator("#boxes li")).to_contain_text(["0+ 2−"])
        expect(page.locator("#run")).to_be_enabled()
        page.mouse.click(*corner)
        expect(page.locator("#boxes li")).to_contain_text(["0+ 1−"])
        expect(page.locator("#run")).to_be_enabled()
        expect(result).to_have_attribute("data-pixels", str(after))
        assert app.state.service.embeddings_computed == 1
        context.close()
