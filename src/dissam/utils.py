"""Small helpers shared by several modules."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from dissam.errors import DisSamError


def library_versions() -> dict[str, str]:
    """Versions of dissam and of the libraries that its numbers depend on (HCE moves with OpenCV)."""
    out = {"dissam": _version("dissam"), "python": platform.python_version()}
    for dist, key in [
        ("torch", "torch"),
        ("numpy", "numpy"),
        ("opencv-python-headless", "opencv"),
        ("scikit-image", "scikit-image"),
        ("pysodmetrics", "pysodmetrics"),
        ("transformers", "transformers"),
        ("pillow", "pillow"),
    ]:
        out[key] = _version(dist)
    if out["opencv"] == "not installed":
        try:
            import cv2

            out["opencv"] = cv2.__version__
        except ImportError:
            pass
    return out


def package_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"not installed"``."""
    return _version(dist)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def resolve_device(device: str | None = None):
    """``torch.device`` for ``device`` ('cpu', 'cuda', 'cuda:1', 'mps', or None = best available).

    Asking for CUDA on a machine without it raises a clear error instead of falling back silently.
    """
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DisSamError(
            f"device {device!r} was requested but CUDA is not available on this machine; use --device cpu"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DisSamError(f"device {device!r} was requested but MPS is not available on this machine")
    return dev
