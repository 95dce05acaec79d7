"""``dissam export``: ONNX graphs of the refiner, SAM's image encoder and SAM's prompt decoder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "export the refiner and SAM (encoder, box-prompt decoder) to ONNX"
DESCRIPTION = """\
Write ONNX graphs (opset 17) to the output folder:
  refiner.onnx        x (N, 5, S, S) -> d1 (N, 1, S, S)                     batch N dynamic
  sam-encoder.onnx    pixel_values (1, 3, 1024, 1024) -> image_embeddings (1, 256, 64, 64)
                      (HQ-SAM: + intermediate_embeddings (L, 1, 64, 64, C))
  sam-decoder.onnx    image_embeddings, boxes (1, N, 4) [, intermediate_embeddings]
                      -> low_res_logits (N, 3, 256, 256), iou_predictions (N, 3)  boxes N dynamic
  sam-encoder.int8.onnx  with --int8: dynamic int8 encoder (lossy; see docs/benchmarks.md)
and export.json describing them. Boxes are XYXY in the 1024 input frame (see docs/runtime.md).
Needs the optional extra: pip install 'dissam[onnx]'.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="dissam_onnx", help="output folder (default: dissam_onnx)")
    p.add_argument("--refiner", help="refiner checkpoint (default: the built-in model)")
    p.add_argument("--sam", help="SAM / HQ-SAM weights (official .pth, Hugging Face folder or hub id)")
    p.add_argument("--parts", default=None,
                   help="comma-separated: refiner, sam-encoder, sam-decoder (default: refiner, and both SAM "
                        "parts when --sam is given)")
    p.add_argument("--int8", action="store_true", help="also write a dynamic int8 SAM encoder")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch check on random inputs")


PARTS = ("refiner", "sam-encoder", "sam-decoder")


def run(args: argparse.Namespace) -> int:
    from dissam.errors import DisSamError
    from dissam.runtime import onnx_export as ox

    ox.require_onnx(runtime=not args.no_check)
    parts = [s.strip() for s in args.parts.split(",")] if args.parts else (
        list(PARTS) if args.sam else ["refiner"])
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise DisSamError(f"unknown part(s) {', '.join(bad)}: use {', '.join(PARTS)}")
    if any(p.startswith("sam") for p in parts) and not args.sam:
        raise DisSamError("exporting SAM needs --sam (official .pth, Hugging Face folder or hub id)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"opset": ox.OPSET, "graphs": {}}
    if "refiner" in parts:
        from dissam.hub.loading import load_refiner
        from dissam.predictor import BUILTIN_REFINER

        ref = load_refiner(args.refiner or BUILTIN_REFINER, device="cpu")
        path = ox.export_refiner(ref, out / "refiner.onnx")
        manifest["graphs"]["refiner"] = {
            "file": path.name, "source": str(ref.source), "inputs": {"x": ["N", ref.in_ch, ref.input_size, ref.input_size]},
            "outputs": {"d1": ["N", 1, ref.input_size, ref.input_size]}, "dynamic_axes": {"x": {"0": "N"}},
            "dropped_channels": list(ref.dropped_channels),
        }
        if not args.no_check:
            manifest["graphs"]["refiner"]["check_max_abs_diff"] = _check_refiner(ref, path)
    if any(p.startswith("sam") for p in parts):  # no SAM load when only the refiner is exported
        from dissam.stages.sam import load_sam

        stage = load_sam(args.sam, device="cpu")
        kind = "sam_hq" if stage.is_hq else "sam"
        if "sam-encoder" in parts:
            path = ox.export_sam_encoder(stage, out / "sam-encoder.onnx")
            manifest["graphs"]["sam-encoder"] = {"file": path.name, "source": str(stage.source), "model_type": kind}
            if args.int8:
                q = ox.quantize_int8(path, out / "sam-encoder.int8.onnx")
                manifest["graphs"]["sam-encoder-int8"] = {"file": q.name, "source": str(stage.source), "model_type": kind}
        if "sam-decoder" in parts:
            path = ox.export_sam_decoder(stage, out / "sam-decoder.onnx")
            manifest["graphs"]["sam-decoder"] = {
                "file": path.name, "source": str(stage.source), "model_type": kind,
                "dynamic_axes": {"boxes": {"1": "N"}, "low_res_logits": {"0": "N"}, "iou_predictions": {"0": "N"}},
            }
    from dissam.utils import atomic_write_bytes

    atomic_write_bytes(out / "export.json", json.dumps(manifest, indent=1).encode())
    for name, g in manifest["graphs"].items():
        extra = f" (max |onnx - torch| {g['check_max_abs_diff']:.2e})" if "check_max_abs_diff" in g else ""
        print(f"dissam export: {name} -> {out / g['file']}{extra}")
    return 0


def _check_refiner(ref, path: Path) -> float:
    """Max abs difference of d1 between ONNX Runtime and torch on a random 2-image batch."""
    import numpy as np
    import torch

    from dissam.runtime.runners import ort_session

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, ref.in_ch, ref.input_size, ref.input_size, generator=g) - 0.5
    ort_d1 = ort_session(path).run(["d1"], {"x": x.numpy()})[0]
    torch_d1 = ref.forward_d1(x).numpy()
    return float(np.abs(ort_d1 - torch_d1).max())
