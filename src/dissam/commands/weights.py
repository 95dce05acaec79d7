"""The weight and runtime options that every command building a predictor shares (``dissam predict``,
``dissam app``): ``--model``, ``--sam``, ``--refiner``, ``--stage1``, ``--coarse``, ``--backend``,
``--precision``, and the one rule
for a command line without SAM weights (the bundled U²-Netp stage 1, ``u2netp-auto``, with a notice; GrabCut where ONNX
Runtime is missing; the Python API never switches silently)."""

from __future__ import annotations

import argparse
import logging

from dissam.choices import STAGE1_KINDS
from dissam.runtime import BACKENDS, PRECISIONS

log = logging.getLogger("dissam")

NO_SAM_NOTICE = (
    "no SAM weights given: using the bundled U²-Netp stage 1 (with GrabCut's edges where they separate the "
    "object's colours better, and GrabCut where U²-Netp finds nothing in a box; lower quality than SAM); pass --model dis-sam, --sam sam-vit-l (or an official sam_vit_*.pth, a Hugging Face "
    "SAM folder or id) for the paper's pipeline"
)
NO_ONNXRUNTIME_NOTICE = "ONNX Runtime is not installed, so U²-Netp cannot run: using the weight-free GrabCut stage 1"


def add_weight_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PRESET",
                   help="a named pair of weights: dis-sam = SAM ViT-L + DIS-SAM refiner (the paper's); "
                   "demo = U²-Netp + built-in refiner. --sam / --refiner override its halves")
    p.add_argument("--sam", help="stage-1 weights: a name (sam-vit-l; `dissam models list`), official "
                   "sam_vit_*.pth, a Hugging Face folder or hub id (SAM, HQ-SAM, SAM 2.1, SAM 3)")
    p.add_argument("--refiner", help="refiner: a name (dis-sam), a .pth / dissam .safetensors, a Hub folder "
                   "or id; default: built-in")
    p.add_argument("--stage1", choices=["auto", *STAGE1_KINDS], default=None,
                   help="stage-1 model family for --sam (auto: from the folder's config.json); see docs/stage1.md")
    p.add_argument("--coarse", choices=["sam", "grabcut"], default="sam",
                   help="stage 1: SAM (default; the bundled U²-Netp if no SAM weights are given) or weight-free "
                   "GrabCut")


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision`` (docs/runtime.md)."""
    p.add_argument("--backend", choices=[*BACKENDS, "auto"], default=None,
                   help="runtime for the refiner and SAM's image encoder (default: torch; auto: onnx on a CPU "
                        "when onnxruntime is installed)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32 (default); bf16/fp16 autocast (torch); int8 SAM encoder (onnx). Lossy: opt-in")


def predictor_from_args(args: argparse.Namespace, device=None, **kwargs):
    """``DisSamPredictor.from_pretrained`` for the weight options in ``args`` (see the module doc)."""
    from dissam.predictor import DisSamPredictor

    coarse, stage1 = args.coarse, args.stage1
    if coarse == "sam" and args.sam is None and args.model is None and stage1 in (None, "auto", "sam"):
        coarse, stage1 = offline_stage1()
    return DisSamPredictor.from_pretrained(
        sam=args.sam, refiner=args.refiner, model=args.model, device=device, coarse=coarse, stage1=stage1,
        **kwargs,
    )


def offline_stage1() -> tuple[str, str | None]:
    """``(coarse, stage1)`` for a command line with no SAM weights: the bundled U²-Netp (``u2netp-auto``), or GrabCut
    where ONNX Runtime is missing (both with a notice)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        log.warning(NO_ONNXRUNTIME_NOTICE)
        return "grabcut", None
    log.warning(NO_SAM_NOTICE)
    return "sam", "u2netp-auto"
