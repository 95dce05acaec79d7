"""Make docs/images/app_clicks.png: a click correcting a mask in the app, on the built-in models.

Starts `dissam app`'s application on a loopback port with the offline default (the bundled U²-Netp
stage 1, ``u2netp-auto``, and the built-in refiner, as a new user without weights gets it), opens it
in Debian's chromium through Playwright, picks an example that has a ground truth
(``examples/gt/``), drags its box from examples/prompts.json and runs. The click goes where the
standard click simulation puts it (``dissam.clicks.next_click`` on the page's own mask: the deepest
error; shift-click when it is a negative one), and the page updates by itself. The picture is the
canvas and the overlay, before (box alone) and after the click, each cut from the real page, with the
IoU against the ground truth printed on the terminal.

Usage: .venv/bin/python examples/clicks_screenshot.py [--example fence_on_bricks] [--out docs/images/app_clicks.png]
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
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "app_clicks.png"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    from PIL import Image, ImageDraw
    from playwright.sync_api import expect, sync_playwright

    from dissam.app.server import create_app
    from dissam.app.service import describe_models
    from dissam.clicks import mask_iou, next_click
    from dissam.commands.weights import offline_stage1
    from dissam.io import list_images
    from dissam.predictor import DisSamPredictor

    coarse, stage1 = offline_stage1()  # what `dissam app` without weights loads
    predictor = DisSamPredictor.from_pretrained(coarse=coarse, stage1=stage1)
    examples = {p.stem: p for p in list_images(ROOT / "examples" / "images")}
    box = json.loads((ROOT / "examples" / "prompts.json").read_text())[examples[args.example].name][0]
    gt = np.asarray(Image.open(ROOT / "examples" / "gt" / f"{args.example}.png").convert("L")) >= 128
    app = create_app(predictor, models=describe_models(predictor), examples=examples)
    chromium_args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run"]
    shots = []
    with LoopbackServer(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=chromium_args)
        page = browser.new_context(accept_downloads=True, viewport={"width": 1360, "height": 1000}).new_page()
        page.goto(url + "/")
        page.select_option("#example", args.example)
        expect(page.locator("#status")).to_contain_text("image loaded")
        c = page.locator("#canvas").bounding_box()
        s = gt.shape[1] / c["width"]

        def at(x, y):
            return c["x"] + x / s, c["y"] + y / s

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
            page.wait_for_timeout(300)
            canvas = Image.open(io.BytesIO(page.locator("#canvas").screenshot())).convert("RGB")
            over = Image.open(io.BytesIO(page.locator("#overlay-0").screenshot())).convert("RGB")
            shots.append((label, canvas, over))

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
        draw.text((pad, y + 4), f"{label}: the page's canvas (left) and its overlay of the refined mask (right)",
                  fill="black")
        y += caption
        sheet.paste(cv, (pad, y))
        sheet.paste(ov, (2 * pad + cv.width, y))
        y += max(cv.height, ov.height) + pad
    # 256 colours keep the picture sharp at a third of the size of a true-colour PNG
    sheet.quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
