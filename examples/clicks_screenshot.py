"""Make docs/images/app_clicks.png: a click correcting a mask in the app, on the built-in models.

Starts `dissam app`'s application on a loopback port with the offline default (the bundled U²-Netp
stage 1, ``u2netp-auto``, and the built-in refiner, as a new user without weights gets it), opens it
in Debian's chromium through Playwright, picks an example that has a ground truth and drags its box:
an image of ``examples/images`` with its mask in ``examples/gt/`` and its box in
``examples/prompts.json``, or (``--photo``) a photograph with a hand-made mask from
``examples/real_photos.json`` (scikit-image's samples), served as an example. The click goes where the
standard click simulation puts it (``dissam.clicks.next_click`` on the page's own mask: the deepest
error; shift-click when it is a negative one), and the page updates by itself. The picture is the
canvas and the overlay, before (box alone) and after the click, each cut from the real page, with the
IoU against the ground truth printed on the terminal.

Usage: .venv/bin/python examples/clicks_screenshot.py [--example fence_on_bricks | --photo astronaut_astronaut_helmet]
       [--out docs/images/app_clicks.png]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_helpers import LoopbackServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="fence_on_bricks")
    ap.add_argument("--photo", default=None, help="a photo of examples/real_photos.json by IMAGE_MASKSTEM "
                                                   "(astronaut_astronaut_helmet), instead of --example")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "app_clicks.png"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    from PIL import Image, ImageDraw
    from playwright.sync_api import expect, sync_playwright

    from dissam.app.server import create_app
    from dissam.app.service import describe_models
    from dissam.clicks import mask_iou, next_click
    from dissam.io import list_images
    from dissam.predictor import DisSamPredictor

    predictor = DisSamPredictor.from_pretrained()  # what `dissam app` without weights loads: the offline default
    examples = {p.stem: p for p in list_images(ROOT / "examples" / "images")}
    if args.photo:
        import tempfile

        sys.path.insert(0, str(ROOT / "examples"))
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from make_real_masks import load_photo
        from real_photo_check import load_gt

        photos_path = ROOT / "examples" / "real_photos.json"
        cases = {f"{e['image']}_{Path(e['gt']).stem}": e for e in json.loads(photos_path.read_text())["photos"]
                 if "gt" in e}
        if args.photo not in cases:
            raise SystemExit(f"--photo {args.photo}: not one of {', '.join(cases)}")
        entry = cases[args.photo]
        folder = Path(tempfile.mkdtemp())
        Image.fromarray(np.asarray(load_photo(entry["image"]), np.uint8)).save(folder / f"{entry['image']}.png")
        args.example = entry["image"]
        examples[args.example] = folder / f"{entry['image']}.png"
        box, gt = entry["box"], np.asarray(load_gt(entry, photos_path)) >= 128
    else:
        box = json.loads((ROOT / "examples" / "prompts.json").read_text())[examples[args.example].name][0]
        gt = np.asarray(Image.open(ROOT / "examples" / "gt" / f"{args.example}.png").convert("L")) >= 128
    app = create_app(predictor, models=describe_models(predictor), examples=examples)
    chromium_args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run"]
    shots = []
    HEIGHT = 420  # px of each picture in the sheet
    grow = 0.25 * max(box[2] - box[0], box[3] - box[1])
    region = (max(0, box[0] - grow), max(0, box[1] - grow), min(gt.shape[1], box[2] + grow + 1),
              min(gt.shape[0], box[3] + grow + 1))
    with LoopbackServer(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=chromium_args)
        # 3 device pixels per CSS pixel: the result tiles are small on the page, their screenshots are not
        page = browser.new_context(accept_downloads=True, viewport={"width": 1360, "height": 1000},
                                   device_scale_factor=3).new_page()
        page.goto(url + "/")
        page.select_option("#example", args.example)
        expect(page.locator("#status")).to_contain_text("image loaded")
        c = page.locator("#canvas").bounding_box()
        s = gt.shape[1] / c["width"]

        def at(x, y):  # image pixel -> viewport point (the canvas scrolled into view first)
            page.locator("#canvas").scroll_into_view_if_needed()
            b = page.locator("#canvas").bounding_box()
            return b["x"] + x / s, b["y"] + y / s

        page.mouse.move(*at(box[0], box[1]))
        page.mouse.down()
        page.mouse.move(*at(box[2], box[3]), steps=8)
        page.mouse.up()
        page.click("#run")
        result = page.locator("#result-0")
        expect(result).to_be_visible(timeout=300_000)

        def page_mask() -> np.ndarray:
            with page.expect_download() as info:
                page.click("#dl-mask-0")
            return np.asarray(Image.open(info.value.path()).convert("L")) > 127

        def shoot(label: str) -> None:
            """The canvas and the overlay tile, each cut to the box and its surroundings."""
            page.wait_for_timeout(300)
            parts = []
            for selector in ("#canvas", "#overlay-0"):
                shot = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")
                k = shot.width / gt.shape[1]  # screenshot pixels per image pixel
                crop = shot.crop(tuple(round(v * k) for v in region))
                parts.append(crop.resize((round(crop.width * HEIGHT / crop.height), HEIGHT), Image.LANCZOS))
            shots.append((label, *parts))

        before = page_mask()
        shoot("box only")
        click = next_click(before, gt)
        pixels = result.get_attribute("data-pixels")
        if not click.positive:
            page.keyboard.down("Shift")
        page.mouse.click(*at(click.x, click.y))
        page.keyboard.up("Shift")
        expect(result).not_to_have_attribute("data-pixels", pixels, timeout=300_000)
        expect(page.locator("#run")).to_be_enabled(timeout=300_000)
        after = page_mask()
        shoot(f"after one {'positive' if click.positive else 'negative'} click")
        browser.close()
    print(f"{args.example}: click at ({click.x}, {click.y}), {'positive' if click.positive else 'negative'}; "
          f"IoU with the ground truth {mask_iou(before, gt):.3f} -> {mask_iou(after, gt):.3f}")
    pad, caption = 8, 22
    w = max(cv.width + ov.width for _, cv, ov in shots) + 3 * pad
    h = sum(max(cv.height, ov.height) + caption for _, cv, ov in shots) + (len(shots) + 1) * pad
    sheet = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for label, cv, ov in shots:
        draw.text((pad, y + 4), f"{label}: the page's canvas (left) and the result's overlay (right), around "
                  "the box", fill="black")
        y += caption
        sheet.paste(cv, (pad, y))
        sheet.paste(ov, (2 * pad + cv.width, y))
        y += max(cv.height, ov.height) + pad
    # 256 colours keep the picture sharp at a third of the size of a true-colour PNG
    sheet.quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
