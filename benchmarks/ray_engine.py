"""The Ray engine against the local engine, side by side in one run, on the same images.

Generates IMAGES photo-sized images (640x480, one or two boxes each) and runs ``dissam predict`` on them
as separate processes, alternating the configurations for ROUNDS rounds (the fastest round of each
is kept: this machine is shared):

* ``local, 1 thread``: the local engine with one torch thread (``OMP_NUM_THREADS=1``), its reader and
  writer threads;
* ``ray, 1 actor x 1 CPU``: the Ray engine with its defaults (one actor, one CPU, one torch thread);
* ``ray, 2 actors x 1 CPU``: two actors, one per core;
* ``local, 2 threads``: the local engine with its default threads (two here);
* ``ray, 1 actor x 2 CPUs``: one actor with two CPUs (two torch threads), reading tasks with 0 CPUs.

Each Ray run is compared with the local run of the same torch threads per model (time, and whether it
wrote the same bytes): float results depend on the thread count, not on the engine.

``--cpu-stages-only`` instead times the CPU work around the networks for one image at 640x480 and at
12 MP (decode, PNG encoding, cut-out), one thread: the figures for sizing a cluster's CPUs per GPU.

Each run starts its own local Ray (``ray.init`` in the process), its workers at niceness 0 like the
local engine (``RAY_worker_niceness=0``; Ray's default is 15). Reported per run: the wall time of
the whole process, the time of the job itself (Ray: from the image list to the last row, after
connecting; the local engine: the whole process minus its Python start-up), the peak resident memory of
the process tree (the driver, Ray's services and its workers; sampled every 0.1 s with psutil), the
per-stage seconds per image that the Ray engine reports, and whether every run wrote the same bytes
as the local engine.

    PYTHONPATH=src python benchmarks/ray_engine.py --images 24 --rounds 2 --out /tmp/ray_bench

Writes benchmarks/results/ray_engine.json (``--json``: elsewhere) with the tables ``engines`` and
``cpu_stages`` (the CPU stage costs are measured after the engines); ``--cpu-stages-only`` writes
benchmarks/results/ray_engine_cpu_stages.json with ``cpu_stages`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from results_io import markdown_table, save

CONFIGS = {  # name -> (extra flags, extra environment)
    "local, 1 thread": ([], {"OMP_NUM_THREADS": "1"}),
    "ray, 1 actor x 1 CPU": (["--engine", "ray", "--ray-actors", "1"], {}),
    "ray, 2 actors x 1 CPU": (["--engine", "ray", "--ray-actors", "2"], {}),
    "local, 2 threads": ([], {}),
    "ray, 1 actor x 2 CPUs": (["--engine", "ray", "--ray-actors", "1", "--ray-cpus-per-actor", "2",
                               "--ray-read-cpus", "0"], {}),
}
BASE = {"local, 1 thread": "local, 1 thread", "ray, 1 actor x 1 CPU": "local, 1 thread",
        "ray, 2 actors x 1 CPU": "local, 1 thread", "local, 2 threads": "local, 2 threads",
        "ray, 1 actor x 2 CPUs": "local, 2 threads"}
"""Each run is compared (time and bytes) with the local run of the same torch threads per model:
float results depend on the thread count, not on the engine."""
LABELS = {"local, 1 thread": "local, 1 thread (`OMP_NUM_THREADS=1`)",
          "ray, 1 actor x 1 CPU": "ray, 1 actor × 1 CPU (the defaults)",
          "ray, 2 actors x 1 CPU": "ray, 2 actors × 1 CPU (one per core)",
          "local, 2 threads": "local, 2 threads (its default here)",
          "ray, 1 actor x 2 CPUs": "ray, 1 actor × 2 CPUs, reading with 0 CPUs"}
STAGE_LABELS = {"decode JPEG": "decode a JPEG (reading task)",
                "encode mask PNG": "encode the mask PNG (per box, actor)",
                "encode soft PNG": "encode the 8-bit soft map PNG (`--soft`, per box, actor)",
                "cut-out (fg estimation) + PNG": "cut-out with foreground estimation + PNG (`--rgba`, per box, actor)"}


def make_images(folder: Path, n: int) -> Path:
    """``n`` 640x480 images (a textured object on a textured ground) and their prompts file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    prompts = {}
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        ground = (rng.random((480, 640, 1)) * 60 + np.array([40, 60, 80])).astype(np.float32)
        cx, cy, rx, ry = 320 + rng.integers(-80, 80), 240 + rng.integers(-60, 60), 140 + i % 40, 110 + i % 30
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        obj = np.array([200, 120 + 3 * i % 100, 60], np.float32) + rng.normal(0, 12, (480, 640, 3))
        im = np.where(inside[..., None], obj, ground).clip(0, 255).astype(np.uint8)
        Image.fromarray(im).save(folder / f"img{i:02d}.jpg", quality=92)
        box = [int(cx - rx - 8), int(cy - ry - 8), int(cx + rx + 8), int(cy + ry + 8)]
        prompts[f"img{i:02d}"] = [box] + ([[box[0] + 30, box[1] + 20, box[2] - 30, box[3] - 20]] if i % 2 else [])
    (folder.parent / "prompts.json").write_text(json.dumps(prompts))
    return folder.parent / "prompts.json"


def run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """``(wall seconds, peak RSS of the process tree in MiB, stdout)``."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    out_chunks: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    reader.join()
    text = "".join(out_chunks)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return wall, peak / 2**20, text


def cpu_stage_costs(repeats: int = 3) -> dict[str, float]:
    """Seconds (best of ``repeats``, one thread) of the CPU work around the networks for one image and
    one box, at 640x480 and at 12 MP (4000x3000): decoding a JPEG, encoding the mask and the 8-bit soft
    map as PNG (what every box writes), and the cut-out with foreground estimation (``--rgba``)."""
    import io

    import cv2
    from PIL import Image

    from dissam.io import decode_image_bytes, encode_png
    from dissam.visualize import cutout

    cv2.setNumThreads(1)
    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for label, (h, w) in (("640x480", (480, 640)), ("12MP", (3000, 4000))):
        base = cv2.resize(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        buf = io.BytesIO()
        Image.fromarray(base).save(buf, format="JPEG", quality=92)
        data = buf.getvalue()
        yy, xx = np.mgrid[0:h, 0:w]
        soft = np.clip(1.5 - np.hypot((yy - h / 2) / (h / 3), (xx - w / 2) / (w / 3)), 0, 1).astype(np.float32)
        steps = {
            "decode JPEG": lambda d=data: decode_image_bytes(d),
            "encode mask PNG": lambda s=soft: encode_png((s > 0.5).astype(np.uint8) * 255),
            "encode soft PNG": lambda s=soft: encode_png((s * 255).round().astype(np.uint8)),
            "cut-out (fg estimation) + PNG": lambda b=base, s=soft: encode_png(cutout(b, s, estimate_fg=True)),
        }
        for name, fn in steps.items():
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            out[f"{name} {label}"] = best
    return out


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def cpu_stage_table(costs: dict[str, float]) -> str:
    def ms(sec: float) -> str:
        return f"{sec:.1f} s" if sec >= 10 else f"{sec * 1000:.0f} ms" if sec >= 0.1 else f"{sec * 1000:.1f} ms"

    rows = [[label, ms(costs[f"{key} 640x480"]), ms(costs[f"{key} 12MP"])] for key, label in STAGE_LABELS.items()]
    return markdown_table(["step", "640×480", "12 MP (4000×3000)"], rows)


SHORT = {"decode JPEG": "decode", "encode mask PNG": "mask_png", "encode soft PNG": "soft_png",
         "cut-out (fg estimation) + PNG": "cutout"}


def cpu_stage_summary(costs: dict[str, float]) -> dict:
    """The costs, also under plain keys (``decode_12mp``, ``cutout_640x480``...) that the docs can name."""
    by_key = {f"{SHORT[name]}_{'12mp' if size == '12MP' else size}": sec
              for name in SHORT for size in ("640x480", "12MP") for sec in [costs[f"{name} {size}"]]}
    return {"seconds": costs, "by_key": by_key,
            "decode_mask_soft_12mp_s": by_key["decode_12mp"] + by_key["mask_png_12mp"] + by_key["soft_png_12mp"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="/tmp/dissam_ray_bench")
    ap.add_argument("--json", default=None, help="the results file (default benchmarks/results/ray_engine.json)")
    ap.add_argument("--cpu-stages-only", action="store_true", help="only the CPU stage costs (cpu_stage_costs)")
    args = ap.parse_args()
    if args.cpu_stages_only:
        costs = cpu_stage_costs()
        save("ray_engine_cpu_stages", cpu_stage_summary(costs), {"cpu_stages": cpu_stage_table(costs)}, out=args.json,
             notes="one thread, best of 3")
        return
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    prompts = make_images(root / "images", args.images)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    # Ray starts its workers at niceness 15 (the driver stays responsive); on this shared machine that
    # would hand the cores to other users' processes, so the comparison runs them at 0 like the local engine
    env["RAY_worker_niceness"] = "0"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dissam.predictor"], env=env, check=True)
    python_start = time.perf_counter() - t0  # interpreter + torch + dissam imports, before any work
    results: dict[str, dict] = {}
    every_run: list[dict] = []
    for r in range(args.rounds):
        for name, (extra, extra_env) in CONFIGS.items():
            out = root / f"out_{re.sub('[^a-z0-9]+', '_', name)}_{r}"
            cmd = [sys.executable, "-m", "dissam", "predict", str(root / "images"), "--prompts", str(prompts),
                   "-o", str(out), "--soft", "--device", "cpu", "--no-progress", *extra]
            wall, peak, text = run(cmd, {**env, **extra_env})
            rec = {"wall_s": wall, "peak_rss_mib": peak, "round": r}
            m = re.search(r"in ([\d.]+) s \(([\d.]+) images/s; ([\d.]+) s to connect", text)
            if m:
                rec.update(job_s=float(m.group(1)), startup_s=float(m.group(3)))
                rec["stages"] = re.search(r"summed over workers: (.*)", text).group(1)
            else:
                rec["job_s"] = wall - python_start
            rec["out"] = str(out)
            rec["same_bytes_as_local"] = outputs(out) == outputs(Path(results.get(BASE[name], rec)["out"]))
            print(f"round {r} {name}: {json.dumps(rec)}", flush=True)
            every_run.append({"name": name, **rec})
            if name not in results or rec["job_s"] < results[name]["job_s"]:
                results[name] = rec
    boxes = sum(len(v) for v in json.loads(prompts.read_text()).values())
    rows = []
    for name, rec in results.items():
        base = results[BASE[name]]
        rec["job_vs_local"] = rec["job_s"] / base["job_s"]
        rec["wall_vs_local"] = rec["wall_s"] / base["wall_s"]
        rows.append([LABELS[name], f"{rec['job_s']:.1f}", f"{rec['job_vs_local']:.2f}×", f"{rec['wall_s']:.1f}",
                     f"{rec['wall_vs_local']:.2f}×", f"{rec['peak_rss_mib']:,.0f}",
                     "(reference)" if BASE[name] == name else "yes" if rec["same_bytes_as_local"] else "**no**"])
    startups = [r["startup_s"] for r in every_run if "startup_s" in r]
    costs = cpu_stage_costs()
    summary = {
        "images": args.images, "boxes": boxes, "rounds": args.rounds, "python_start_s": python_start,
        "results": results, "every_run": every_run,
        "ray_startup_s": {"min": min(startups), "max": max(startups)} if startups else None,
        # per image, summed over the workers, as the Ray engine with its defaults reports them
        "stages_ray_defaults": results["ray, 1 actor x 1 CPU"].get("stages"),
        "ray_services_rss_mib": results["ray, 1 actor x 1 CPU"]["peak_rss_mib"] - results["local, 1 thread"]["peak_rss_mib"],
        "second_actor_rss_mib": results["ray, 2 actors x 1 CPU"]["peak_rss_mib"] - results["ray, 1 actor x 1 CPU"]["peak_rss_mib"],
        "cpu_stages": cpu_stage_summary(costs),
    }
    header = ["run", "job (s)", "vs local", "wall incl. start-up (s)", "vs local", "peak RSS, tree (MiB)",
              "same bytes as local"]
    save("ray_engine", summary, {"engines": markdown_table(header, rows, "lrrrrrl"), "cpu_stages": cpu_stage_table(costs)},
         out=args.json, notes=f"{args.images} images, 640x480, {boxes} boxes; python start-up {python_start:.1f} s; "
                              f"fastest of {args.rounds} round(s); CPU stage costs: one thread, best of 3")


if __name__ == "__main__":
    main()
