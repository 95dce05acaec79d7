"""What a SAM stage must know of its model before, or without, building it: :class:`SamInfo`, read off
an official checkpoint's tensor shapes or a Hugging Face folder's ``config.json``, with the checks that
need no model (no ``transformers`` import, no weights read beyond the checkpoint's index)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dissam.checkpoints.sam import check_official_sam
from dissam.checkpoints.state_dict import read_state_dict
from dissam.errors import CheckpointError

__all__ = ["SamInfo", "official_info", "folder_info", "check_hq"]


@dataclass(frozen=True)
class SamInfo:
    """What a :class:`SamStage` must know of its model before (or without) building it.

    Attributes:
        model_type: ``"sam"`` or ``"sam_hq"``.
        image_size: the square input size (1024 for every released SAM).
        hidden_size, depth, global_attn: the image encoder's width, number of blocks and the blocks
            with global attention.
    """

    model_type: str
    image_size: int = 1024
    hidden_size: int = 0
    depth: int = 0
    global_attn: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> SamInfo:
        """From a ``transformers`` config object or its ``config.json`` as a dict."""
        get = (lambda o, k, d=None: o.get(k, d)) if isinstance(config, dict) else (lambda o, k, d=None: getattr(o, k, d))
        vc = get(config, "vision_config") or {}
        return cls(str(get(config, "model_type", "sam")), int(get(vc, "image_size", 1024) or 1024),
                   int(get(vc, "hidden_size", 0) or 0), int(get(vc, "num_hidden_layers", 0) or 0),
                   tuple(get(vc, "global_attn_indexes", ()) or ()))


def check_hq(is_hq: bool, hq: bool | None, source: str) -> None:
    if hq is True and not is_hq:
        raise CheckpointError(f"{source} is a plain SAM model, but hq=True asked for HQ-SAM")
    if hq is False and is_hq:
        raise CheckpointError(f"{source} is an HQ-SAM model, but hq=False asked for plain SAM")


def official_info(path: Path) -> SamInfo:
    """The :class:`SamInfo` of an official checkpoint, read off its (memory-mapped) tensors' shapes,
    after checking every key and shape (:func:`~dissam.checkpoints.sam.check_official_sam`)."""
    vc = check_official_sam(read_state_dict(path), str(path))["vision_config"]
    return SamInfo("sam", int(vc["image_size"]), int(vc["hidden_size"]), int(vc["num_hidden_layers"]),
                   tuple(vc["global_attn_indexes"]))


def folder_info(path: Path, hq: bool | None) -> SamInfo:
    """The :class:`SamInfo` of a Hugging Face folder, from its ``config.json`` (checked: a SAM or
    HQ-SAM model, as ``hq`` asks)."""
    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the Hugging Face SAM folder {path}: config.json: {exc}") from exc
    model_type = raw.get("model_type", "") if isinstance(raw, dict) else ""
    if model_type not in ("sam", "sam_hq"):
        raise CheckpointError(f"{path} holds a {model_type!r} model, not SAM (model_type 'sam' or 'sam_hq')")
    check_hq(model_type == "sam_hq", hq, str(path))
    return SamInfo.from_config(raw)
