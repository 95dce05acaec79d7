"""What the fast paths cost in accuracy: bf16, channels_last and ONNX Runtime (fp32, int8) against
torch fp32, on trained and on parity-fixture weights.

Refiner (``dissam.runtime.runners``), on a generated test set (``dissam synth --masks degrade``, boxes
from the generator):
  * the built-in model (``dis-sam-compact``, trained; at its input size and at 1024²): max |d1 - d1_fp32|,
    mean mask IoU against fp32 (threshold 0.5), and the paper's metrics of each path against the GT;
  * the full ``ISNetDIS(5)`` with the parity fixtures' weights (tests/fixtures/isnet; untrained, so
    its differences say little about quantisation error: reported for completeness) at 1024².
SAM encoder, the parity fixtures' tiny SAM (tests/fixtures/sam; untrained): embedding max abs diff and
cosine, and coarse-mask IoU for the fixture boxes, for bf16 and ONNX int8 against fp32.

Usage:  PYTHONPATH=src python benchmarks/precision_accuracy.py [--n 24] [--threads 2] [--out results.json]
Writes benchmarks/results/precision_accuracy.json (``--out``: elsewhere) with the Markdown tables the
docs show: ``refiner``, ``fixture`` (with ``--fixture-n`` > 0) and ``sam``.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_io import markdown_table, save  # noqa: E402  (a sibling module, not a package)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def refiner_paths(ref, size: int, tmp: Path):
    """name -> runner for the refiner ``ref`` at input ``size``."""
    from dissam.refiner import Refiner
    from dissam.runtime.onnx_export import export_refiner
    from dissam.runtime.runners import OnnxRefinerRunner, TorchRefinerRunner

    def own():  # each runner its own copy: channels_last changes the module's memory format
        return Refiner(copy.deepcopy(ref.net), ref.config, size, ref.dropped_channels, ref.source)

    path = export_refiner(own(), tmp / f"refiner{size}.onnx")
    return {
        "torch fp32": TorchRefinerRunner(own(), "fp32", channels_last=False),
        "torch fp32 channels_last": TorchRefinerRunner(own(), "fp32", channels_last=True),
        "torch bf16 channels_last": TorchRefinerRunner(own(), "bf16", channels_last=True),
        "ORT fp32": OnnxRefinerRunner(own(), "fp32", path=path),
    }


def evaluate_refiner(ref, size: int, data: Path, n: int, tmp: Path, metrics: bool) -> dict:
    from dissam.evaluate import evaluate_folders
    from dissam.io import read_image, read_mask, write_png
    from dissam.transforms import clean_inputs, postprocess

    boxes = json.loads((data / "boxes.json").read_text())
    stems = sorted(boxes)[:n]
    paths = refiner_paths(ref, size, tmp)
    stats = {k: {"max_abs": 0.0, "iou": [], "seconds": []} for k in paths}
    for stem in stems:
        im = read_image(data / "im" / f"{stem}.jpg")
        mask = read_mask(data / "mask" / f"{stem}.png") > 127
        x = clean_inputs(im, mask[None], np.asarray([boxes[stem]], float), size)
        outs = {}
        for name, run in paths.items():
            t0 = time.perf_counter()
            d1 = run(x.clone()).float().cpu()
            stats[name]["seconds"].append(time.perf_counter() - t0)
            outs[name] = postprocess(d1, im.shape[:2])[0].numpy()
            if metrics:
                folder = tmp / f"pred{size}" / name.replace(" ", "_")
                write_png(folder / f"{stem}.png", (outs[name] * 255).round().clip(0, 255).astype(np.uint8))
        ref_out = outs["torch fp32"]
        for name in paths:
            stats[name]["max_abs"] = max(stats[name]["max_abs"], float(np.abs(outs[name] - ref_out).max()))
            stats[name]["iou"].append(_iou(outs[name] > 0.5, ref_out > 0.5))
    result = {}
    for name, s in stats.items():
        row = {"max_abs_diff": s["max_abs"], "mask_iou_mean": float(np.mean(s["iou"])),
               "mask_iou_min": float(np.min(s["iou"])), "median_s": float(np.median(s["seconds"][1:] or s["seconds"]))}
        if metrics:
            agg = evaluate_folders(tmp / f"pred{size}" / name.replace(" ", "_"), data / "gt", progress=False,
                                   metrics=("maxFm", "wFmeasure", "MAE", "Smeasure", "meanEm", "mIoU"),
                                   skeleton_cache=None)["aggregate"]
            row["metrics"] = {k: float(v) for k, v in agg.items() if isinstance(v, (int, float))}
        result[name] = row
    return result


def evaluate_sam(tmp: Path) -> dict:
    from PIL import Image

    from dissam.checkpoints.sam import build_sam_from_state_dict
    from dissam.runtime.onnx_export import export_sam_encoder, quantize_int8
    from dissam.runtime.runners import OnnxSamEncoderRunner, TorchSamEncoderRunner
    from dissam.stages.sam import preprocess_image
    from dissam.testing import sam_fixture_state_dict

    fx = ROOT / "tests" / "fixtures" / "sam"
    model = build_sam_from_state_dict(sam_fixture_state_dict(json.loads((fx / "manifest.json").read_text())))
    image = np.array(Image.open(fx / "image.png").convert("RGB"))
    boxes = torch.tensor(json.loads((fx / "meta.json").read_text())["boxes_xyxy"], dtype=torch.float32)
    pixels, (nh, nw) = preprocess_image(image)
    scale = torch.tensor([nw / image.shape[1], nh / image.shape[0]] * 2)
    enc = export_sam_encoder(model, tmp / "sam_enc.onnx")
    q = quantize_int8(enc, tmp / "sam_enc.int8.onnx")
    paths = {"torch fp32": TorchSamEncoderRunner(model, "fp32"), "torch bf16": TorchSamEncoderRunner(model, "bf16"),
             "ORT fp32": OnnxSamEncoderRunner(model, None, path=enc), "ORT int8": OnnxSamEncoderRunner(model, None, path=q)}
    out = {}
    for name, run in paths.items():
        emb, _ = run(pixels)
        with torch.inference_mode():
            masks = model(image_embeddings=emb, input_boxes=(boxes * scale)[None], multimask_output=True).pred_masks[0]
        out[name] = (emb, masks[:, 0] > 0)
    e0, m0 = out["torch fp32"]
    res = {}
    for name, (emb, m) in out.items():
        cos = torch.nn.functional.cosine_similarity(emb.flatten(), e0.flatten(), dim=0)
        res[name] = {"emb_max_abs_diff": float((emb - e0).abs().max()), "emb_cosine": float(cos),
                     "low_res_mask_iou_min": min(_iou(a.numpy(), b.numpy()) for a, b in zip(m, m0))}
    return res


PATHS = {"torch fp32": "torch_fp32", "torch fp32 channels_last": "torch_fp32_cl",
         "torch bf16 channels_last": "torch_bf16_cl", "ORT fp32": "ort_fp32"}
SAM_PATHS = {"torch bf16": "torch_bf16", "ORT fp32": "ort_fp32", "ORT int8": "ort_int8"}
LABELS = {"torch_fp32": "torch fp32", "torch_fp32_cl": "torch fp32 `channels_last`",
          "torch_bf16_cl": "torch bf16 `channels_last`", "ort_fp32": "ORT fp32", "torch_bf16": "torch bf16",
          "ort_int8": "ORT dynamic int8"}


def _diff(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}"


def _iou_pair(mean: float, low: float) -> str:
    return "1 / 1" if mean == low == 1.0 else f"{mean:.4f} / {low:.4f}"


def refiner_table(results: dict, keys: list[str]) -> str:
    """The paths of ``results[key]`` for each key; the metric columns only where metrics were computed."""
    metrics = all("metrics" in r for key in keys for r in results[key]["paths"].values())
    rows = []
    for key in keys:
        block = results[key]
        for path, r in block["paths"].items():
            row = [LABELS[path], block["size"], _diff(r["max_abs_diff"]), _iou_pair(r["mask_iou_mean"], r["mask_iou_min"])]
            if metrics:
                row += [f"{r['metrics'][k]:.4f}" for k in ("maxFm", "MAE", "Smeasure", "mIoU")]
            rows.append(row)
    header = ["refiner path", "size", "max abs diff vs fp32", "mask IoU vs fp32, mean / min"]
    return markdown_table(header + (["maxF", "MAE", "S", "mIoU"] if metrics else []), rows)


def sam_table(sam: dict) -> str:
    rows = [[LABELS[k], f"{r['emb_max_abs_diff']:.2g}" if r["emb_max_abs_diff"] >= 1e-3 else _diff(r["emb_max_abs_diff"]),
             f"{r['emb_cosine']:.5f}", f"{r['low_res_mask_iou_min']:.4f}"] for k, r in sam.items() if k != "torch_fp32"]
    return markdown_table(["SAM encoder path", "embedding max abs diff", "cosine vs fp32",
                           "low-res mask IoU vs fp32 (min over boxes)"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24, help="test images (default 24)")
    ap.add_argument("--fixture-n", type=int, default=3, help="images for the full fixture-weight refiner at 1024²")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", help="an existing `dissam synth --masks degrade` folder (default: generate one)")
    ap.add_argument("--out", help="the results file (default benchmarks/results/precision_accuracy.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dissam.hub.loading import load_refiner
    from dissam.models.isnet import ISNetDIS
    from dissam.predictor import BUILTIN_REFINER
    from dissam.refiner import Refiner
    from dissam.testing import isnet_fixture_state_dict

    tmp = Path(tempfile.mkdtemp(prefix="dissam_acc_"))
    data = Path(args.data) if args.data else tmp / "synth"
    if not args.data:
        subprocess.run([sys.executable, "-m", "dissam", "synth", str(data), "-n", str(args.n), "--seed", "11",
                        "--masks", "degrade", "--no-progress"], check=True)
    results: dict = {"threads": args.threads, "n": args.n, "fixture_n": args.fixture_n, "torch": torch.__version__}

    def refiner_block(ref, size: int, n: int, metrics: bool) -> dict:
        paths = evaluate_refiner(ref, size, data, n, tmp, metrics=metrics)
        return {"size": size, "images": n, "paths": {PATHS[k]: v for k, v in paths.items()}}

    builtin = load_refiner(BUILTIN_REFINER)
    results["builtin_native"] = refiner_block(builtin, builtin.input_size, args.n, True)
    results["builtin_1024"] = refiner_block(builtin, 1024, args.n, True)
    tables = {"refiner": refiner_table(results, ["builtin_native", "builtin_1024"])}
    if args.fixture_n > 0:
        manifest = json.loads((ROOT / "tests" / "fixtures" / "isnet" / "manifest.json").read_text())
        net = ISNetDIS(in_ch=5).eval()
        net.load_state_dict(isnet_fixture_state_dict(manifest["isnet_dis_in5"]["state_dict"]))
        results["fixture_isnet_1024"] = refiner_block(Refiner.from_module(net), 1024, args.fixture_n, False)
        tables["fixture"] = refiner_table(results, ["fixture_isnet_1024"])
    results["sam_fixture"] = {{**SAM_PATHS, "torch fp32": "torch_fp32"}[k]: v for k, v in evaluate_sam(tmp).items()}
    tables["sam"] = sam_table(results["sam_fixture"])
    save("precision_accuracy", results, tables, out=args.out,
         notes=f"refiner: dis-sam-compact (trained) on {args.n} images of `dissam synth --seed 11 --masks degrade`; "
               "SAM: the parity fixtures' tiny SAM (untrained)")


if __name__ == "__main__":
    main()
