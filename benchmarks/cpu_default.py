"""The CPU default against PyTorch, and a one-image process against its networks' own time.

Every path runs in its own process (peak RSS is that process's max RSS), all in one run, so that
ratios compare paths measured under the same machine load. Random weights throughout (speed and
memory do not depend on them), written to a temporary folder as files the way released weights come.

Groups (``--groups``, default both):
  refiner   the paper's full refiner ``ISNetDIS(5)`` at ``--size`` (1024²), batch 1, loaded from a
            ``.safetensors`` file through ``DisSamPredictor.from_pretrained(refiner=..., stage1="none")``:
            ``--backend torch`` (the previous default), the default (no ``--backend``: ONNX Runtime
            fp32 on the graph exported once for the file; the export is made by a first process and
            timed there), and a bare ONNX Runtime session on that same graph (the reference the
            default should match). Median seconds of ``--repeats`` calls after one warm-up.
  startup   ``import dissam.predictor`` and ``DisSamPredictor.from_pretrained(sam=FILE, refiner=FILE)``
            from the cache (an official-layout SAM checkpoint of ``--sam-size`` and the full
            refiner), then one 480x640 image with one box: the seconds of import, of loading, of the
            image, and the networks' own time (SAM encoder, box decoder, refiner), for the default
            and for ``DISSAM_BACKEND=torch``. The first process (which exports) is timed apart.

Usage:  PYTHONPATH=src python benchmarks/cpu_default.py --threads 2 --repeats 3 --sam-size vit_l
        PYTHONPATH=src python benchmarks/cpu_default.py --smoke     # tiny sizes, seconds: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
REFINER_PATHS = ("torch (previous default)", "default (ORT fp32, cached graph)", "bare ORT session")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:] or times), times


# ------------------------------------------------------------------------------------------ weights
def write_weights(folder: Path, size: int, sam_size: str, refiner_arch: str) -> dict:
    """A random refiner ``.safetensors`` file and an official-layout SAM ``.pth`` file in ``folder``."""
    import torch

    from dissam.checkpoints import save_checkpoint
    from dissam.models.isnet import build_refiner
    from dissam.testing import SAM_VARIANTS, official_sam_rows, sam_fixture_state_dict

    torch.manual_seed(0)
    refiner = save_checkpoint(folder / "refiner.safetensors", build_refiner(refiner_arch).eval(),
                              metadata={"input_size": size})
    dims = SAM_VARIANTS.get(sam_size, (64, 2, 2, (1,)))  # "tiny": a two-block encoder
    sam = folder / f"sam_{sam_size}.pth"
    torch.save(sam_fixture_state_dict(official_sam_rows(*dims)), sam)
    return {"refiner": str(refiner), "sam": str(sam)}


# ------------------------------------------------------------------------------------------ children
def child_refiner(path: str, args: dict) -> dict:
    import torch

    torch.set_num_threads(args["threads"])
    from dissam.predictor import DisSamPredictor

    t = time.perf_counter()
    backend = "torch" if path.startswith("torch") else None
    p = DisSamPredictor.from_pretrained(refiner=args["refiner"], stage1="none", device="cpu", backend=backend)
    runner = p.refiner_runner
    load_s = time.perf_counter() - t
    size = p.size  # the refiner's own input size (its graph is exported at it)
    x = torch.rand(1, 5, size, size, generator=torch.Generator().manual_seed(0)) - 0.5
    if path == "bare ORT session":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args["threads"]
        session = ort.InferenceSession(str(runner.path), opts, providers=["CPUExecutionProvider"])
        del p, runner
        feed = {"x": x.numpy()}
        run = lambda: session.run(["d1"], feed)[0]  # noqa: E731
    else:
        run = lambda: runner(x)  # noqa: E731
    with torch.inference_mode():
        med, times = _median(run, args["repeats"])
        out = torch.as_tensor(run()).float().numpy()
    import numpy as np

    np.save(Path(args["tmp"]) / f"refiner_{REFINER_PATHS.index(path)}.npy", out)
    return {"seconds": med, "times": times, "load_s": load_s, "backend": getattr(runner, "backend", "onnx")
            if path != "bare ORT session" else "onnx", "peak_rss_mb": _peak_mb()}


def child_startup(path: str, args: dict) -> dict:
    """One image the way ``dissam predict`` does it, in a fresh process, with timers per phase."""
    t_start = time.perf_counter()
    import numpy as np
    import torch

    from dissam.predictor import DisSamPredictor

    torch.set_num_threads(args["threads"])
    phases = {"import": time.perf_counter() - t_start}
    t = time.perf_counter()
    p = DisSamPredictor.from_pretrained(sam=args["sam"], refiner=args["refiner"], device="cpu")
    _ = p.refiner_runner  # the refiner's session (or module layout) is part of loading
    phases["load"] = time.perf_counter() - t
    img = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    box = np.array([[100.0, 80.0, 540.0, 420.0]])
    t = time.perf_counter()
    p.set_image(img)
    p.sam_stage.set_image(img)
    p._sam_ready = True
    phases["SAM encoder"] = time.perf_counter() - t
    t = time.perf_counter()
    coarse = p.coarse_masks(box)
    phases["SAM box decoder"] = time.perf_counter() - t
    t = time.perf_counter()
    soft = p.refine(coarse, box)
    phases["refiner (incl. its input pipeline)"] = time.perf_counter() - t
    assert soft.shape[-2:] == img.shape[:2]
    networks = phases["SAM encoder"] + phases["SAM box decoder"] + phases["refiner (incl. its input pipeline)"]
    total = time.perf_counter() - t_start
    return {"phases_s": phases, "networks_s": networks, "total_s": total,
            "backend": {"refiner": p.backend, "sam encoder": getattr(p.sam_stage.encoder_runner, "backend", "torch")},
            "sam_model_built": p.sam_stage._model is not None, "peak_rss_mb": _peak_mb()}


def run_child(group: str, path: str, args: dict, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps({"group": group, "path": path, **args})]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                "wall_s": wall}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


# -------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", default="refiner,startup")
    ap.add_argument("--size", type=int, default=1024, help="refiner input size (1024)")
    ap.add_argument("--sam-size", default="vit_l", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (refiner 64², compact; tiny SAM)")
    ap.add_argument("--out", default=None, help="results file (default benchmarks/results/cpu_default.json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        fn = {"refiner": child_refiner, "startup": child_startup}[spec["group"]]
        print(json.dumps(fn(spec["path"], spec), default=float))
        return
    if args.smoke:
        args.size, args.sam_size, args.repeats = 64, "tiny", 1
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from results_io import markdown_table, save

    results: dict = {"settings": {"size": args.size, "sam_size": args.sam_size, "threads": args.threads,
                                  "repeats": args.repeats, "smoke": args.smoke}}
    tables: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="dissam-cpu-default-") as tmp:
        env = {"DISSAM_CACHE": str(Path(tmp) / "cache")}  # nothing is reused from before this run
        os.environ.pop("DISSAM_BACKEND", None)
        weights = write_weights(Path(tmp), args.size, args.sam_size, "dis-sam-compact" if args.smoke else "dis-sam")
        common = {"threads": args.threads, "repeats": args.repeats, "size": args.size, "tmp": tmp, **weights}
        if "startup" in groups:
            first = run_child("startup", "default, first run (exports)", common, env)
            rows, res = [], {"first run (exports)": first}
            for label, extra in (("default (ORT fp32, cached graphs)", {}),
                                 ("DISSAM_BACKEND=torch", {"DISSAM_BACKEND": "torch"})):
                res[label] = run_child("startup", label, common, {**env, **extra})
            for label, r in res.items():
                if "error" in r:
                    rows.append([label, "error: " + r["error"][:80], "", "", "", "", "", ""])
                    continue
                ph = r["phases_s"]
                rows.append([label, f"{ph['import']:.2f}", f"{ph['load']:.2f}", f"{ph['import'] + ph['load']:.2f}",
                             f"{r['networks_s']:.2f}", f"{r['total_s']:.2f}", f"{r['total_s'] / r['networks_s']:.2f}×",
                             f"{r['peak_rss_mb']:.0f}"])
            results["startup"] = res
            tables["startup"] = markdown_table(
                ["process", "import s", "load s", "import + load s", "networks s", "process s",
                 "process / networks", "peak RSS MB"], rows)
        if "refiner" in groups:
            # a copy of the refiner file: its graph is cached beside it, so this group's first process exports
            folder = Path(tmp) / "refiner-group"
            folder.mkdir()
            common["refiner"] = str(shutil.copy(weights["refiner"], folder / "refiner.safetensors"))
            res = {"export (first process)": run_child("refiner", REFINER_PATHS[1], {**common, "repeats": 0}, env)}
            for path in REFINER_PATHS:
                res[path] = run_child("refiner", path, common, env)
            import numpy as np

            ref_out = Path(tmp) / "refiner_0.npy"
            base = res[REFINER_PATHS[0]].get("seconds")
            rows = []
            for i, path in enumerate(REFINER_PATHS):
                r = res[path]
                if "error" in r:
                    rows.append([path, "error: " + r["error"][:80], "", "", ""])
                    continue
                out = Path(tmp) / f"refiner_{i}.npy"
                diff = float(np.abs(np.load(out) - np.load(ref_out)).max()) if ref_out.is_file() else float("nan")
                r["max_abs_diff_vs_torch"] = diff
                rows.append([path, f"{r['seconds']:.3f}", f"{base / r['seconds']:.2f}×" if base else "",
                             f"{r['peak_rss_mb']:.0f}", f"{diff:.1e}"])
            results["refiner"] = res
            tables["refiner"] = markdown_table(
                ["refiner path", "s / call", "speed-up vs torch", "peak RSS MB", "max abs diff vs torch"], rows)
    save("cpu_default", results, tables,
         notes="each path in its own process, side by side in one run; the 2 cores are shared with other "
               "engineers' jobs (see load_average_at_start)", out=args.out)


if __name__ == "__main__":
    main()
