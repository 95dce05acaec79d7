"""dissam: DIS-SAM (Liu, Fu, Zhao; ICME 2025) — box-prompted, highly accurate dichotomous image
segmentation. A frozen SAM turns an image and a box into a coarse mask; an IS-Net refiner with a
5-channel input ``[R, G, B, SAM mask, box map]`` turns that into a hair-fine mask.

The public API is imported lazily so that ``import dissam`` stays cheap (no torch, no transformers
until a name that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ISNetDIS": "dissam.models.isnet",
    "ISNetGTEncoder": "dissam.models.isnet",
    "build_refiner": "dissam.models.isnet",
    "load_refiner": "dissam.checkpoints",
    "save_checkpoint": "dissam.checkpoints",
    "load_checkpoint": "dissam.checkpoints",
    "inflate_refiner_input": "dissam.checkpoints",
    "load_sam": "dissam.models.sam",
    "SamStage": "dissam.models.sam",
    "load_stage1": "dissam.stages",
    "DisSamPredictor": "dissam.predictor",
    "read_image": "dissam.io",
    "DisSamError": "dissam.errors",
    "CheckpointError": "dissam.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dissam' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
