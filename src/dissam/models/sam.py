"""Deprecated location of the SAM stage: ``dissam.models.sam`` held ``SamStage`` and ``load_sam``
before stage 1 got its own home; they now live in :mod:`dissam.stages.sam` (the public names are
``dissam.SamStage`` and ``dissam.load_sam``) and the official-checkpoint conversion in
:mod:`dissam.checkpoints.sam`. Importing a name from here still works and warns."""

from __future__ import annotations

import importlib
import warnings

_MOVED = {
    "SamStage": "dissam.stages.sam",
    "SamImageState": "dissam.stages.sam",
    "load_sam": "dissam.stages.sam",
    "preprocess_image": "dissam.stages.sam",
    "preprocess_shape": "dissam.stages.sam",
    "PIXEL_MEAN": "dissam.stages.sam",
    "PIXEL_STD": "dissam.stages.sam",
    "OFFICIAL_FILES": "dissam.stages.sam",
    "OFFICIAL_URL": "dissam.stages.sam",
    "MASK_SELECTIONS": "dissam.stages.sam",
    "build_sam_from_state_dict": "dissam.checkpoints.sam",
}


def __getattr__(name: str):
    # a compatibility shim: the names load from their new modules on first use (an import that points
    # up a layer on purpose, so that old imports keep working)
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"dissam.models.sam.{name} moved to {module}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), name)
