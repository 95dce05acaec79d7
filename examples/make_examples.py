"""Regenerate the bundled example images and box prompts.

    python examples/make_examples.py

Writes ``examples/images/*.jpg``: three generated samples (640x480, from the synthetic generator;
their exact soft ground truth goes to ``examples/gt/*.png``) and two real photographs from
scikit-image's samples (:data:`PHOTO_EXAMPLES`, CC0; their hand-made masks are in
``examples/real_masks/``), and ``examples/prompts.json`` ``{file: [[x0, y0, x1, y1]]}`` (one box
each, inclusive pixels). Deterministic: the same dissam version writes the same files. Photo
backgrounds of the generated samples come from scikit-image's public-domain/CC0 sample images
(see docs/synthetic.md).
"""

from __future__ import annotations

import argparse
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
# (file stem, skimage.data name, index of its entry in real_photos.json): real photographs, CC0
PHOTO_EXAMPLES = (
    ("photo_coffee", "coffee", 4),
    ("photo_cameraman", "camera", 6),
)


def photo_example(name: str, entry: int):
    """The photograph ``skimage.data.<name>`` (``H x W x 3`` uint8) and its real_photos.json box."""
    import numpy as np
    import skimage.data as skd

    image = np.asarray(getattr(skd, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, 2)
    entry = json.loads((HERE / "real_photos.json").read_text())["photos"][entry]
    assert entry["image"] == name
    return np.ascontiguousarray(image[..., :3]), entry["box"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help: say, then stop
    prompts = {}
    for stem, index, kind, bg in EXAMPLES:
        image, gt, box = generate_sample(index, SEED, size=(480, 640), kind=kind, background_kind=bg)
        atomic_write_bytes(HERE / "images" / f"{stem}.jpg", encode_jpeg(image, quality=88))
        write_png(HERE / "gt" / f"{stem}.png", gt)
        prompts[f"{stem}.jpg"] = [[int(v) for v in box]]
    for stem, name, entry in PHOTO_EXAMPLES:
        image, box = photo_example(name, entry)
        atomic_write_bytes(HERE / "images" / f"{stem}.jpg", encode_jpeg(image, quality=92))
        prompts[f"{stem}.jpg"] = [[int(v) for v in box]]
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in prompts.items()) + "\n}\n"
    atomic_write_bytes(HERE / "prompts.json", text.encode())
    print(f"wrote {len(prompts)} examples to {HERE}")


if __name__ == "__main__":
    main()
