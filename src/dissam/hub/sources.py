"""What a weights argument names, and what to say when it cannot be had.

Every ``--sam`` / ``--refiner`` value, and every ``source`` a loader takes, is one of: a registry name
(:mod:`dissam.hub.registry`), an existing local file or folder, or a Hugging Face hub id
(``owner/name``). This module holds the one rule that tells a hub id from a local path that does not
exist, and the one way hub failures become an :class:`~dissam.errors.OfflineError`.

The rule (:func:`is_hub_id`): a value is a hub id when it is not an existing path, has exactly the
form ``owner/name`` (letters, digits, ``_ . -``), does not start with ``.``, ``/`` or ``~``, does not
end in a weights suffix (``.pth``, ``.safetensors``, ``.onnx``, ...), and its first part is not a
folder that exists here (``models/sam2.1-hiera-tiny`` next to a ``models/`` folder is a missing path,
not a repository called ``models``). Anything else that does not exist is a missing path, reported at
once with "no such file or folder" instead of a hub lookup that retries for half a minute.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dissam.errors import CheckpointError, OfflineError

__all__ = [
    "WEIGHT_SUFFIXES",
    "is_hub_id",
    "exists",
    "missing_path_error",
    "first_line",
    "hub_error",
    "hf_download_hint",
]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".onnx", ".json")
"""Suffixes of weights files: a value ending in one of these is a file name, never a hub id."""

OFFLINE_NOTE = "With HF_HUB_OFFLINE=1 only the local Hugging Face cache (HF_HOME, ~/.cache/huggingface) is used."


def exists(value: str | os.PathLike) -> bool:
    """Whether ``value`` is an existing file or folder (``~`` expanded)."""
    return Path(os.fspath(value)).expanduser().exists()


def is_hub_id(value: str | os.PathLike) -> bool:
    """Whether ``value`` names a Hugging Face repository rather than a local path (module docstring)."""
    s = os.fspath(value)
    if exists(s) or not _HUB_ID.match(s) or s.lower().endswith(WEIGHT_SUFFIXES):
        return False
    return not Path(s.split("/", 1)[0]).is_dir()


def missing_path_error(value: str | os.PathLike, what: str, hint: str = "") -> CheckpointError:
    """The error for a local path that does not exist (and is no hub id)."""
    s = os.fspath(value)
    parent = Path(s).expanduser().parent
    where = f" (the folder {parent} exists, but holds no {Path(s).name!r})" if str(parent) not in ("", ".") \
        and parent.is_dir() else ""
    return CheckpointError(f"{what}: no such file or folder: {s}{where}" + (f"\n{hint}" if hint else ""))


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (hub errors carry pages of detail)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def hub_error(what: str, source: str, exc: BaseException, hint: str = "") -> OfflineError:
    """The one :class:`OfflineError` for a hub id that could not be loaded: offline, not cached, an
    unknown or gated repository, an HTTP failure. It says that no local path of that name exists
    either (the id may be a mistyped path)."""
    return OfflineError(f"there is no file or folder {source!r} here, and as a Hugging Face id: cannot load {what} "
                        f"from the hub or its local cache ({first_line(exc)})." + (f"\n{hint}" if hint else ""))


def hf_download_hint(hub_id: str, use: str) -> str:
    """How to get ``hub_id`` onto a machine without network and what to pass then (``use`` is a
    format string with ``{local}``, e.g. ``"--sam {local}"``)."""
    local = "models/" + hub_id.split("/")[-1]
    return (
        "Download it once on a machine with internet, then pass the local folder:\n"
        f"  hf download {hub_id} --local-dir {local}   ->  {use.format(local=local)}\n" + OFFLINE_NOTE
    )
