"""Regenerate docs/images/quickstart.png: for each bundled example, the input with its box, the
coarse stage-1 mask and the refined mask, side by side (built-in refiner; the weight-free stage 1
``--stage1``, the offline default ``u2netp-auto`` unless given, or --sam).

Usage: .venv/bin/python examples/make_readme_figure.py [--sam SOURCE] [--refiner CKPT] [--stage1 u2netp-auto]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dissam.io import write_png
from dissam.predictor import DisSamPredictor
from dissam.visualize import cutout, overlay, panel

HERE = Path(__file__).parent
LABELS = {"u2netp-auto": "U2-Netp auto", "u2netp": "U2-Netp", "u2netp-grabcut": "U2-Netp+GrabCut", "grabcut": "GrabCut"}
"""Panel titles of the weight-free stage 1s (ASCII: the panel font has no superscript 2)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sam")
    ap.add_argument("--refiner")
    ap.add_argument("--stage1", choices=list(LABELS), default="u2netp-auto",
                    help="the weight-free stage 1 when no --sam is given")
    ap.add_argument("--coarse", choices=["stage1", "degraded-gt"], default="stage1",
                    help="stage1: the coarse mask of SAM/GrabCut; degraded-gt: the SAM-like degraded ground truth "
                         "the built-in model was trained with (refine-only mode)")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "images" / "quickstart.png"))
    a = ap.parse_args()
    prompts = json.loads((HERE / "prompts.json").read_text())
    if a.sam:
        pred = DisSamPredictor.from_pretrained(sam=a.sam, refiner=a.refiner, device="cpu")
    elif a.stage1 == "grabcut":
        pred = DisSamPredictor.from_pretrained(sam=None, refiner=a.refiner, device="cpu", stage1="grabcut")
    else:
        pred = DisSamPredictor.from_pretrained(sam=None, refiner=a.refiner, device="cpu", stage1=a.stage1)
    stage1 = "SAM" if a.sam else LABELS[a.stage1]
    if a.coarse == "degraded-gt":
        from dissam.coarse import degrade_mask
        from dissam.io import read_mask

        stage1 = "degraded GT"
    rows = []
    for name in sorted(prompts):
        pred.set_image(HERE / "images" / name)
        given = None
        if a.coarse == "degraded-gt":
            given = degrade_mask(read_mask(HERE / "gt" / (Path(name).stem + ".png")), seed=0)
        res = pred.predict(box=prompts[name][0], coarse_mask=given)
        checker = ((np.indices(pred.image.shape[:2]).sum(0) // 16) % 2 * 60 + 170).astype(np.uint8)
        rgba = cutout(pred.image, res.soft).astype(np.float32)
        comp = rgba[..., :3] * (rgba[..., 3:] / 255) + checker[..., None] * (1 - rgba[..., 3:] / 255)
        rows.append(panel(
            [overlay(pred.image, [], [res.box]), res.coarse, res.soft, comp.astype(np.uint8)],
            ["input + box", f"coarse ({stage1})", "refined (soft)", "cut-out"], height=200,
        ))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_png(a.out, np.concatenate(rows, axis=0))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
