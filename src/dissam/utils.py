"""Small helpers shared by several modules."""

from __future__ import annotations

import os
import platform
import re
import socket
import stat
import time
from contextlib import contextmanager
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


TEMP_MARK = ".dissam-tmp-"
"""Temporary files of atomic writes are named ``.NAME.dissam-tmp-HOST-PID`` (next to ``NAME``)."""

STALE_TEMP_AGE_S = 3600.0
"""A temporary file older than this is stale whoever wrote it (one file is written in seconds)."""

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.dissam-tmp-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)$")
# earlier versions wrote ``.NAME.tmpPID``: recognised only for the files they wrote
_LEGACY_TEMP_RE = re.compile(r"^\.(?P<name>.+\.(?:png|json))\.tmp(?P<pid>\d+)$")


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname() or "host")[:64] or "host"


def temp_path_for(path: str | os.PathLike) -> Path:
    """Where an atomic write of ``path`` puts its data first: ``.NAME.dissam-tmp-HOST-PID`` in the same
    folder (hidden, and recognisable by :func:`remove_stale_temp_files` after a crash)."""
    p = Path(path)
    return p.with_name(f".{p.name}{TEMP_MARK}{_host_tag()}-{os.getpid()}")


@contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; when the block ends normally the temporary file is
    renamed to ``path`` (atomic on POSIX), otherwise (an error, Ctrl+C, SIGTERM) it is removed. A
    reader never sees a half-written ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def remove_stale_temp_files(folder: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove the temporary files that killed runs left in ``folder`` (not recursive); returns them.

    A file named by :func:`temp_path_for` is stale when it was written on this machine by a process
    that no longer exists, or when it is older than ``max_age_s`` (whoever wrote it: another machine
    sharing the folder, or a reused process id). A temporary file of a run still writing in the
    same folder (another rank, another command) is left alone. ``.NAME.tmpPID`` files of earlier
    versions (``NAME`` a ``.png`` or ``.json``) are removed on the same rule.
    """
    f = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(f.iterdir())
    except OSError:
        return removed
    host, now = _host_tag(), time.time()
    for p in entries:
        m = _TEMP_RE.match(p.name)
        legacy = None if m else _LEGACY_TEMP_RE.match(p.name)
        if not (m or legacy):
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        same_host = legacy is not None or m.group("host") == host
        pid = int((m or legacy).group("pid"))
        old = now - st.st_mtime > max_age_s
        if old or (same_host and pid != os.getpid() and not pid_alive(pid)):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


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
