"""From a name (or hub id) to a local path: the one place ``--sam`` / ``--refiner`` values are resolved.

* :func:`resolve_sam_source` and :func:`resolve_refiner_source` take what a user typed and return
  what ``load_sam`` / ``load_refiner`` open: an existing path is returned unchanged (a path always
  wins over a name); a registry name becomes the cached file or folder (downloaded on first use, or
  explained when it has to be fetched by hand); a Hugging Face id of a refiner becomes its local
  snapshot folder. Anything else is returned unchanged, so the loaders keep their own messages.
* :func:`fetch` gets one registry entry into the cache; :func:`cached_path` says where it is without
  touching the network.

A model that is already cached never touches the network: files are found by name in
``<cache>/models``; Hugging Face repositories are looked up with ``local_files_only=True`` first.
"""

from __future__ import annotations

import os
from pathlib import Path

from dissam.errors import DisSamError, DownloadError, OfflineError, VerificationError
from dissam.hub.cache import download_timeout, hub_local_only, hub_reachable, is_offline, models_dir
from dissam.hub.download import download_url, manual_instructions
from dissam.hub.registry import ModelEntry, find_entry, get_entry
from dissam.hub.sources import exists, first_line, is_hub_id
from dissam.hub.verify import verify_file

__all__ = [
    "fetch",
    "cached_path",
    "local_path",
    "hf_snapshot",
    "resolve_sam_source",
    "resolve_refiner_source",
    "resolve_weights_file",
    "SAM_PATTERNS",
    "REFINER_PATTERNS",
]

# files a SAM repository needs for transformers' from_pretrained; refiner folders are ours
SAM_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json"]
SAM_PATTERNS_BIN = ["config.json", "pytorch_model.bin"]
REFINER_PATTERNS = ["config.json", "model.safetensors", "README.md"]
BUILTIN_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
"""The package's own weights folder (``builtin`` entries)."""


def local_path(entry: ModelEntry) -> Path:
    """Where a ``file`` / ``builtin`` entry lives (it may not exist yet)."""
    if entry.kind == "builtin":
        return BUILTIN_WEIGHTS / str(entry.filename)
    if entry.kind == "file":
        return models_dir() / str(entry.filename)
    raise DisSamError(f"{entry.name} is a Hugging Face repository ({entry.hub_id}); it has no single file path")


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file()
    )


def _hf_hint(repo_id: str) -> str:
    local = "models/" + repo_id.split("/")[-1]
    return (
        "To use it without network, download it once on a machine with internet and copy the folder:\n"
        f"  hf download {repo_id} --local-dir {local}   (then pass {local} instead of the id)\n"
        "or copy that machine's Hugging Face cache ($HF_HOME, ~/.cache/huggingface) to this one."
    )


def _snapshot(repo_id: str, patterns: list[str], local_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_only,
                          etag_timeout=download_timeout())
    )


def hf_snapshot(repo_id: str, patterns: list[str] | None = None, download: bool = True) -> Path:
    """The local folder of a Hugging Face repository (``config.json`` + weights), from the Hugging
    Face cache when it is there (no network), else downloaded (unless offline or ``download=False``).

    Raises:
        OfflineError: not cached and offline / unreachable / unknown repository (says what to do).
    """
    sets = [patterns] if patterns else [SAM_PATTERNS, SAM_PATTERNS_BIN]
    for pats in sets:  # cache first: a cached model never touches the network
        try:
            path = _snapshot(repo_id, pats, local_only=True)
        except Exception:  # LocalEntryNotFoundError and friends: simply not cached
            continue
        if _has_weights(path):
            return path
    if hub_local_only() or not download:
        why = ("offline mode is on (DISSAM_OFFLINE / HF_HUB_OFFLINE)" if is_offline() else "download=False"
               if hub_reachable() else "the Hugging Face Hub cannot be reached from this machine")
        raise OfflineError(f"{repo_id} is not in the Hugging Face cache and {why}.\n{_hf_hint(repo_id)}")
    last: Exception | None = None
    for pats in sets:
        try:
            path = _snapshot(repo_id, pats, local_only=False)
        except Exception as exc:  # offline, HTTP errors, unknown repo, gated repo...
            last = exc
            break
        if _has_weights(path):
            return path
    if last is not None:
        raise OfflineError(
            f"cannot download {repo_id} from the Hugging Face Hub ({first_line(last)}).\n"
            + _hf_hint(repo_id)
        ) from last
    raise DownloadError(f"{repo_id} has no config.json with model.safetensors or pytorch_model.bin")


def cached_path(entry: ModelEntry | str) -> Path | None:
    """The local path of a model if it is already there (never downloads, never uses the network)."""
    e = get_entry(entry) if isinstance(entry, str) else entry
    if e.kind == "hf":
        try:
            return hf_snapshot(str(e.hub_id), REFINER_PATTERNS if e.role == "refiner" else None, download=False)
        except (OfflineError, DownloadError):
            return None
    p = local_path(e)
    return p if p.is_file() else None


def fetch(entry: ModelEntry | str, *, download: bool = True, progress: bool = True) -> Path:
    """Local path of a registry model, downloading it into the cache on first use.

    ``file`` entries land in ``<cache>/models/<filename>`` through :func:`dissam.hub.download.download_url`
    (verified before the rename); ``hf`` entries in the Hugging Face cache; ``builtin`` entries are
    in the package.

    Raises:
        DownloadError: a manual entry that is not in place yet (with the instructions), or HTTP errors.
        OfflineError: not cached and the network is off or unreachable.
        VerificationError: a cached file of the wrong size, or a download that fails its checks.
    """
    e = get_entry(entry) if isinstance(entry, str) else entry
    if e.kind == "hf":
        return hf_snapshot(str(e.hub_id), REFINER_PATTERNS if e.role == "refiner" else None, download=download)
    dest = local_path(e)
    if dest.is_file():
        if e.size is not None and dest.stat().st_size != e.size:  # a stat, not a hash: loading stays fast
            raise VerificationError(
                f"{e.name}: {dest} has {dest.stat().st_size:,} bytes, expected {e.size:,}. Delete it and run "
                f"`dissam models download {e.name}` (or place the right file there)."
            )
        return dest
    if e.kind == "builtin":
        raise DisSamError(f"the built-in model {e.name} is not installed with this copy of dissam ({dest})")
    if not e.url:
        raise DownloadError(
            f"{e.name} ({e.description}) cannot be downloaded by a program: it is published at "
            f"{e.manual}, which needs a browser.\n"
            + manual_instructions(dest, page=e.manual, notes=e.notes, name=e.name)
        )
    if not download:
        raise OfflineError(f"{e.name} is not in the cache ({dest}) and download=False")
    return download_url(e.url, dest, expected_size=e.size, verify=lambda p: verify_file(e, p), progress=progress)


def _registered(value: str | os.PathLike, role: str, other_flag: str):
    """``(value as str, its registry entry)``; the entry is None for an existing path (a path always
    wins over a name) or an unregistered value. A name registered for the other role is an error
    that names the flag it belongs to."""
    s = os.fspath(value)
    entry = None if exists(s) else find_entry(s)
    if entry is not None and entry.role != role:
        # salient-object weights belong to the stage 1 of the same name
        use = f"--stage1 {entry.name} --sam {entry.name}" if entry.role == "salient" else other_flag
        raise DisSamError(
            f"{entry.name} is a {entry.role} model ({entry.description}), not a {role}: use it with {use}"
        )
    return s, entry


def resolve_sam_source(value: str | os.PathLike | None) -> str | None:
    """What ``load_sam`` should open for a ``--sam`` value.

    An existing path → unchanged; a registry name of a SAM (``sam-vit-l``, ``sam-hq-vit-l``, or a
    registered hub id such as ``facebook/sam-vit-large``) → the cached file or Hugging Face snapshot
    folder (fetched on first use); anything else (an unregistered hub id, a missing path) → unchanged.
    """
    if value is None:
        return None
    s, entry = _registered(value, "sam", "--refiner")
    if entry is None:
        return s
    try:
        return str(fetch(entry))
    except OfflineError as exc:
        if entry.kind != "hf":
            raise
        # a Hub copy of an official SAM: point at Meta's file as the other way in
        alt = find_entry(entry.name[: -len("-hf")]) if entry.name.endswith("-hf") else None
        extra = (
            f"\nOr use Meta's official checkpoint instead: --sam {alt.name} ({alt.url}, cached as {local_path(alt)})."
            if alt is not None and alt.url
            else ""
        )
        raise OfflineError(
            f"{exc}{extra}\nWith HF_HUB_OFFLINE=1 only the local Hugging Face cache ($HF_HOME) is used."
        ) from exc


def resolve_refiner_source(value: str | os.PathLike | None) -> str | None:
    """What ``load_refiner`` should open for a ``--refiner`` value.

    An existing path → unchanged; a registry name (``dis-sam``, ``isnet``, ``dis-sam-compact``) → the
    cached file (fetched on first use, or the manual instructions as a :class:`DownloadError`); a
    Hugging Face id (``org/name``) → its snapshot folder (``config.json`` + ``model.safetensors``);
    anything else → unchanged.
    """
    if value is None:
        return None
    s, entry = _registered(value, "refiner", "--sam")
    if entry is not None:
        return str(fetch(entry))
    if exists(s):
        return s
    if is_hub_id(s):
        try:
            return str(hf_snapshot(s, REFINER_PATTERNS))
        except OfflineError as exc:  # it may as well be a mistyped local folder: say both
            raise OfflineError(f"there is no file or folder {s!r} here, and as a Hugging Face id: {exc}") from exc
    return s


def resolve_weights_file(value: str | os.PathLike) -> str:
    """Like :func:`resolve_refiner_source`, but always a weights *file* (a Hub folder gives its
    ``model.safetensors``): for code that reads a bare state dict (training's ``model.init``)."""
    out = resolve_refiner_source(value)
    p = Path(str(out))
    return str(p / "model.safetensors") if p.is_dir() and (p / "model.safetensors").is_file() else str(out)
