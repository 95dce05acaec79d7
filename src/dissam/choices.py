"""The allowed values of options that the library and the command line share, each defined once.

A light module (no torch, no transformers), so that ``dissam --help`` stays instant while every
command lists exactly the values the library accepts. Stage-1 names live in their own table,
:mod:`dissam.stages.registry`.
"""

from __future__ import annotations

MASK_SELECTIONS = ("first", "best", "single")
"""Which SAM mask feeds the refiner: ``first`` of the three multimask outputs (the authors' choice),
the ``best`` by predicted IoU, or the ``single`` output of ``multimask_output=False``."""

POINT_SELECTIONS = ("auto",) + MASK_SELECTIONS
"""Which mask feeds the refiner for a prompt with points or a ``mask_input``: ``auto`` follows SAM's
own advice (the best of the three multimask outputs for a single point alone, the single output for
anything more), or one of :data:`MASK_SELECTIONS` for every such prompt."""

BOX_FORMATS = ("xyxy", "xywh")
"""Box prompt formats: corners ``(x0, y0, x1, y1)`` or corner and size ``(x, y, w, h)``, pixels."""

METRICS = ("maxFm", "wFmeasure", "MAE", "Smeasure", "meanEm", "HCE", "mIoU", "mBIoU")
"""The paper's metrics, in the order of its tables (:data:`dissam.metrics.ALL_METRICS`)."""
