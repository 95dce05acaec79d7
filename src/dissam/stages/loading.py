"""Loading stage-1 models from a Hugging Face folder or hub id, with the same errors as
:func:`dissam.load_sam` (a missing path is a :class:`CheckpointError`; a hub id that cannot be
fetched is an :class:`OfflineError` that says what to download).

``from_pretrained`` uses the hub cache; with ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) only
the cache is read, which is how these models are used on machines without internet.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch

from dissam.errors import CheckpointError, OfflineError
from dissam.models.sam import _looks_like_path

# model_type in config.json -> transformers class name
MODEL_CLASSES = {
    "sam": "SamModel",
    "sam_hq": "SamHQModel",
    "sam2": "Sam2Model",
    "sam2_video": "Sam2VideoModel",
    "sam3": "Sam3Model",
    "sam3_tracker": "Sam3TrackerModel",
    "sam3_video": "Sam3Model",  # the full SAM 3 checkpoint: detector + tracker
    "sam3_tracker_video": "Sam3TrackerVideoModel",
}

# hub ids shown in hints, per stage-1 kind
HUB_EXAMPLES = {
    "sam": "facebook/sam-vit-large",
    "sam-hq": "syscv-community/sam-hq-vit-large",
    "sam2": "facebook/sam2.1-hiera-tiny",
    "sam3": "facebook/sam3",
}


def read_model_type(source: str | os.PathLike) -> str | None:
    """``model_type`` of a local Hugging Face folder's ``config.json`` (``None`` if not a folder or
    no config)."""
    cfg = Path(source).expanduser() / "config.json"
    if not cfg.is_file():
        return None
    try:
        return str(json.loads(cfg.read_text()).get("model_type", "")) or None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {cfg}: {exc}") from exc


def hub_hint(kind: str, source: str) -> str:
    hub_id = source if "/" in source and not _looks_like_path(source) else HUB_EXAMPLES.get(kind, "facebook/sam3")
    local = "models/" + hub_id.split("/")[-1]
    return (
        "Download it once on a machine with internet, then pass the local folder:\n"
        f"  hf download {hub_id} --local-dir {local}   ->  --stage1 {kind} --sam {local}\n"
        "With HF_HUB_OFFLINE=1 only the local Hugging Face cache (HF_HOME, ~/.cache/huggingface) is used."
    )


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
    import transformers

    src = os.fspath(source)
    path = Path(src).expanduser()
    cls = getattr(transformers, class_name)
    from dissam.hub.cache import is_offline

    offline = is_offline()
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
    if _looks_like_path(src) or path.exists():
        raise CheckpointError(f"{kind} model not found: {src} (a Hugging Face folder or hub id)\n{hub_hint(kind, src)}")
    try:
        config = transformers.AutoConfig.from_pretrained(src, local_files_only=offline)
        if config.model_type not in accepted:
            raise CheckpointError(f"{src} holds a {config.model_type!r} model; --stage1 {kind} reads {', '.join(accepted)}")
        return cls.from_pretrained(src, dtype=torch.float32, local_files_only=offline).eval()
    except CheckpointError:
        raise
    except Exception as exc:  # hub errors: offline, not cached, unknown repo, HTTP failures
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise OfflineError(
            f"cannot load {kind} {src!r} from the Hugging Face hub or its local cache "
            f"({type(exc).__name__}: {first}).\n{hub_hint(kind, src)}"
        ) from exc


def session_class(model: torch.nn.Module):
    """The ``*InferenceSession`` class that belongs to a transformers video model."""
    module = importlib.import_module(type(model).__module__)
    for name in dir(module):
        if name.endswith("VideoInferenceSession"):
            return getattr(module, name)
    raise CheckpointError(f"{type(model).__name__} has no video inference session")
