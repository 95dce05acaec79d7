"""Stage 1 of DIS-SAM: every model that turns an image and a box into a coarse mask, behind one
interface (:class:`~dissam.stages.base.Stage1`: ``set_image``, ``coarse_masks``, per-image state),
listed in one registry (:mod:`dissam.stages.registry`) and loaded by :func:`load_stage1`.

One module per stage: :mod:`~dissam.stages.sam` (SAM, HQ-SAM), :mod:`~dissam.stages.sam2` (SAM 2.1),
:mod:`~dissam.stages.sam3` (SAM 3: boxes and text), :mod:`~dissam.stages.u2netp` (the bundled
U²-Netp, alone or with GrabCut), :mod:`~dissam.stages.grabcut`. Importing this package is light
(no torch): the stage modules load when a stage is loaded.
"""

from dissam.stages.base import ConfigurableRuntime, Instances, Stage1, TextStage
from dissam.stages.registry import (
    OFFLINE_DEFAULT,
    REFINE_ONLY,
    StageSpec,
    detect_stage,
    get_spec,
    load_stage1,
    register_stage,
    resolve_stage,
    stage_names,
    stage_specs,
)

__all__ = [
    "Instances",
    "Stage1",
    "TextStage",
    "ConfigurableRuntime",
    "StageSpec",
    "OFFLINE_DEFAULT",
    "REFINE_ONLY",
    "detect_stage",
    "get_spec",
    "load_stage1",
    "register_stage",
    "resolve_stage",
    "stage_names",
    "stage_specs",
]


def __getattr__(name: str):
    # names of the old stages.factory, kept working: STAGE1_KINDS (the registry's names, read at call
    # time so that plugins are included) and detect_kind (now detect_stage)
    if name == "STAGE1_KINDS":
        return stage_names()
    if name == "detect_kind":
        return detect_stage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
