"""``dissam info``: versions of dissam and the libraries its results depend on."""

from __future__ import annotations

import argparse
import json

HELP = "print the versions of dissam and of the libraries its numbers depend on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from dissam.utils import library_versions

    versions = library_versions()
    if args.json:
        print(json.dumps(versions, indent=1))
    else:
        for k, v in versions.items():
            print(f"{k:>16}: {v}")
    return 0
