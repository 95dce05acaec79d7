"""``load_stage1``: pick and load a stage 1 by kind, or from what a folder's ``config.json`` says.

| kind      | model                                   | sources                                        |
|-----------|-----------------------------------------|------------------------------------------------|
| `sam`     | SAM ViT-B/L/H (`SamModel`)              | official `sam_vit_*.pth`, HF folder, hub id    |
| `sam-hq`  | HQ-SAM (`SamHQModel`)                   | HF folder, hub id                              |
| `sam2`    | SAM 2 / 2.1 tiny..large (`Sam2Model`)   | HF folder, hub id (`facebook/sam2.1-hiera-*`)  |
| `sam3`    | SAM 3 tracker (`Sam3TrackerModel`) for boxes; `Sam3Model` for text | HF folder, hub id (`facebook/sam3`) |
| `grabcut` | OpenCV GrabCut, no weights              | none                                           |
| `u2netp`  | U²-Netp inside the box (ONNX Runtime)   | none (the bundled file) or a `.onnx` file      |
| `u2netp-grabcut` | U²-Netp's mask as GrabCut's first guess | as `u2netp`                         |
| `u2netp-auto` | `u2netp-grabcut`'s mask where it separates colours, else U²-Netp's | as `u2netp` |
"""

from __future__ import annotations

import os
from pathlib import Path

from dissam.choices import STAGE1_KINDS, U2NETP_KINDS
from dissam.errors import DisSamError

# config.json model_type -> stage-1 kind
KIND_OF_MODEL_TYPE = {
    "sam": "sam",
    "sam_hq": "sam-hq",
    "sam2": "sam2",
    "sam2_video": "sam2",
    "sam3": "sam3",
    "sam3_tracker": "sam3",
    "sam3_video": "sam3",
    "sam3_tracker_video": "sam3",
}


def detect_kind(source: str | os.PathLike | None) -> str:
    """The stage-1 kind for ``source``: ``grabcut`` for ``None``; ``sam`` for a checkpoint file
    (official SAM ``.pth``); a local folder's ``config.json`` ``model_type``; for a hub id, the
    family named in it (``sam2``, ``sam3``, ``hq``), else ``sam``."""
    from dissam.stages.loading import read_model_type

    if source is None:
        return "grabcut"
    path = Path(os.fspath(source)).expanduser()
    if path.is_file():
        return "sam"
    if path.is_dir():
        model_type = read_model_type(path)
        if model_type is None:
            raise DisSamError(f"{path} has no config.json: cannot tell which stage 1 it holds; pass --stage1")
        if model_type not in KIND_OF_MODEL_TYPE:
            raise DisSamError(f"{path} holds a {model_type!r} model, which is no stage 1 dissam knows "
                              f"({', '.join(sorted(KIND_OF_MODEL_TYPE))})")
        return KIND_OF_MODEL_TYPE[model_type]
    name = os.fspath(source).lower()
    if "sam3" in name:
        return "sam3"
    if "sam2" in name:
        return "sam2"
    if "hq" in name:
        return "sam-hq"
    return "sam"


def load_stage1(kind: str | None, source: str | os.PathLike | None = None, device=None):
    """Load a stage 1.

    Args:
        kind: one of :data:`STAGE1_KINDS`, or ``None`` / ``"auto"`` to use :func:`detect_kind`.
        source: weights (see the table above); ignored for ``grabcut``; optional for the ``u2netp`` kinds.
        device: ``"cpu"``, ``"cuda"``, ... (``None``: best available).
    Returns:
        an object with ``name``, ``set_image(image)`` and ``coarse_masks(boxes, selection)``
        (:class:`dissam.stages.base.Stage1`).
    """
    from dissam.utils import resolve_device

    if kind in (None, "auto"):
        kind = detect_kind(source)
    if kind not in STAGE1_KINDS:
        raise DisSamError(f"unknown stage 1 {kind!r}: use one of {', '.join(STAGE1_KINDS)}")
    if kind == "grabcut":
        from dissam.predictor import GrabCutStage

        return GrabCutStage()
    if kind in U2NETP_KINDS:
        from dissam.stages.u2netp import GRABCUT_MIN_GAIN, load_u2netp

        return load_u2netp(source, grabcut=kind != "u2netp",
                           grabcut_min_gain=GRABCUT_MIN_GAIN if kind == "u2netp-auto" else None)
    if source is None:
        raise DisSamError(f"--stage1 {kind} needs weights: pass --sam with a Hugging Face folder or hub id")
    dev = resolve_device(device)
    if kind in ("sam", "sam-hq"):
        from dissam.models.sam import load_sam

        return load_sam(source, device=dev, hq=True if kind == "sam-hq" else None)
    if kind == "sam2":
        from dissam.stages.sam2 import load_sam2

        return load_sam2(source, dev)
    from dissam.stages.sam2 import load_sam3_tracker

    return load_sam3_tracker(source, dev)
