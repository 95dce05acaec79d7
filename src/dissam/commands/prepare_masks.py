"""``dissam prepare-masks``: SAM coarse masks (mask/) for a data set, optionally with enrichment."""

from __future__ import annotations

import argparse

from dissam.choices import MASK_SELECTIONS
from dissam.commands.engine_flags import add_engine_arguments, ray_options_from_args
from dissam.commands.weights import add_stage1_arguments

HELP = "write SAM coarse masks (mask/<stem>.png) for every image of a data set, from the GT box"

DESCRIPTION = """\
Prompt SAM with each image's whole-GT box (spec 2.6) and write SPLIT/mask/<stem>.png ({0,255}).
DATASET_DIR is a split folder (im/, gt/) or a folder of splits (e.g. DIS5K).

  dissam prepare-masks DIS5K --sam sam_vit_l_0b3195.pth --device cuda
  dissam prepare-masks DIS5K/DIS-TR --sam sam_vit_l_0b3195.pth --enrich

--enrich also writes SPLIT/mask_comp/<stem>_comp_<k>.png for every GT component and the manifest
SPLIT/enrich.json (see docs/data.md). Existing outputs are kept (rerun to resume). Under torchrun
each rank takes its own slice of the images:
  torchrun --nproc_per_node 4 -m dissam prepare-masks DIS5K --sam sam_vit_l_0b3195.pth --device cuda
or on Ray Data (pip install 'dissam[ray]'; the data set on a filesystem every node sees):
  dissam prepare-masks DIS5K --sam sam_vit_l_0b3195.pth --engine ray --ray-address auto --ray-actors 8
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", help="split folder or folder of splits")
    add_stage1_arguments(parser)  # the paper's: --sam sam_vit_l_0b3195.pth (stage 1 auto: SAM)
    parser.add_argument("--enrich", action="store_true", help="also per-component masks and the manifest")
    parser.add_argument(
        "--selection",
        choices=MASK_SELECTIONS,
        default="first",
        help="which SAM mask: first of three (the authors', default), best predicted IoU, single output",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dissam.data.prepare import prepare_masks, summarise
    from dissam.errors import DisSamError
    from dissam.sharding import device_for_rank
    from dissam.stages.registry import get_spec

    if args.sam is None and (args.stage1 in (None, "auto") or get_spec(args.stage1).needs_weights):
        raise DisSamError("prepare-masks needs stage-1 weights: --sam sam_vit_l_0b3195.pth (the paper's), or a "
                          "--stage1 that needs none (u2netp-auto, grabcut)")
    if args.engine == "ray":
        return _run_ray(args)
    rep = prepare_masks(
        args.dataset_dir,
        args.sam,
        stage1=args.stage1,
        enrich=args.enrich,
        selection=args.selection,
        device=device_for_rank(args.device),  # cuda:LOCAL_RANK under torchrun
        progress=not args.no_progress,
    )
    print(summarise(rep))
    return 1 if rep.failed else 0


def _run_ray(args: argparse.Namespace) -> int:
    """``--engine ray`` (:mod:`dissam.engines.ray_prepare`)."""
    from dissam.data.prepare import summarise
    from dissam.engines.ray_prepare import prepare_masks_ray

    rep, seconds = prepare_masks_ray(args.dataset_dir, args.sam, ray_options_from_args(args), enrich=args.enrich,
                                     stage1=args.stage1, selection=args.selection, device=args.device,
                                     progress=not args.no_progress)
    print(summarise(rep))
    done = rep.images - rep.skipped - len(rep.failed)
    print(f"dissam prepare-masks [ray]: {done} image(s) done, {rep.skipped} already done, {len(rep.written)} mask(s), "
          f"{len(rep.failed)} failure(s) in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} images/s)")
    return 1 if rep.failed else 0
