"""Named models: the registry, verified downloads into a cache, and Hugging Face Hub folders.

* :mod:`dissam.hub.registry`: every model dissam knows by name (sources, sizes, checksums, checks),
  presets (``dis-sam`` = SAM ViT-L + the DIS-SAM refiner) and the user's overrides (mirrors).
* :mod:`dissam.hub.cache`: the cache folder (``$DISSAM_HOME``, ``$XDG_CACHE_HOME/dissam``,
  ``~/.cache/dissam``) and the offline switch (``DISSAM_OFFLINE``, ``HF_HUB_OFFLINE``).
* :mod:`dissam.hub.download`: one file, atomically, verified, resumable, locked across processes.
* :mod:`dissam.hub.verify`: size, SHA-256, exact key set and shapes.
* :mod:`dissam.hub.store`: from a ``--sam`` / ``--refiner`` value to a local path.
* :mod:`dissam.hub.sources`: the one rule that tells a hub id from a local path, and the offline errors.
* :mod:`dissam.hub.folder`: refiners as Hub folders (``HubRefiner``) and the ``.pth`` <-> folder conversion.
* :mod:`dissam.hub.loading`: ``load_refiner``, any refiner source to a ready refiner.

Importing this package is cheap (no torch, no huggingface_hub); ``folder`` and ``loading`` (torch)
are imported by name where needed.
"""

from __future__ import annotations

from dissam.hub.cache import cache_root, is_offline, models_dir
from dissam.hub.registry import (
    PRESETS,
    REGISTRY,
    ModelEntry,
    Preset,
    entries,
    find_entry,
    get_entry,
    get_preset,
    preset_sources,
)
from dissam.hub.store import (
    cached_path,
    fetch,
    resolve_refiner_source,
    resolve_sam_source,
    resolve_weights_file,
)

__all__ = [
    "ModelEntry",
    "REGISTRY",
    "PRESETS",
    "entries",
    "find_entry",
    "get_entry",
    "preset_sources",
    "get_preset",
    "Preset",
    "cache_root",
    "models_dir",
    "is_offline",
    "fetch",
    "cached_path",
    "resolve_sam_source",
    "resolve_refiner_source",
    "resolve_weights_file",
]
