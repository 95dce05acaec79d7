"""Where a benchmark script's figures go: ``benchmarks/results/NAME.json``, with how they were made.

Every script the docs quote calls :func:`save` once at the end. The file holds the exact command, the
date, the machine (CPU model, cores, memory, load average at the start, GPU if any), the commit (and
whether the tree had uncommitted changes), library versions, the raw ``results`` and the markdown
``tables`` the docs show. ``scripts/render_docs.py`` copies the tables into the docs between
``<!-- figures: benchmarks/results/NAME.json#TABLE -->`` and ``<!-- /figures -->``; tests/test_docs.py
fails when a quoted figure differs from its file.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
_LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine() -> dict:
    """CPU, cores, memory and GPU of this machine, and its load when the script started."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
            "load_average_at_start": None if _LOAD_AT_START is None else round(_LOAD_AT_START, 2)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(mem[mem.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def commit() -> dict:
    """The commit the figures were made at, and whether the tree differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": head or None, "dirty": dirty}


def save(name: str, results: dict, tables: dict[str, str], notes: str = "", out: str | os.PathLike | None = None
         ) -> Path:
    """Write ``benchmarks/results/NAME.json`` (or ``out``) atomically and print the tables."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    argv = [sys.argv[0].replace(str(ROOT) + os.sep, ""), *sys.argv[1:]]
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "PYTHONPATH") if k in os.environ)
    doc = {
        "script": argv[0],
        "command": (env + " " if env else "") + "python " + " ".join(shlex.quote(a) for a in argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        **commit(),
        "notes": notes,
        "results": results,
        "tables": {k: v.strip() + "\n" for k, v in tables.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    os.replace(tmp, path)
    for table in doc["tables"].values():
        print(table)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def markdown_table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A markdown table (``align``: one of ``l``/``r`` per column; default: first left, others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
