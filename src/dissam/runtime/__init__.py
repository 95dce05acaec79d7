"""Backends behind the refiner and the SAM image encoder.

* :mod:`dissam.runtime.onnx_export`: ONNX export of the refiner (dynamic batch), the SAM / HQ-SAM
  image encoder and the SAM / HQ-SAM prompt decoder (box prompts, three masks per box), plus dynamic
  int8 quantisation.
* :mod:`dissam.runtime.cache`: where exported files live (next to the weights, keyed by a hash of the
  weights' content; a user cache folder when that folder is read-only).
* :mod:`dissam.runtime.runners`: one small callable per (backend, precision): torch fp32
  (``channels_last``), torch bf16/fp16 autocast, ONNX Runtime fp32 / int8. The predictor calls these.

Nothing heavy is imported here: onnx and onnxruntime are the optional extra ``dissam[onnx]`` and are
imported where used.
"""

from __future__ import annotations

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

__all__ = ["BACKENDS", "PRECISIONS"]
