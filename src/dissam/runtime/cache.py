"""Where exported graphs are kept, so that a second run does not export again.

An exported file is named by what it was made from: ``<stem>.<kind>.<hash>.onnx`` where ``hash`` is
the first 16 hex digits of a SHA-256 over the model's weights (every tensor of its ``state_dict``, in
key order, with key, dtype and shape), the kind, the opset and the export options. Changed weights
give a new name; the same weights loaded from a ``.pth`` or from a Hugging Face folder give the same
one.

The folder is ``.dissam-onnx/`` next to the weights file (or inside the weights folder) when that
can be written, else ``$DISSAM_CACHE/onnx`` (default ``~/.cache/dissam/onnx``): the built-in
model lives in ``site-packages``, which is often read-only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from dissam.runtime.onnx_export import OPSET

__all__ = ["weights_hash", "cache_dir_for", "cached_path"]

CACHE_SUBDIR = ".dissam-onnx"


def weights_hash(module: torch.nn.Module, *extra: object) -> str:
    """16 hex digits of SHA-256 over ``module``'s state dict (keys, dtypes, shapes, bytes) and
    ``extra`` (the kind of graph, opset, options)."""
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for e in extra:
        h.update(f"|{e}".encode())
    return h.hexdigest()[:16]


def user_cache_dir() -> Path:
    root = os.environ.get("DISSAM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "dissam") / "onnx"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def cache_dir_for(source: str | os.PathLike | None) -> Path:
    """The folder for graphs exported from the weights at ``source`` (a file or folder path; anything
    else, e.g. ``"state dict"`` or a hub id, uses the user cache)."""
    if source is not None:
        p = Path(os.fspath(source)).expanduser()
        base = p if p.is_dir() else p.parent if p.is_file() else None
        if base is not None and _writable(base / CACHE_SUBDIR):
            return base / CACHE_SUBDIR
    folder = user_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached_path(module: torch.nn.Module, source: str | os.PathLike | None, kind: str, *extra: object) -> Path:
    """Path of the cached graph of ``kind`` (``"refiner"``, ``"sam-encoder"``, ...) for ``module``'s
    weights; it may not exist yet."""
    stem = Path(os.fspath(source)).stem if source is not None and Path(os.fspath(source)).exists() else "model"
    return cache_dir_for(source) / f"{stem}.{kind}.{weights_hash(module, kind, OPSET, *extra)}.onnx"
