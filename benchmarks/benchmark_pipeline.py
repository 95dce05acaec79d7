"""Per-image CPU cost of ``dissam benchmark`` outside the networks, at DIS-5K image sizes.

Everything the benchmark does per image besides SAM and the refiner runs on the CPU, also when
the networks run on a GPU: decoding, the whole-GT box, the faithful 1024² input, the bilinear
resize back, min-max, and the PNG write. This script times each of those stages on one synthetic
image of DIS-5K's typical size. It also compares two ways to build the inputs for
``dis-sam + dis-sam@jitterP + isnet``: one ``faithful_sample`` per variant, against one shared
resize (what :mod:`dissam.paper_tables` does).

    .venv/bin/python benchmarks/benchmark_pipeline.py [--h 2500 --w 3300 --repeat 5]

Writes benchmarks/results/benchmark_pipeline.json (``--out``: elsewhere) with the table ``stages``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from results_io import markdown_table, save


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=int, default=2500)
    ap.add_argument("--w", type=int, default=3300)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", help="the results file (default benchmarks/results/benchmark_pipeline.json)")
    args = ap.parse_args()

    from dissam.io import read_image, read_mask, write_png
    from dissam.paper_tables import jitter_box, whole_gt_box, write_png_fast
    from dissam.transforms import (
        assemble_input,
        box_map_from_box,
        faithful_sample,
        postprocess,
        resize_uint8,
        to_authors_png,
    )

    h, w, size, rep = args.h, args.w, args.size, args.repeat
    rng = np.random.default_rng(0)
    gt = np.zeros((h, w), np.uint8)
    cv2.ellipse(gt, (w // 2, h // 2), (w // 3, h // 3), 15, 0, 360, 255, -1)
    for _ in range(60):  # thin structures, like DIS-5K
        p = rng.integers(0, [w, h], size=(2, 2))
        cv2.line(gt, tuple(map(int, p[0])), tuple(map(int, p[1])), 255, int(rng.integers(1, 4)))
    image = (rng.integers(0, 60, (h, w, 3)) + (gt[..., None] > 0) * 150).astype(np.uint8)
    sam = cv2.dilate(gt, np.ones((9, 9), np.uint8))
    d1 = torch.rand(1, 1, size, size)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cv2.imwrite(str(tmp / "im.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(tmp / "gt.png"), gt)
        box, _ = whole_gt_box(gt)
        jbox = jitter_box(box, 10, 0, "DIS-TE1", "x", (h, w))
        png = to_authors_png(postprocess(d1[0, 0], (h, w)))

        def shared():
            base = faithful_sample(image, gt, sam, size=size)
            m = resize_uint8(torch.from_numpy(sam)[None], size)
            return (
                base["image"],
                assemble_input(base["im_u8"], m, box_map_from_box(jbox, (h, w), size)),
                base["image"][:3],
            )

        def separate():
            a = faithful_sample(image, gt, sam, size=size)["image"]
            b = faithful_sample(image, gt, sam, size=size)["image"].clone()
            b[4] = box_map_from_box(jbox, (h, w), size)[0].float() / 255
            c = faithful_sample(image, gt, np.zeros_like(sam), size=size)["image"][:3]
            return a, b, c

        rows = [
            ("read_image (JPEG decode)", _time(lambda: read_image(tmp / "im.jpg"), rep)),
            ("read_mask (PNG)", _time(lambda: read_mask(tmp / "gt.png"), rep)),
            ("whole_gt_box (components)", _time(lambda: whole_gt_box(gt), rep)),
            ("faithful_sample (5 x 1024²)", _time(lambda: faithful_sample(image, gt, sam, size=size), rep)),
            (
                "postprocess + to_authors_png",
                _time(lambda: to_authors_png(postprocess(d1[0, 0], (h, w))), rep),
            ),
            ("io.write_png (PIL, default level)", _time(lambda: write_png(tmp / "p.png", png), rep)),
            ("benchmark's writer (OpenCV, level 1)", _time(lambda: write_png_fast(tmp / "q.png", png), rep)),
            ("inputs dis-sam + jitter + isnet, one faithful_sample each", _time(separate, rep)),
            ("inputs dis-sam + jitter + isnet, shared resize (what the benchmark does)", _time(shared, rep)),
        ]
        assert np.array_equal(read_mask(tmp / "p.png"), read_mask(tmp / "q.png")), "PNG writers differ"
        png_bytes = {"pil": (tmp / "p.png").stat().st_size, "opencv": (tmp / "q.png").stat().st_size}
        a, b = shared(), separate()
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), "shared inputs differ"
    ms = {name: 1000 * t for name, t in rows}
    names = [name for name, _ in rows]
    # what the benchmark spends per image on the CPU: decode, GT, box, shared inputs, postprocess, fast writer
    per_image = sum(ms[names[k]] for k in (0, 1, 2, 4, 6, 8))
    results = {
        "image_wh": [w, h], "size": size, "repeat": rep, "torch_threads": torch.get_num_threads(), "ms": ms,
        "png_bytes": png_bytes, "cpu_per_image_s": per_image / 1000,
        "png_writer_speedup": ms[names[5]] / ms[names[6]], "png_size_ratio": png_bytes["opencv"] / png_bytes["pil"],
        "shared_inputs_speedup": ms[names[7]] / ms[names[8]],
    }
    table = markdown_table(["stage", "ms"], [[name, f"{t:.0f}"] for name, t in ms.items()])
    save("benchmark_pipeline", results, {"stages": table}, out=args.out,
         notes=f"one synthetic {w}x{h} image (an ellipse plus 60 thin lines), refiner size {size}, median of {rep}")


if __name__ == "__main__":
    main()
