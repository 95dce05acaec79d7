"""``dissam predict --rgba`` on generated big JPEGs: seconds and peak RSS, this tree against a base revision.

For each ``--sizes`` entry (megapixels, 3:2) a JPEG is generated (a soft-edged object with thin strands
on a textured background, :func:`dissam.matting.synthetic_composite` scaled up) and one
``dissam predict IMAGE --box ... --rgba`` process runs with the default models (the built-in refiner
and the bundled stage 1), once with this tree's code and once with ``--base`` (a git revision, read
with ``git archive``), side by side. Each process is timed from start to exit and its own peak RSS is
read in it (``ru_maxrss``). A warm-up process on a small JPEG runs first for each code base, so that a
first-ever ONNX export is not counted. Outputs of the two code bases are compared (mask equal,
cut-out's largest colour difference).

``--phases MP`` instead times, in one process of this tree, each phase of the same work on one
generated JPEG of MP megapixels (decode, loading the models, stage 1, the refiner with its input
resize and output upsampling, the binary mask, the cut-out's foreground estimation, PNG encoding of
each file), with the process's peak RSS after each phase: where the seconds and the memory go.

Usage:  PYTHONPATH=src python benchmarks/big_photo.py --sizes 24,54 --base main
        PYTHONPATH=src python benchmarks/big_photo.py --phases 54
        PYTHONPATH=src python benchmarks/big_photo.py --sizes 0.3 --base HEAD --out /tmp/x.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_jpeg(path: Path, megapixels: float) -> list[int]:
    """A 3:2 JPEG of about ``megapixels`` MP; returns the object's box (XYXY pixels)."""
    import cv2

    from dissam.matting import synthetic_composite

    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    small = synthetic_composite(max(64, h // 4), max(96, w // 4), seed=0)["image"]
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(-6, 7, size=(h, 1, 1), dtype=np.int16)  # some texture per row
    big = np.clip(big.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    r = 0.28 * min(h, w) * 1.6  # the disk and its strands (synthetic_composite's geometry)
    return [int(max(0, w / 2 - r)), int(max(0, h / 2 - r)), int(min(w - 1, w / 2 + r)), int(min(h - 1, h / 2 + r))]


def base_tree(rev: str, folder: Path) -> Path:
    """``src/`` of revision ``rev`` extracted under ``folder``."""
    data = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def run_cli(src: Path, argv: list[str], env: dict) -> dict:
    code = ("import sys, time, resource, json; t = time.perf_counter(); sys.path.insert(0, sys.argv[1]); "
            "from dissam.cli import main; rc = main(sys.argv[2:]); "
            "print(json.dumps({'rc': rc, 'seconds_in_process': time.perf_counter() - t, "
            "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(src), *argv], capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(src)})
    wall = time.perf_counter() - t
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1], "seconds": wall}
    return {**json.loads(lines[-1]), "seconds": wall}


def phases(img_path: Path, box: list[int]) -> dict:
    """Seconds and peak RSS (MB) after each phase of one predict --rgba, in this process (a fresh one:
    the JPEG was made by another, so its peak RSS is the prediction's)."""
    import resource

    from PIL import Image

    from dissam.batch_predict import OutputOptions, prediction_pictures
    from dissam.io import encode_png, read_image
    from dissam.predictor import DisSamPredictor

    box = np.asarray(box, dtype=np.float64)
    out: dict = {}

    def mark(name: str, t: float, **extra) -> None:
        out[name] = {"seconds": time.perf_counter() - t,
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}

    t = time.perf_counter()
    image = read_image(img_path)
    mark("decode JPEG", t)
    t = time.perf_counter()
    p = DisSamPredictor.from_pretrained(device="cpu")
    _ = p.refiner_runner
    mark("load models", t)
    t = time.perf_counter()
    p.set_image(image)
    coarse = p.coarse_masks(box[None])
    mark("stage 1 (coarse mask)", t)
    t = time.perf_counter()
    soft = p.refine(coarse, box[None])
    mark("refiner (input resize, network, upsampling, edit merge)", t)
    t = time.perf_counter()
    pred = p.predict(box, coarse_mask=coarse[0])  # the same again, through predict(): binarising included
    mark("predict() again with the coarse mask given", t)
    assert np.array_equal(pred.soft, soft[0])
    for suffix, make in prediction_pictures(image, pred, OutputOptions(rgba=True)):
        name = suffix.strip("_") or "mask"
        t = time.perf_counter()
        picture = make()
        mark(f"make {name}", t)
        t = time.perf_counter()
        data = encode_png(picture)
        mark(f"PNG encode {name} (as written)", t, bytes=len(data))
        if suffix == "_cutout":  # Pillow's default zlib level (what dissam wrote before): same pixels
            import io

            t = time.perf_counter()
            buf = io.BytesIO()
            Image.fromarray(picture).save(buf, format="PNG", compress_level=6)
            mark(f"PNG encode {name} at Pillow's default compress_level=6", t, bytes=len(buf.getvalue()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="24,54", help="megapixels, comma-separated")
    ap.add_argument("--base", default="main", help="git revision of the code to compare with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phases", type=float, default=None, metavar="MP",
                    help="time each phase of one image of MP megapixels instead (this tree, one process)")
    ap.add_argument("--phases-on", nargs=2, default=None, help=argparse.SUPPRESS)  # IMAGE X0,Y0,X1,Y1: the child
    ap.add_argument("--out", default=None, help="results file (default benchmarks/results/big_photo.json)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from PIL import Image
    from results_io import markdown_table, save

    if args.phases_on:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(phases(Path(args.phases_on[0]), [int(v) for v in args.phases_on[1].split(",")])))
        return
    if args.phases:
        with tempfile.TemporaryDirectory(prefix="dissam-big-photo-") as tmp:
            img = Path(tmp) / "phases.jpg"
            box = make_jpeg(img, args.phases)
            proc = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--phases-on", str(img),
                                   ",".join(map(str, box))], capture_output=True, text=True, check=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        rows = [[k, f"{v['seconds']:.2f}", f"{v['peak_rss_mb']:.0f}", f"{v['bytes'] / 2**20:.0f}" if "bytes" in v else ""]
                for k, v in res.items()]
        save("big_photo_phases", {"megapixels": args.phases, "phases": res},
             {"phases": markdown_table(["phase", "seconds", "peak RSS so far MB", "PNG MiB"], rows)},
             notes="one process of this tree, the default models; the 2 cores are shared with other "
                   "engineers' jobs (see load_average_at_start)", out=args.out)
        return
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    env = {"OMP_NUM_THREADS": str(args.threads)}
    results: dict = {"sizes_mp": sizes, "base": args.base, "runs": []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dissam-big-photo-") as tmp:
        tmp = Path(tmp)
        env["DISSAM_CACHE"] = str(tmp / "cache")
        trees = {"this tree": ROOT / "src", f"base ({args.base})": base_tree(args.base, tmp / "base")}
        warm = tmp / "warm.jpg"
        box = make_jpeg(warm, 0.3)
        for src in trees.values():  # first-ever exports are not what this measures
            run_cli(src, ["predict", str(warm), "--box", ",".join(map(str, box)), "--rgba", "-o", str(tmp / "warm-out"),
                          "--no-progress"], env)
        for mp in sizes:
            img = tmp / f"photo_{mp:g}mp.jpg"
            box = make_jpeg(img, mp)
            w, h = Image.open(img).size
            outs = {}
            for label, src in trees.items():
                out = tmp / f"out-{mp:g}-{len(outs)}"
                r = run_cli(src, ["predict", str(img), "--box", ",".join(map(str, box)), "--rgba", "-o", str(out),
                                  "--no-progress"], env)
                r.update({"label": label, "megapixels": w * h / 1e6, "size": [w, h]})
                results["runs"].append(r)
                outs[label] = out
                rows.append([f"{w}x{h} ({w * h / 1e6:.0f} MP)", label,
                             "error: " + r["error"][:60] if "error" in r else f"{r['seconds']:.1f}",
                             "" if "error" in r else f"{r['peak_rss_mb']:.0f}"])
            a, b = (sorted(o.glob("*_cutout.png")) for o in outs.values())
            if a and b:
                ca, cb = np.asarray(Image.open(a[0])), np.asarray(Image.open(b[0]))
                ma = np.asarray(Image.open(sorted(list(outs.values())[0].glob("*_0.png"))[0]))
                mb = np.asarray(Image.open(sorted(list(outs.values())[1].glob("*_0.png"))[0]))
                results["runs"][-1]["vs_this_tree"] = {
                    "mask_equal": bool(np.array_equal(ma, mb)),
                    "cutout_alpha_equal": bool(np.array_equal(ca[..., 3], cb[..., 3])),
                    "cutout_rgb_max_abs_diff": int(np.abs(ca[..., :3].astype(int) - cb[..., :3].astype(int)).max())}
                rows[-1][1] += " (mask {}, cut-out RGB max abs diff {})".format(
                    "equal" if results["runs"][-1]["vs_this_tree"]["mask_equal"] else "DIFFERS",
                    results["runs"][-1]["vs_this_tree"]["cutout_rgb_max_abs_diff"])
    table = markdown_table(["image", "code", "seconds (process)", "peak RSS MB"], rows)
    save("big_photo", results, {"big_photo": table},
         notes="one box, --rgba, default models; each run its own process, side by side in one run; "
               "the 2 cores are shared with other engineers' jobs (see load_average_at_start)", out=args.out)


if __name__ == "__main__":
    main()
