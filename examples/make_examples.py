"""Regenerate the bundled example images and box prompts from the synthetic generator.

    python examples/make_examples.py

Writes ``examples/images/*.jpg`` (640x480), ``examples/gt/*.png`` (their exact soft ground
truth) and ``examples/prompts.json`` ``{file: [[x0, y0, x1, y1]]}`` (target box, inclusive
pixels). Deterministic: the same dissam version writes the same files. Photo backgrounds come
from scikit-image's public-domain/CC0 sample images (see docs/synthetic.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from dissam.data.synthetic import encode_jpeg, generate_sample
from dissam.io import write_png
from dissam.utils import atomic_write_bytes

HERE = Path(__file__).resolve().parent
SEED = 2025
# (file stem, sample index, target kind, background kind)
EXAMPLES = (
    ("tree_on_coffee", 0, "tree", "photo"),
    ("fence_on_bricks", 4, "fence", "photo"),
    ("wheel_filigree", 3, "wheel", "noise"),
)


def main() -> None:
    prompts = {}
    for stem, index, kind, bg in EXAMPLES:
        image, gt, box = generate_sample(index, SEED, size=(480, 640), kind=kind, background_kind=bg)
        atomic_write_bytes(HERE / "images" / f"{stem}.jpg", encode_jpeg(image, quality=88))
        write_png(HERE / "gt" / f"{stem}.png", gt)
        prompts[f"{stem}.jpg"] = [[int(v) for v in box]]
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in prompts.items()) + "\n}\n"
    atomic_write_bytes(HERE / "prompts.json", text.encode())
    print(f"wrote {len(prompts)} examples to {HERE}")


if __name__ == "__main__":
    main()
