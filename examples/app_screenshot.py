"""Make docs/images/app.png: the app on the built-in models, an example image, one box, in chromium.

Starts `dissam app`'s application on a loopback port (the bundled U²-Netp stage 1 + the built-in
refiner, as a new user without weights gets it), opens it in Debian's chromium through Playwright, picks an
example, drags its box from examples/prompts.json with the mouse, runs, and saves a screenshot.

Usage: .venv/bin/python examples/app_screenshot.py [--example photo_coffee] [--out docs/images/app.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_helpers import LoopbackServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="photo_coffee")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "app.png"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from dissam.app.server import create_app
    from dissam.app.service import describe_models
    from dissam.commands.weights import offline_stage1
    from dissam.io import list_images
    from dissam.predictor import DisSamPredictor

    coarse, stage1 = offline_stage1()  # what `dissam app` without weights loads
    predictor = DisSamPredictor.from_pretrained(coarse=coarse, stage1=stage1)
    examples = {p.stem: p for p in list_images(ROOT / "examples" / "images")}
    box = json.loads((ROOT / "examples" / "prompts.json").read_text())[examples[args.example].name][0]
    app = create_app(predictor, models=describe_models(predictor), examples=examples)
    chromium_args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run"]
    with LoopbackServer(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=chromium_args)
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        page.goto(url + "/")
        expect(page.locator("#example option")).to_have_count(len(examples) + 1)
        page.select_option("#example", args.example)
        expect(page.locator("#status")).to_contain_text("image loaded")
        c = page.locator("#canvas").bounding_box()
        w = int(page.locator("#status").inner_text().split("×")[0])
        s = w / c["width"]
        page.mouse.move(c["x"] + box[0] / s, c["y"] + box[1] / s)
        page.mouse.down()
        page.mouse.move(c["x"] + box[2] / s, c["y"] + box[3] / s, steps=8)
        page.mouse.up()
        page.click("#run")
        expect(page.locator("#result-0")).to_be_visible(timeout=120_000)
        page.wait_for_timeout(300)
        png = page.screenshot(full_page=True)
        browser.close()
    import io

    from PIL import Image

    # 256 colours keep the picture sharp at a third of the size of a true-colour PNG
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
