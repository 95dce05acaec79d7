"""Reading and writing weights: state dicts on disk, with no name resolution and no downloads.

* :mod:`dissam.checkpoints.state_dict`: any weights file read safely (``weights_only=True``,
  wrappers and ``module.`` prefixes removed) and strict loading that names every difference;
* :mod:`dissam.checkpoints.refiner_weights`: the refiner read off its tensors, dissam's
  ``.safetensors`` + ``.json`` checkpoints (atomic writes) and the 3 -> 5 channel inflation;
* :mod:`dissam.checkpoints.sam`: official SAM ``.pth`` files converted to ``transformers``' ``SamModel``
  (imported on its own: it needs transformers).

Resolving names, hub ids and folders to files is the layer above (:mod:`dissam.hub`).
"""

from __future__ import annotations

from dissam.checkpoints.refiner_weights import (
    infer_refiner_config,
    inflate_refiner_input,
    load_checkpoint,
    save_checkpoint,
)
from dissam.checkpoints.state_dict import (
    build_with_weights,
    load_state_dict_strict,
    read_state_dict,
    strip_prefixes,
    tensor_versions,
)

__all__ = [
    "read_state_dict",
    "load_state_dict_strict",
    "build_with_weights",
    "tensor_versions",
    "strip_prefixes",
    "infer_refiner_config",
    "save_checkpoint",
    "load_checkpoint",
    "inflate_refiner_input",
]

