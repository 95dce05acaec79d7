"""The ``dissam`` command line. Each sub-command lives in ``dissam/commands/<name>.py`` and
defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules
import heavy libraries (torch, transformers) inside ``run`` so that ``dissam --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from dissam import __version__
from dissam.errors import DisSamError

# sub-command -> module, in the order they are listed in --help
COMMANDS = {
    "predict": "dissam.commands.predict",
    "app": "dissam.commands.app",
    "video": "dissam.commands.video",
    "eval": "dissam.commands.evaluate",
    "prepare-masks": "dissam.commands.prepare_masks",
    "enrich": "dissam.commands.enrich",
    "train": "dissam.commands.train",
    "synth": "dissam.commands.synth",
    "benchmark": "dissam.commands.benchmark",
    "clicks": "dissam.commands.clicks",
    "models": "dissam.commands.models",
    "convert": "dissam.commands.convert",
    "export": "dissam.commands.export",
    "info": "dissam.commands.info",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dissam",
        description="DIS-SAM: box-prompted, highly accurate dichotomous image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"dissam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except DisSamError as exc:
        print(f"dissam {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dissam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
