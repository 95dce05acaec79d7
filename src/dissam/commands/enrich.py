"""``dissam enrich``: the GT-enrichment manifest of a split (one sample per GT component)."""

from __future__ import annotations

import argparse

HELP = "list one extra training sample per GT component (the paper's enrichment) in a manifest"

DESCRIPTION = """\
Binarise each GT (>=128), find 8-connected components, drop those under 0.4% of the image, and
write a manifest of (image, gt, component k, box, SAM mask path) samples; k=0 is the whole mask
(only for images with several components). No image is copied. The SAM masks of the components
(SPLIT/mask_comp/<stem>_comp_<k>.png) come from `dissam prepare-masks SPLIT --sam ... --enrich`.

  dissam enrich DIS5K/DIS-TR               # writes DIS5K/DIS-TR/enrich.json
  dissam enrich DIS5K/DIS-TR -o tr.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("split_dir", metavar="SPLIT_DIR", help="split folder with im/ and gt/")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="manifest path (default SPLIT_DIR/enrich.json)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dissam.data.enrich import enrich_split, write_manifest
    from dissam.data.prepare import MANIFEST_NAME

    res = enrich_split(args.split_dir)
    out = Path(args.output) if args.output else Path(args.split_dir) / MANIFEST_NAME
    write_manifest(out, res)
    missing = sum(1 for s in res.samples if s.mask is None or not s.mask.is_file())
    print(
        f"{res.n_images} images, {res.n_multi} with several components, {res.n_empty} without any: "
        f"{len(res.samples)} samples, {res.extra} extra (the paper reports 880 on DIS-TR)\nmanifest: {out}"
    )
    if missing:
        print(
            f"{missing} component SAM masks are not there yet: "
            f"dissam prepare-masks {args.split_dir} --sam SAM_CHECKPOINT --enrich"
        )
    return 0
