"""dissam: DIS-SAM (Liu, Fu, Zhao; ICME 2025) — box-prompted, highly accurate dichotomous image
segmentation. A frozen SAM turns an image and a box into a coarse mask; an IS-Net refiner with a
5-channel input ``[R, G, B, SAM mask, box map]`` turns that into a hair-fine mask.

The public API is imported lazily so that ``import dissam`` stays cheap (no torch, no transformers
until a name that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_EXPORTS = {
    # inference
    "DisSamPredictor": "dissam.predictor",
    "Prediction": "dissam.prediction",
    "Prompt": "dissam.points",
    "GrabCutStage": "dissam.stages.grabcut",
    "Refiner": "dissam.refiner",
    "load_refiner": "dissam.hub.loading",
    "load_sam": "dissam.stages.sam",
    "SamStage": "dissam.stages.sam",
    "read_image": "dissam.io",
    "read_mask": "dissam.io",
    # networks and checkpoints
    "ISNetDIS": "dissam.models.isnet",
    "ISNetGTEncoder": "dissam.models.isnet",
    "RefinerConfig": "dissam.models.isnet",
    "build_refiner": "dissam.models.isnet",
    "save_checkpoint": "dissam.checkpoints",
    "load_checkpoint": "dissam.checkpoints",
    "inflate_refiner_input": "dissam.checkpoints",
    "load_stage1": "dissam.stages.registry",
    "register_stage": "dissam.stages.registry",
    "StageSpec": "dissam.stages.registry",
    # evaluation
    "MetricSuite": "dissam.metrics",
    "ALL_METRICS": "dissam.metrics",
    "evaluate_folders": "dissam.evaluate",
    "evaluate_table": "dissam.evaluate",
    # errors
    "DisSamError": "dissam.errors",
    "CheckpointError": "dissam.errors",
    "ImageReadError": "dissam.errors",
    "BoxError": "dissam.errors",
    "DatasetError": "dissam.errors",
    "OfflineError": "dissam.errors",
    "TrainingError": "dissam.errors",
    "NoMatchError": "dissam.errors",
    "PointError": "dissam.errors",
}

__all__ = [
    "ALL_METRICS",
    "BoxError",
    "CheckpointError",
    "DatasetError",
    "DisSamError",
    "DisSamPredictor",
    "GrabCutStage",
    "ISNetDIS",
    "ISNetGTEncoder",
    "ImageReadError",
    "MetricSuite",
    "NoMatchError",
    "OfflineError",
    "PointError",
    "Prediction",
    "Prompt",
    "Refiner",
    "RefinerConfig",
    "SamStage",
    "StageSpec",
    "TrainingError",
    "build_refiner",
    "evaluate_folders",
    "evaluate_table",
    "inflate_refiner_input",
    "load_checkpoint",
    "load_refiner",
    "load_sam",
    "load_stage1",
    "read_image",
    "read_mask",
    "register_stage",
    "save_checkpoint",
    "__version__",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load lazily
    from dissam.checkpoints import inflate_refiner_input, load_checkpoint, save_checkpoint
    from dissam.errors import (
        BoxError,
        CheckpointError,
        DatasetError,
        DisSamError,
        ImageReadError,
        NoMatchError,
        OfflineError,
        TrainingError,
    )
    from dissam.evaluate import evaluate_folders, evaluate_table
    from dissam.hub.loading import load_refiner
    from dissam.io import read_image, read_mask
    from dissam.metrics import ALL_METRICS, MetricSuite
    from dissam.models.isnet import ISNetDIS, ISNetGTEncoder, RefinerConfig, build_refiner
    from dissam.prediction import Prediction
    from dissam.predictor import DisSamPredictor
    from dissam.refiner import Refiner
    from dissam.stages.grabcut import GrabCutStage
    from dissam.stages.registry import StageSpec, load_stage1, register_stage
    from dissam.stages.sam import SamStage, load_sam


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dissam' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
