"""Where named models live on disk, and whether the network may be used.

* Cache root: ``$DISSAM_HOME``, else ``$XDG_CACHE_HOME/dissam``, else ``~/.cache/dissam``. Files
  fetched by URL go to ``<root>/models/<file name>``; Hugging Face repositories stay in the Hugging
  Face cache (``$HF_HOME``), which ``transformers`` and ``hf download`` share.
* Offline: ``DISSAM_OFFLINE`` or ``HF_HUB_OFFLINE`` set to ``1``/``true``/``yes``/``on``. Read on every
  call (not at import), so setting it in a running process takes effect.
* ``DISSAM_DOWNLOAD_TIMEOUT`` (seconds, default 10): the connect timeout, and the longest a transfer
  may stall before it is resumed.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "models_dir", "is_offline", "download_timeout", "DEFAULT_TIMEOUT"]

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
