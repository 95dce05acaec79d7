"""The options that every command running a network shares, defined once: which stage 1 and which
weights (``--model``, ``--stage1``, ``--sam``, ``--refiner``) and on what runtime (``--backend``,
``--precision``). ``dissam predict``, ``app``, ``video`` and ``benchmark`` take them from here, so they
list the same stage-1 choices (the registry's, :mod:`dissam.stages.registry`) and the same runtimes.

Without weights the stage 1 is the registry's offline default (the bundled U²-Netp, ``u2netp-auto``;
GrabCut where ONNX Runtime is missing), with a notice: the rule lives in ``resolve_stage`` and applies
to the Python API too.
"""

from __future__ import annotations

import argparse
import logging
import warnings

from dissam.runtime import BACKENDS, PRECISIONS
from dissam.stages.registry import stage_names

log = logging.getLogger("dissam")

STAGE1_HELP = ("stage 1 (auto: read off --sam, a folder's config.json or a hub id; without --sam the bundled "
               "U²-Netp, u2netp-auto)")
SAM_HELP = ("stage-1 weights: a name (sam-vit-l, isnet-general-use, u2net, birefnet-general-lite; `dissam models "
            "list`), an official sam_vit_*.pth, a Hugging Face folder or hub id (SAM, HQ-SAM, SAM 2.1, SAM 3), or an "
            ".onnx file (with --stage1 u2netp, u2net, isnet-general-use, ...; IS-Net also takes its .pth)")


def add_stage1_arguments(p: argparse.ArgumentParser, sam_required: bool = False) -> None:
    """``--stage1`` (the registry's names and ``auto``) and ``--sam`` (its weights)."""
    p.add_argument("--stage1", choices=["auto", *stage_names()], default=None, help=STAGE1_HELP)
    p.add_argument("--sam", "--stage1-weights", dest="sam", metavar="SOURCE", required=sam_required, help=SAM_HELP)


def add_weight_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--stage1``, ``--sam``, ``--refiner`` (and the deprecated ``--coarse``)."""
    p.add_argument("--model", metavar="PRESET",
                   help="a named set of weights: dis-sam = SAM ViT-L + DIS-SAM refiner (the paper's); "
                   "cpu = IS-Net general-use in the box + built-in refiner (best on a CPU, one download); "
                   "demo = U²-Netp + built-in refiner. --stage1 / --sam / --refiner override its parts")
    add_stage1_arguments(p)
    p.add_argument("--refiner", help="refiner: a name (dis-sam), a .pth / dissam .safetensors, a Hub folder "
                   "or id; default: built-in")
    p.add_argument("--coarse", choices=["sam", "grabcut"], default=None, help="deprecated: use --stage1 grabcut")


def add_runtime_arguments(p: argparse.ArgumentParser, dtype_alias: bool = False) -> None:
    """``--backend`` and ``--precision`` (``dtype_alias``: also the old ``--dtype`` spelling)."""
    p.add_argument("--backend", choices=[*BACKENDS, "auto"], default=None,
                   help="runtime for the refiner and stage 1's image encoder where it has a choice (SAM, HQ-SAM) "
                        "(default: torch; auto: onnx on a CPU when onnxruntime is installed)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32 (default); bf16/fp16 autocast (torch); int8 SAM encoder (onnx). Lossy: opt-in")
    if dtype_alias:
        p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None,
                       help="old name of --precision (kept for scripts)")


def precision_from_args(args: argparse.Namespace) -> str | None:
    """``--precision``, or the old ``--dtype`` where a command still takes it (they must agree)."""
    from dissam.errors import DisSamError

    precision, dtype = getattr(args, "precision", None), getattr(args, "dtype", None)
    if precision and dtype and precision != dtype:
        raise DisSamError(f"--dtype {dtype} and --precision {precision} disagree: give only --precision")
    return precision or dtype


def stage1_from_args(args: argparse.Namespace) -> str | None:
    """``--stage1``, with the deprecated ``--coarse grabcut`` read as ``--stage1 grabcut``."""
    if getattr(args, "coarse", None) == "grabcut":
        warnings.warn("--coarse grabcut is deprecated: use --stage1 grabcut", DeprecationWarning, stacklevel=2)
        log.warning("--coarse grabcut is deprecated: use --stage1 grabcut")
        return args.stage1 or "grabcut"
    return args.stage1


def predictor_from_args(args: argparse.Namespace, device=None, **kwargs):
    """``DisSamPredictor.from_pretrained`` for the weight options in ``args``."""
    from dissam.predictor import DisSamPredictor  # torch: loaded when a command runs, not for --help

    return DisSamPredictor.from_pretrained(sam=args.sam, refiner=args.refiner, model=args.model, device=device,
                                           stage1=stage1_from_args(args), **kwargs)
