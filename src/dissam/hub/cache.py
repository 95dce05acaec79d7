"""Where named models live on disk, and whether the network may be used.

* Cache root: ``$DISSAM_HOME``, else ``$XDG_CACHE_HOME/dissam``, else ``~/.cache/dissam``. Files
  fetched by URL go to ``<root>/models/<file name>``; Hugging Face repositories stay in the Hugging
  Face cache (``$HF_HOME``), which ``transformers`` and ``hf download`` share.
* Offline: ``DISSAM_OFFLINE`` or ``HF_HUB_OFFLINE`` set to ``1``/``true``/``yes``/``on``. Read on every
  call (not at import), so setting it in a running process takes effect.
* ``DISSAM_DOWNLOAD_TIMEOUT`` (seconds, default 10): the connect timeout, and the longest a transfer
  may stall before it is resumed.
* The Hugging Face Hub is tried only when it can be reached (:func:`hub_reachable`, one connection
  attempt per process): ``huggingface_hub`` retries a host it cannot resolve for about 25 s before it
  gives up, so a machine without network reads the local cache at once instead.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["cache_root", "models_dir", "is_offline", "download_timeout", "DEFAULT_TIMEOUT", "hub_reachable",
           "hub_local_only"]

DEFAULT_TIMEOUT = 10.0
_TRUE = {"1", "true", "yes", "on"}


def cache_root() -> Path:
    """The dissam cache folder (not created here)."""
    if os.environ.get("DISSAM_HOME"):
        return Path(os.environ["DISSAM_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dissam"


def models_dir() -> Path:
    """Where downloaded (or hand-placed) model files are kept: ``<cache root>/models``."""
    return cache_root() / "models"


def is_offline() -> bool:
    """True when ``DISSAM_OFFLINE`` or ``HF_HUB_OFFLINE`` asks for no network at all."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("DISSAM_OFFLINE", "HF_HUB_OFFLINE"))


def download_timeout() -> float:
    """Connect / stall timeout in seconds (``DISSAM_DOWNLOAD_TIMEOUT``, default 10)."""
    raw = os.environ.get("DISSAM_DOWNLOAD_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face Hub (``HF_ENDPOINT``, default ``https://huggingface.co``) accepts a TCP
    connection within :func:`download_timeout` (checked once per process)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=download_timeout()):
            return True
    except OSError:
        return False


def hub_local_only() -> bool:
    """Read only the local Hugging Face cache: offline mode is on, or the hub cannot be reached."""
    return is_offline() or not hub_reachable()
