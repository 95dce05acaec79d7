"""Stage 1 of DIS-SAM behind one interface (``set_image``, ``coarse_masks``): SAM, HQ-SAM, SAM 2.1,
SAM 3 and GrabCut; SAM 3 also answers text prompts. See :mod:`dissam.stages.factory`."""

from dissam.stages.base import Instances, Stage1, TextStage
from dissam.stages.factory import STAGE1_KINDS, detect_kind, load_stage1

__all__ = ["Instances", "Stage1", "TextStage", "STAGE1_KINDS", "detect_kind", "load_stage1"]
