"""State dicts on disk: read any weights file safely, and load a state dict strictly.

* ``.pth`` / ``.pt`` / ``.bin``: torch pickles, read with ``torch.load(weights_only=True)`` (a pickle
  that carries code is refused with an explanation); ``.safetensors`` through safetensors.
* Wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and ``module.`` /
  ``_orig_mod.`` prefixes (DDP, ``torch.compile``) stripped.
* :func:`load_state_dict_strict` names every missing key, unexpected key and shape mismatch;
* :func:`build_with_weights` builds a module without random initialisation (on PyTorch's ``meta``
  device) and puts the checkpoint's tensors in it as they are (``assign=True``): with the
  memory-mapped reading of :func:`read_state_dict`, loading costs neither a random init nor a copy, and
  weights a run never touches are never read from disk.

Nothing here resolves names or downloads (that is :mod:`dissam.hub`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from dissam.errors import CheckpointError

__all__ = ["strip_prefixes", "read_state_dict", "load_state_dict_strict", "build_with_weights", "tensor_versions"]

_PREFIXES = ("module.", "_orig_mod.")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "params")


def strip_prefixes(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], source)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{source} does not hold a state dict (a mapping of parameter names to tensors)"
        )
    if not obj:
        raise CheckpointError(f"{source} holds an empty state dict")
    return strip_prefixes(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (torch pickle, ``weights_only=True``) or
    ``.safetensors``. Wrapper dicts (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and
    ``module.`` prefixes stripped. Raises :class:`CheckpointError` with the reason.

    The tensors are memory-mapped where the format allows (safetensors; the zip archives that
    ``torch.save`` writes, through ``torch.load(mmap=True)``): reading is near-instant, pages come from
    disk when a tensor is first used, and writing to a tensor changes a private copy, never the file.
    Old-style bare pickles are read into memory."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes): the download or copy did not finish")
    if p.suffix == ".safetensors":
        try:
            return _unwrap(load_file(str(p), device="cpu"), str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {p}: truncated or not a safetensors file ({exc})") from exc
    with p.open("rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive (PK..), older torch a bare pickle (protocol byte 0x80)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle; it starts with "
            f"{head!r}). Expected an official .pth (e.g. the DIS-SAM or IS-Net weights) or a dissam "
            ".safetensors file; an HTML page saved instead of the download is a common cause."
        )
    try:
        # mmap needs the zip archive of torch.save (head b"PK"); a bare pickle is read into memory
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=head.startswith(b"PK"))
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise CheckpointError(f"cannot read {p}: the file is truncated or corrupt ({exc})") from exc
        raise CheckpointError(
            f"refused to load {p}: it is a pickle that contains more than weights (code or custom objects), "
            "and dissam only loads weights (torch.load(weights_only=True)). If you trust the file, re-save "
            "its state_dict with torch.save(model.state_dict(), path)."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {p}: the file is truncated or corrupt ({exc})") from exc
    return _unwrap(obj, str(p))


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint", assign: bool = False
) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a complete, readable error: every
    missing key, unexpected key and shape mismatch is listed (up to 20 of each).

    ``assign``: put the given tensors in the module instead of copying them into its own (what a
    module built on the ``meta`` device needs: :func:`build_with_weights`); tensors of another dtype
    are converted to the module's first."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:

        def _fmt(title: str, items: list[str]) -> str:
            if not items:
                return ""
            more = f" ... and {len(items) - 20} more" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}): " + ", ".join(items[:20]) + more

        raise CheckpointError(
            f"{source} does not match {type(model).__name__}"
            + _fmt("missing keys", missing)
            + _fmt("unexpected keys", unexpected)
            + _fmt("shape mismatches", mismatched)
        )
    if assign:
        state_dict = {k: v if v.dtype == expected[k].dtype else v.to(expected[k].dtype) for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=assign)


def build_with_weights(factory: Callable[[], nn.Module], state_dict: Mapping[str, torch.Tensor],
                       source: str = "checkpoint") -> nn.Module:
    """``factory()`` built on the ``meta`` device (no memory, no random initialisation) with the
    tensors of ``state_dict`` assigned to it (strict keys and shapes, as :func:`load_state_dict_strict`).

    A module whose ``factory`` creates state that is not in a state dict (non-persistent buffers) is
    built normally instead and loaded by copy, so the result never holds a ``meta`` tensor."""
    with torch.device("meta"):
        model = factory()
    load_state_dict_strict(model, state_dict, source, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = factory()
        load_state_dict_strict(model, state_dict, source)
    return model


def tensor_versions(module: nn.Module) -> dict[str, tuple[int, int]]:
    """Where each tensor of ``module`` lives and how often it was changed in place (PyTorch's version
    counter). Taken when weights are loaded, it tells later whether they are still the file's: a
    graph cached for the file may then be used without hashing the tensors."""
    # inference tensors (made under torch.inference_mode) cannot change in place: their count is -1
    return {k: (t.data_ptr(), -1 if t.is_inference() else t._version)
            for k, t in module.state_dict(keep_vars=True).items()}
