"""ONNX Runtime sessions that start fast and stay within the memory of the PyTorch path.

* **Optimised once.** ONNX Runtime rewrites a graph when a session starts (constant folding, fused
  operators, the blocked ``NCHWc`` layout of its CPU convolutions); for SAM ViT-L that is seconds. The
  first CPU session of a graph saves the rewritten graph beside it,
  ``<name>.opt-<tag>.onnx`` with its weights in ``<name>.opt-<tag>.onnx.data``, and later sessions load
  that file with no rewriting; its weights are memory-mapped. ``tag`` names the onnxruntime version and
  this CPU's instruction sets, because the rewritten graph is specific to both (ONNX Runtime says so).
  The saved file is written in a temporary folder and moved into place under the graph's lock: an
  interrupted run leaves nothing half-written.
* **No memory arena.** ONNX Runtime's CPU arena keeps the largest buffers a run ever needed and grows
  across calls (SAM ViT-L's encoder: 5.5 GB after one call, 9.5 GB after two); without it every buffer
  is returned when freed, like PyTorch's, and the time per call is the same within noise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from dissam.runtime.cache import export_lock

__all__ = ["ort_session", "optimized_path", "hardware_tag"]

log = logging.getLogger(__name__)

_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_bf16",
              "amx_int8", "avx_vnni", "asimd", "sve")


def hardware_tag() -> str:
    """onnxruntime's version and a short hash of this CPU's instruction sets (what a rewritten graph
    may depend on)."""
    import onnxruntime as ort

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    have = ",".join(f for f in _CPU_FLAGS if f in flags) or os.uname().machine
    return f"ort{ort.__version__}-{hashlib.sha256(have.encode()).hexdigest()[:8]}"


def optimized_path(path: str | os.PathLike) -> Path:
    """Where the rewritten copy of the graph at ``path`` is kept (it may not exist yet)."""
    p = Path(path)
    return p.with_name(f"{p.stem}.opt-{hardware_tag()}.onnx")


def _options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.enable_cpu_mem_arena = False  # see the module docstring: the arena grows across calls
    return opts


def _optimized_session(path: Path, threads: int | None):
    """A CPU session of ``path`` through its rewritten copy (made now if missing)."""
    import onnxruntime as ort

    opt = optimized_path(path)
    if not opt.is_file():
        with export_lock(opt):
            if not opt.is_file():
                return _optimize(path, opt, threads)
    opts = _options(threads)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # rewritten already
    return ort.InferenceSession(str(opt), sess_options=opts, providers=["CPUExecutionProvider"])


def _optimize(path: Path, opt: Path, threads: int | None):
    """Start a session of ``path`` with every optimisation and save the rewritten graph as ``opt``
    (graph and weights in a temporary folder first, the ``.onnx`` file moved into place last)."""
    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp(prefix=f".{opt.stem}.", dir=opt.parent))
    try:
        opts = _options(threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(tmp / opt.name)
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{opt.name}.data")
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        opts.log_severity_level = 3  # its notice that the rewritten graph is hardware-specific: the tag says so
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == opt.name):  # the .onnx file last
            os.replace(f, opt.parent / f.name)
        log.info("saved ONNX Runtime's optimised graph: %s", opt)
        return session
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ort_session(path: str | Path, device: torch.device | None = None, threads: int | None = None,
                cache_optimized: bool = True):
    """An ONNX Runtime session for ``path``: CUDA execution provider on a CUDA device when onnxruntime
    has it, else the CPU with ``threads`` (default: torch's thread count) intra-op threads, started
    from the graph's optimised copy (``cache_optimized``; made on first use)."""
    import onnxruntime as ort

    if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        opts = _options(threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    path = Path(path)
    if cache_optimized and os.access(path.parent, os.W_OK):
        return _optimized_session(path, threads)
    opts = _options(threads)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
