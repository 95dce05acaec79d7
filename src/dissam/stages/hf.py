"""Loading ``transformers`` stage-1 models (SAM 2.1, SAM 3) from a Hugging Face folder or hub id, with
the same errors as :func:`dissam.load_sam` (a missing path is a :class:`CheckpointError`; a hub id that
cannot be fetched is an :class:`OfflineError` that says what to download).

``from_pretrained`` uses the hub cache; with ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) only
the cache is read, which is how these models are used on machines without internet.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
import transformers

from dissam.errors import CheckpointError
from dissam.hub.cache import hub_local_only
from dissam.hub.sources import hf_download_hint, hub_error, is_hub_id, missing_path_error
from dissam.stages.registry import get_spec, read_model_type

__all__ = ["read_model_type", "hub_hint", "load_hf_model", "session_class"]


def hub_hint(kind: str, source: str) -> str:
    """How to get the weights of stage ``kind`` onto this machine (``source`` if it is a hub id, else
    the stage's example)."""
    hub_id = source if is_hub_id(source) else (get_spec(kind).hub_example or "facebook/sam3")
    return hf_download_hint(hub_id, f"--stage1 {kind} --sam {{local}}")


def load_hf_model(source: str | os.PathLike, class_name: str, accepted: tuple[str, ...], kind: str):
    """``transformers.<class_name>.from_pretrained(source)`` in float32, eval mode.

    Args:
        source: a local folder (``config.json`` + weights) or a hub id.
        class_name: the transformers model class to build (e.g. ``"Sam2Model"``).
        accepted: ``model_type`` values this stage can read (checked before loading weights).
        kind: the stage-1 kind, for messages (``"sam2"``, ``"sam3"``).
    Raises:
        CheckpointError: missing folder, a folder of another model type, unreadable weights.
        OfflineError: a hub id that is neither cached nor downloadable.
    """
    src = os.fspath(source)
    path = Path(src).expanduser()
    cls = getattr(transformers, class_name)
    offline = hub_local_only()
    if path.is_dir():
        model_type = read_model_type(path)
        if model_type is None:
            raise CheckpointError(
                f"{path} is a folder without config.json: give a Hugging Face {kind} folder "
                f"(config.json + model.safetensors).\n{hub_hint(kind, src)}"
            )
        if model_type not in accepted:
            raise CheckpointError(
                f"{path} holds a {model_type!r} model; --stage1 {kind} reads {', '.join(accepted)} "
                "(leave --stage1 out to pick the stage from config.json)"
            )
        try:
            return cls.from_pretrained(str(path), dtype=torch.float32, local_files_only=True).eval()
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot load the Hugging Face {kind} folder {path}: {exc}") from exc
    if path.exists():
        raise CheckpointError(f"{kind} weights must be a Hugging Face folder (config.json + model.safetensors) "
                              f"or a hub id, not the file {src}")
    if not is_hub_id(src):
        raise missing_path_error(src, f"{kind} model not found", hub_hint(kind, src))
    try:
        config = transformers.AutoConfig.from_pretrained(src, local_files_only=offline)
        if config.model_type not in accepted:
            raise CheckpointError(f"{src} holds a {config.model_type!r} model; --stage1 {kind} reads {', '.join(accepted)}")
        return cls.from_pretrained(src, dtype=torch.float32, local_files_only=offline).eval()
    except CheckpointError:
        raise
    except Exception as exc:  # hub errors: offline, not cached, unknown repo, HTTP failures
        raise hub_error(kind, src, exc, hub_hint(kind, src)) from exc


def session_class(model: torch.nn.Module):
    """The ``*InferenceSession`` class that belongs to a transformers video model."""
    module = importlib.import_module(type(model).__module__)
    for name in dir(module):
        if name.endswith("VideoInferenceSession"):
            return getattr(module, name)
    raise CheckpointError(f"{type(model).__name__} has no video inference session")
