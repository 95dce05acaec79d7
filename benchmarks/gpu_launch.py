"""GPU paths past kernel-launch overhead: CUDA graphs and torch.compile for the refiner, SDPA attention in
bf16 for SAM's encoders, and a folder of JPEGs with decoding overlapped with the networks.

Sections (random weights throughout: speed does not depend on them):

* ``refiner``: ``ISNetDIS(5)`` at 1024², batch 1, 2 and 4: eager fp32 and bf16 (``channels_last``),
  the same replayed from a captured CUDA graph (static input and output buffers: one launch per
  call instead of hundreds), and at batch 1 ``torch.compile(mode="reduce-overhead")`` (Inductor
  kernels, also replayed as CUDA graphs). Largest |Δ| of each path's ``d1`` against eager fp32 is recorded.
* ``sam``: SAM ViT-B and ViT-L image encoders at 1024², batch 1, bf16 autocast, with transformers'
  ``eager`` attention and its ``sdpa`` attention (``scaled_dot_product_attention``: flash or
  memory-efficient kernels on a GPU).
* ``folder``: ``--images`` generated JPEGs of about 2 MP, one box each, through a predictor with a
  SAM ViT-L checkpoint and the full refiner: a naive loop (decode, predict, write, one after the
  other) against :func:`dissam.batch_predict.predict_images` (a reader thread decodes ahead and a
  writer thread encodes behind while the networks run); images/s of each.

``--device cpu --smoke`` runs every section on tiny sizes (64² compact refiner, a two-block SAM, a few
small JPEGs), skipping what needs CUDA (graphs, compile) with the reason: a smoke test of the script,
not a measurement. Results go to ``--out`` as JSON (and, through benchmarks/results_io.py, to
``benchmarks/results/gpu_launch_<device>.json`` with ``--save``).

    PYTHONPATH=src python benchmarks/gpu_launch.py --out gpu_launch.json --save         # on a GPU, ~3 min
    PYTHONPATH=src python benchmarks/gpu_launch.py --device cpu --smoke --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_suite import TINY_VIT, VITS, Budget, _bench, _guard, _sync  # noqa: E402  (a sibling script)


# -------------------------------------------------------------------------------------------- refiner
class GraphedRefiner:
    """The refiner's forward (``d1`` only) captured once as a CUDA graph for a fixed batch and dtype;
    each call copies the input into the graph's static buffer, replays, and returns the static output
    (valid until the next call)."""

    def __init__(self, net: torch.nn.Module, example: torch.Tensor, dtype: torch.dtype):
        self.net, self.dtype = net, dtype
        self.static_in = example.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up on a side stream, as graph capture requires
                self._forward(self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = self._forward(self.static_in)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=self.dtype, enabled=self.dtype != torch.float32):
            return self.net(x)[0][0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


def refiner_section(args, device, budget, rows) -> None:
    from dissam.models.isnet import build_refiner

    torch.manual_seed(0)
    net = build_refiner("dis-sam-compact" if args.smoke else "dis-sam").eval().to(device)
    net.to(memory_format=torch.channels_last)
    for batch in args.batches:
        x = (torch.rand(batch, 5, args.size, args.size, device=device) - 0.5).contiguous(
            memory_format=torch.channels_last)
        with torch.inference_mode():
            reference = net(x)[0][0].float()
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            def eager(dtype=dtype, x=x):
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    return net(x)[0][0]

            # compiling takes a minute or more per shape and dtype: batch 1 only, the launch-bound case
            modes = ("eager", "cuda graph", "compile reduce-overhead") if batch == 1 else ("eager", "cuda graph")
            for mode in modes:
                def run(mode=mode, dtype=dtype, x=x, eager=eager, reference=reference):
                    if mode != "eager" and device.type != "cuda":
                        raise RuntimeError(f"{mode} needs CUDA (skipped on {device.type})")
                    fn = eager
                    if mode == "cuda graph":
                        graphed = GraphedRefiner(net, x, dtype)
                        fn = lambda: graphed(x)  # noqa: E731
                    elif mode == "compile reduce-overhead":
                        compiled = torch.compile(net, mode="reduce-overhead")

                        def fn():
                            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype,
                                                                        enabled=dtype != torch.float32):
                                return compiled(x)[0][0]
                    out = _bench(fn, device, args.warmup + (2 if mode.startswith("compile") else 0), args.repeats, budget)
                    out["max_abs_diff_vs_eager_fp32"] = float((fn().float() - reference).abs().max())
                    return out

                _guard(rows, f"refiner {mode} {prec} b{batch}", budget, run, group="refiner", mode=mode,
                       precision=prec, batch=batch, size=args.size)


# ------------------------------------------------------------------------------------------------ sam
def sam_section(args, device, budget, rows) -> None:
    from transformers import SamConfig, SamModel

    for name in args.vits:
        for impl in ("eager", "sdpa"):
            def run(name=name, impl=impl):
                config = SamConfig(vision_config=TINY_VIT if args.smoke else VITS[name])
                config._attn_implementation = impl
                config.vision_config._attn_implementation = impl
                with torch.device(device):
                    model = SamModel(config).eval()
                px = torch.randn(1, 3, 1024, 1024, device=device)

                def fn():
                    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                        return model.vision_encoder(pixel_values=px).last_hidden_state

                out = _bench(fn, device, args.warmup, args.repeats, budget)
                out["attention_class"] = type(model.vision_encoder.layers[0].attn).__name__
                return out

            _guard(rows, f"sam {name} encoder bf16 {impl}", budget, run, group="sam", attention=impl, batch=1)


# --------------------------------------------------------------------------------------------- folder
def write_folder(folder: Path, n: int, megapixels: float) -> list[Path]:
    import cv2

    from dissam.matting import synthetic_composite

    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    paths = []
    for i in range(n):
        img = synthetic_composite(h, w, seed=i)["image"]
        p = folder / f"img{i:03d}.jpg"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(p)
    return paths


def folder_section(args, device, budget, rows) -> None:
    from dissam.batch_predict import OutputOptions, predict_images
    from dissam.checkpoints import save_checkpoint
    from dissam.io import read_image, write_png
    from dissam.models.isnet import build_refiner
    from dissam.predictor import DisSamPredictor
    from dissam.testing import SAM_VARIANTS, official_sam_rows, sam_fixture_state_dict

    tmp = Path(tempfile.mkdtemp(prefix="dissam-gpu-folder-"))
    torch.manual_seed(0)
    refiner = save_checkpoint(tmp / "refiner.safetensors", build_refiner("dis-sam-compact" if args.smoke else "dis-sam"),
                              metadata={"input_size": args.size})
    sam = tmp / "sam.pth"
    torch.save(sam_fixture_state_dict(official_sam_rows(*(SAM_VARIANTS["vit_l"] if not args.smoke
                                                          else (64, 2, 2, (1,))))), sam)
    images = write_folder(tmp, args.images, args.megapixels)

    def factory():
        return DisSamPredictor.from_pretrained(sam=str(sam), refiner=str(refiner), device=device, backend="torch")

    def box(shape) -> np.ndarray:
        h, w = shape[:2]
        return np.array([[0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h]])

    predictor = factory()
    predictor.set_image(read_image(images[0])).predict(boxes=box(predictor.image.shape))  # warm-up

    def naive():
        out = tmp / "naive"
        out.mkdir(exist_ok=True)
        t = time.perf_counter()
        for p in images:
            img = read_image(p)
            pred = predictor.set_image(img).predict(boxes=box(img.shape))[0]
            write_png(out / f"{p.stem}_0.png", pred.mask.astype(np.uint8) * 255)
        _sync(device)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "img_per_s": len(images) / seconds}

    def overlapped():
        t = time.perf_counter()
        predict_images(lambda: predictor, images, tmp / "overlapped", lambda p, hw: box(hw),
                       options=OutputOptions(), progress=False, overwrite=True)
        _sync(device)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "img_per_s": len(images) / seconds}

    try:
        for name, fn in (("naive loop", naive), ("predict_images (overlapped decode/write)", overlapped)):
            _guard(rows, f"folder {name}", budget, fn, group="folder", images=len(images), megapixels=args.megapixels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a ViT-L checkpoint and the JPEGs


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a smoke test of the script")
    ap.add_argument("--sections", default="refiner,sam,folder")
    ap.add_argument("--images", type=int, default=None, help="JPEGs in the folder section (default 32; smoke 3)")
    ap.add_argument("--megapixels", type=float, default=None, help="size of those JPEGs (default 2; smoke 0.05)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--budget-s", type=float, default=400.0, help="stop measuring after this many seconds")
    ap.add_argument("--out", default="gpu_launch.json")
    ap.add_argument("--save", action="store_true", help="also write benchmarks/results/gpu_launch_<device>.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_launch: CUDA is not available here; use --device cpu --smoke", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    args.size = 64 if args.smoke else 1024
    args.batches = [1, 2] if args.smoke else [1, 2, 4]
    args.vits = ["vit_b"] if args.smoke else ["vit_b", "vit_l"]
    args.images = args.images or (3 if args.smoke else 32)
    args.megapixels = args.megapixels or (0.05 if args.smoke else 2.0)
    args.repeats = args.repeats or (2 if args.smoke else 20)
    args.warmup = 1 if args.smoke else 3
    budget = Budget(args.budget_s)
    rows: list[dict] = []
    t0 = time.perf_counter()
    sections = {"refiner": refiner_section, "sam": sam_section, "folder": folder_section}
    for name in args.sections.split(","):
        sections[name.strip()](args, device, budget, rows)
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows,
              "total_s": time.perf_counter() - t0}
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    if args.save:
        from results_io import markdown_table, save

        table = markdown_table(["path", "ms", "images/s", "peak CUDA MB", "max abs diff vs eager fp32"], [
            [r["path"], f"{r['ms']:.2f}" if "ms" in r else (r.get("error") or r.get("skipped", ""))[:60],
             f"{r['img_per_s']:.1f}" if "img_per_s" in r else "",
             f"{r['peak_mb']:.0f}" if r.get("peak_mb") else "",
             f"{r['max_abs_diff_vs_eager_fp32']:.1e}" if "max_abs_diff_vs_eager_fp32" in r else ""]
            for r in rows])
        save(f"gpu_launch_{device.type}", result, {"gpu_launch": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
