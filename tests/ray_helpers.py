"""Shared pieces of the Ray engine tests: one local 2-CPU Ray for a whole test module, and small jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SRC = str(Path(__file__).resolve().parents[1] / "src")


def start_ray():
    """A local Ray on 2 CPUs (this machine's), workers importing this checkout's dissam."""
    import os

    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    return ray


def make_images(folder: Path, n: int, seed: int = 0) -> dict:
    """``n`` small RGB images ``im<i>.png`` of a bright object on a dark ground, and their prompts
    (one or two boxes each)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for i in range(n):
        h, w = 72 + 8 * (i % 3), 96 - 4 * (i % 4)
        im = np.full((h, w, 3), 30, np.uint8)
        im[12:h - 12, 18:w - 18] = [200, 60 + 20 * i % 180, 90]
        im = np.clip(im + rng.integers(0, 25, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(folder / f"im{i}.png")
        prompts[f"im{i}"] = [[6, 6, w - 10, h - 8]] + ([[14, 10, w - 14, h - 6]] if i % 2 else [])
    return prompts


def write_prompts(path: Path, prompts: dict) -> Path:
    path.write_text(json.dumps(prompts))
    return path


def files(folder: Path) -> dict[str, bytes]:
    """Every visible output file of a folder (name -> bytes)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def leftovers(folder: Path) -> list[str]:
    """Temporary files left behind (there must be none)."""
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name]
