"""The ``dissam`` command line. Each sub-command lives in ``dissam/commands/<name>.py`` and
defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules
import heavy libraries (torch, transformers) inside ``run`` so that ``dissam --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import sys
import threading

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``only``: just that sub-command's (what :func:`main` builds when the
    command line names one, so that running a command imports no other command's module)."""
    parser = argparse.ArgumentParser(
        prog="dissam",
        description="DIS-SAM: box-prompted, highly accurate dichotomous image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"dissam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if (only is not None and name != only) or importlib.util.find_spec(module_name) is None:
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl+C's KeyboardInterrupt, so that a command stops the
    same way (its ``finally`` blocks run, temporary files are removed, no half-written output)."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated()


def _named_command(argv: list[str]) -> str | None:
    """The sub-command ``argv`` runs (its first word that is not a global option), or ``None`` (no
    command, ``--help``, ``--version`` or an unknown word: the full parser answers those)."""
    for word in argv:
        if word in ("-v", "--verbose"):
            continue
        return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a command; exit status 0 (done), 1 (an error, or some inputs failed), 2 (bad usage),
    130 (interrupted by Ctrl+C / SIGINT), 143 (terminated by SIGTERM)."""
    parser = build_parser(_named_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    in_main = threading.current_thread() is threading.main_thread()  # where signal handlers live
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        return int(args._run(args) or 0)
    except DisSamError as exc:
        print(f"dissam {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"dissam {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print(f"dissam {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
