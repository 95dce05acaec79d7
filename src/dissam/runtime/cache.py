"""Where exported graphs are kept, so that a second run (or another process) does not export again.

An exported file is named by what it was made from: ``<stem>.<kind>.<key>.onnx``, where ``key`` is the
first 16 hex digits of a SHA-256 over

* the **weights file's content** (:func:`source_digest`): a SHA-256 of the file (of a folder's weight
  files and ``config.json``) computed once and remembered beside the cache in
  ``<stem>.digest.json`` with the file's size and modification time, so that later runs hash
  nothing; a replaced or edited file (another size or time) is hashed again. Weights changed in
  memory after loading, and weights that came from no file, are keyed by their tensors instead
  (:func:`weights_hash`, every tensor's key, dtype, shape and bytes);
* the kind of graph, the graph layout's version, the opset and the export options.

The folder is ``.dissam-onnx/`` next to the weights file (or inside the weights folder) when that
can be written, else ``$DISSAM_CACHE/onnx`` (default ``~/.cache/dissam/onnx``); weights inside the
installed package (the built-in model, in ``site-packages``) always use the latter. :func:`export_lock` serialises the export
of one graph across processes (a lock file beside it), so that two runs started together export once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from filelock import FileLock

from dissam.runtime.onnx_export import OPSET
from dissam.utils import atomic_write_bytes

__all__ = ["weights_hash", "cache_dir_for", "cached_path", "source_digest", "export_lock", "WEIGHT_SUFFIXES"]

CACHE_SUBDIR = ".dissam-onnx"
_PACKAGE = Path(__file__).resolve().parents[1]  # the installed dissam package: never written into
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
"""Files of a weights folder that the folder's digest covers (with ``config.json``)."""


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
        if base is not None and not base.resolve().is_relative_to(_PACKAGE) and _writable(base / CACHE_SUBDIR):
            return base / CACHE_SUBDIR
    folder = user_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(f for f in path.iterdir() if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.name == "config.json"))


def _sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_digest(source: str | os.PathLike | None) -> str | None:
    """SHA-256 of the weights at ``source`` (a file; for a folder, of its weight files and
    ``config.json`` by name), or ``None`` when ``source`` is no local path.

    Computed once: the result is kept in ``<cache folder>/<stem>.digest.json`` with each file's size
    and modification time (nanoseconds), and reused while they are unchanged."""
    if source is None:
        return None
    path = Path(os.fspath(source)).expanduser()
    if not path.exists():
        return None
    files = _weight_files(path)
    if not files:
        return None
    stats = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    record = cache_dir_for(path) / f"{path.stem if path.is_file() else path.name}.digest.json"
    try:
        known = json.loads(record.read_text())
        if known.get("files") == stats and known.get("path") == str(path.resolve()):
            return str(known["sha256"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}|{_sha256_file(f)}|".encode())
    digest = h.hexdigest()
    try:
        atomic_write_bytes(record, json.dumps({"path": str(path.resolve()), "files": stats, "sha256": digest}).encode())
    except OSError:
        pass  # a read-only cache: the digest is recomputed next time, the graphs still match
    return digest


def cached_path(module: torch.nn.Module | None, source: str | os.PathLike | None, kind: str, *extra: object,
                pristine: bool = True) -> Path:
    """Path of the cached graph of ``kind`` (``"refiner"``, ``"sam-encoder"``, ...); it may not exist yet.

    ``source``: where the weights were read from; with ``pristine`` (the weights are still the
    file's) the key is the file's digest (:func:`source_digest`), else ``module``'s tensors
    (:func:`weights_hash`). ``extra``: what else decides the graph (input size, channels, layout
    version)."""
    digest = source_digest(source) if pristine else None
    if digest is not None:
        h = hashlib.sha256(f"{digest}|{kind}|{OPSET}|{'|'.join(map(str, extra))}".encode()).hexdigest()[:16]
    elif module is not None:
        h = weights_hash(module, kind, OPSET, *extra)
    else:
        raise ValueError(f"no weights file and no module to key the {kind} graph by")
    stem = Path(os.fspath(source)).stem if source is not None and Path(os.fspath(source)).exists() else "model"
    return cache_dir_for(source) / f"{stem}.{kind}.{h}.onnx"


def export_lock(path: str | os.PathLike, timeout: float = -1) -> FileLock:
    """A lock (``<graph>.lock`` beside it) held while a graph is exported or its optimised copy
    written: processes that start together export once; the others wait, then read the file."""
    return FileLock(f"{os.fspath(path)}.lock", timeout=timeout)
