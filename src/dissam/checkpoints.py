"""Reading and writing weights.

* Official ``.pth`` files (``isnet.pth``, ``isnet-general-use.pth``, the DIS-SAM checkpoint): plain
  state dicts, read with ``torch.load(weights_only=True)`` (a pickle that carries code is refused),
  ``module.`` / ``_orig_mod.`` prefixes stripped, loaded with strict key *and* shape checks whose
  error names every missing, unexpected and mis-shaped key.
* dissam's own format: ``NAME.safetensors`` (weights; the model config is also stored in its header)
  plus ``NAME.json`` (config and metadata) beside it. Both are written atomically (temporary file,
  then rename), so an interrupted save never leaves a half-written checkpoint under the real name.
* :func:`inflate_refiner_input` starts a 5-channel refiner from 3-channel IS-Net weights (RGB filters
  copied, the SAM-mask and box-map filters zero): our option for faster fine-tuning. The paper
  trains the 5-channel refiner from scratch.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dissam.errors import CheckpointError
from dissam.models.isnet import RefinerConfig, build_refiner
from dissam.refiner import Refiner
from dissam.utils import atomic_write_bytes

__all__ = [
    "read_state_dict",
    "load_state_dict_strict",
    "infer_refiner_config",
    "load_refiner",
    "save_checkpoint",
    "load_checkpoint",
    "inflate_refiner_input",
]

_PREFIXES = ("module.", "_orig_mod.")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "params")


def _strip_prefixes(sd: Mapping[str, Any]) -> dict[str, Any]:
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
    return _strip_prefixes(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (torch pickle, ``weights_only=True``) or
    ``.safetensors``. Wrapper dicts (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and
    ``module.`` prefixes stripped. Raises :class:`CheckpointError` with the reason."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes): the download or copy did not finish")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

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
        obj = torch.load(p, map_location="cpu", weights_only=True)
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
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a complete, readable error: every
    missing key, unexpected key and shape mismatch is listed (up to 20 of each)."""
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
    model.load_state_dict(state_dict, strict=True)


def infer_refiner_config(state_dict: Mapping[str, torch.Tensor]) -> RefinerConfig:
    """Architecture, input channels and width from the tensors (never from a file name)."""
    if "conv_in.conv.weight" in state_dict:
        w = state_dict["conv_in.conv.weight"]
        return RefinerConfig(
            "gt_encoder",
            int(w.shape[1]),
            int(state_dict["side1.weight"].shape[0]),
            _width(int(w.shape[0]), 16),
        )
    if "conv_in.weight" in state_dict and "stage1d.rebnconvin.conv_s1.weight" in state_dict:
        w = state_dict["conv_in.weight"]
        return RefinerConfig(
            "isnet", int(w.shape[1]), int(state_dict["side1.weight"].shape[0]), _width(int(w.shape[0]), 64)
        )
    raise CheckpointError(
        "cannot recognise the network in this state dict: expected IS-Net keys "
        "('conv_in.weight', 'stage1.rebnconvin.conv_s1.weight', ...) or GT-encoder keys ('conv_in.conv.weight', ...)"
    )


def _width(channels: int, full: int) -> float:
    return 1.0 if channels == full else round(channels / full, 4)


def load_refiner(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    eval_mode: bool = True,
) -> Refiner:
    """Load a refiner (or GT encoder) from an official ``.pth``, a state dict, a dissam checkpoint
    (``.safetensors`` + ``.json``, or the folder holding ``model.safetensors``), a Hub-style folder
    (``config.json`` + ``model.safetensors``), a registry name (``dis-sam``, ``isnet``; see
    :mod:`dissam.hub`) or a Hugging Face id of such a folder. The input channel
    count (3 = IS-Net, 5 = DIS-SAM) and width are inferred from the weights; loading is strict.

    Returns a :class:`~dissam.refiner.Refiner`: the network (``.net``, on ``device``, in eval mode
    unless ``eval_mode=False``) with its config, the input size it was trained at and the prompt
    channels it was trained without."""
    if isinstance(source, Mapping):
        sd, name = _strip_prefixes(source), "state dict"
    else:
        from dissam.hub import resolve_refiner_source

        path = Path(resolve_refiner_source(source))  # registry names and hub ids -> local paths
        if path.is_dir() and (path / "config.json").is_file():  # a Hub-style folder (dissam.hub.folder)
            from dissam.hub.folder import load_refiner_folder

            model = load_refiner_folder(path, device=device)
            return model.eval() if eval_mode else model
        if path.is_dir():
            path = path / "model.safetensors"
        name = str(path)
        if path.suffix == ".safetensors":
            model, info = load_checkpoint(path, device=device)
            config = RefinerConfig.from_dict(info["config"]) if info.get("config") else infer_refiner_config(
                model.state_dict()
            )
            ref = Refiner.from_checkpoint_info(model, config, info, name)
            return ref.eval() if eval_mode else ref
        sd = read_state_dict(path)
    config = infer_refiner_config(sd)
    model = build_refiner(config)
    load_state_dict_strict(model, sd, name)
    model.to(device)
    ref = Refiner(model, config, 1024, (), name)
    return ref.eval() if eval_mode else ref


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: RefinerConfig | dict | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` as ``path`` (``.safetensors``) and ``path.json`` beside it, atomically.

    ``config`` defaults to one inferred from the weights. ``metadata`` (JSON-serialisable: training
    config, step, metrics, ...) goes into the JSON file. Returns the ``.safetensors`` path.
    """
    from safetensors.torch import save

    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(".safetensors")
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if config is None:
        config = infer_refiner_config(sd)
    cfg = config.to_dict() if isinstance(config, RefinerConfig) else dict(config)
    meta = {"format": "dissam-checkpoint", "version": 1, "config": cfg, "metadata": dict(metadata or {})}
    text = json.dumps(meta, indent=1, sort_keys=True, default=str)
    atomic_write_bytes(p, save(sd, metadata={"dissam": json.dumps({"config": cfg})}))
    atomic_write_bytes(p.with_suffix(".json"), text.encode())
    return p


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a dissam checkpoint written by :func:`save_checkpoint`: returns ``(model, info)`` where
    ``info`` is the JSON (``config`` and ``metadata``). A lone ``.safetensors`` without its JSON still
    loads (the config is also in the file header)."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    info: dict = {}
    side = p.with_suffix(".json")
    if side.is_file():
        try:
            info = json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{side} is not valid JSON ({exc}); it may be truncated") from exc
    if "config" not in info:
        try:
            with safe_open(str(p), framework="pt") as fh:
                header = (fh.metadata() or {}).get("dissam")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read {p}: truncated or not a safetensors file ({exc})") from exc
        info.setdefault("config", json.loads(header)["config"] if header else None)
    sd = read_state_dict(p)
    config = RefinerConfig.from_dict(info["config"]) if info.get("config") else infer_refiner_config(sd)
    model = build_refiner(config)
    load_state_dict_strict(model, sd, str(p))
    return model.to(device), info


def inflate_refiner_input(
    source: nn.Module | Mapping[str, torch.Tensor], in_ch: int = 5
) -> dict[str, torch.Tensor]:
    """State dict for an ``in_ch``-channel refiner started from 3-channel IS-Net weights.

    The RGB filters of ``conv_in`` are copied and the filters of the extra channels (SAM mask, box
    map) set to zero, so the inflated net computes exactly what the 3-channel net does until training
    moves those weights. (The paper trains the 5-channel refiner from scratch; this is an option.)
    """
    sd = source.state_dict() if isinstance(source, nn.Module) else _strip_prefixes(source)
    w = sd.get("conv_in.weight")
    if w is None or w.ndim != 4:
        raise CheckpointError(
            "inflation needs an IS-Net state dict with a 'conv_in.weight' of shape (64, 3, 3, 3)"
        )
    if w.shape[1] > in_ch:
        raise CheckpointError(f"conv_in already has {w.shape[1]} input channels (> {in_ch})")
    new = torch.zeros((w.shape[0], in_ch, *w.shape[2:]), dtype=w.dtype)
    new[:, : w.shape[1]] = w
    out = dict(sd)
    out["conv_in.weight"] = new
    return out
