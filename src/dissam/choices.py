"""The allowed values of options that the library and the command line share, each defined once.

A light module (no torch, no transformers), so that ``dissam --help`` stays instant while every
command lists exactly the values the library accepts.
"""

from __future__ import annotations

MASK_SELECTIONS = ("first", "best", "single")
"""Which SAM mask feeds the refiner: ``first`` of the three multimask outputs (the authors' choice),
the ``best`` by predicted IoU, or the ``single`` output of ``multimask_output=False``."""

U2NETP_KINDS = ("u2netp", "u2netp-grabcut", "u2netp-auto")
"""The bundled U²-Netp's stage 1s (:class:`dissam.stages.u2netp.U2NetpStage`, steps 1-5, 6 and 7)."""

STAGE1_KINDS = ("sam", "sam-hq", "sam2", "sam3", "grabcut", *U2NETP_KINDS)
"""Stage-1 model families (:func:`dissam.stages.load_stage1`): SAM, HQ-SAM, SAM 2.1, SAM 3, GrabCut,
U²-Netp in the box (bundled weights), GrabCut started from U²-Netp's mask, and the choice between
those two by colour separation (the offline default)."""

STAGE1_CHOICES = ("sam", "grabcut", "none")
"""Stage 1 of :meth:`dissam.DisSamPredictor.from_pretrained`: SAM, the weight-free GrabCut, or none
(refine masks the caller passes)."""

BOX_FORMATS = ("xyxy", "xywh")
"""Box prompt formats: corners ``(x0, y0, x1, y1)`` or corner and size ``(x, y, w, h)``, pixels."""
