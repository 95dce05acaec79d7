"""``dissam app``: a local web page to draw boxes and download masks and cut-outs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dissam.app.security import is_loopback
from dissam.commands.weights import add_runtime_arguments, add_weight_arguments, predictor_from_args

__all__ = ["add_arguments", "build", "run", "is_loopback"]

HELP = "a local web page: upload an image, draw boxes, download masks and halo-free cut-outs"
DESCRIPTION = """\
Start a web page (and a JSON API) on this machine: upload an image or pick an example, drag boxes
with the mouse, and see and download the mask, the soft map and an RGBA cut-out. The SAM image
embedding is kept per image, so a new box on the same image runs only the decoder and the refiner.

Without --sam / --refiner it starts on the built-in models (the bundled U²-Netp stage 1 and the
built-in refiner) and says so on the page. It listens on 127.0.0.1 unless --host says otherwise. Needs the
optional extra: pip install 'dissam[app]'. docs/app.md documents the page, the API and the limits.

It answers only requests that name it in Host (the --host address; with a loopback address also
localhost, 127.0.0.1 and [::1]; --allow-host adds names) and refuses state-changing requests sent by
pages of other origins (CSRF); --allow-origin lets a given page call the API on purpose. Uploads are
decoded only as PNG, JPEG, TIFF, WebP, BMP or GIF (first frame), whatever DISSAM_IMAGE_FORMATS says.
"""

log = logging.getLogger("dissam.app")

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples" / "images"  # present in a source checkout


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_weight_arguments(p)
    add_runtime_arguments(p)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-upload-mb", type=float, default=32, help="largest upload in MiB (default 32)")
    p.add_argument("--max-megapixels", type=float, default=40, help="largest image in megapixels (default 40)")
    p.add_argument("--max-megapixel-boxes", type=float, default=64,
                   help="the most one predict request may cost, in megapixels x boxes (default 64: 5 boxes on a "
                        "12 MP photo); over it the answer is 413")
    p.add_argument("--queue-size", type=int, default=8, help="requests waiting before 'busy' answers (default 8)")
    p.add_argument("--max-points", type=int, default=64,
                   help="clicks (point prompts) one predict request may carry, all objects together (default 64)")
    p.add_argument("--body-timeout", type=float, default=60,
                   help="seconds a request body may take to arrive (default 60; slower uploads get 408)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages of ORIGIN (e.g. https://tools.example.org) call the API and frame the page "
                        "(repeatable; default: only the app's own page)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (a reverse proxy's or this machine's name; "
                        "repeatable)")
    p.add_argument("--examples", default=None,
                   help="folder of example images offered on the page (default: the repository's examples/images)")


def build(args: argparse.Namespace):
    """The ASGI app for ``args`` (the model loaded once); separate from serving, for tests."""
    from dissam.errors import DisSamError

    try:
        from dissam.app.server import create_app
    except ImportError as exc:
        raise DisSamError(f"dissam app needs the optional extra: pip install 'dissam[app]' ({exc})") from None
    from dissam.app.service import Limits, describe_models
    from dissam.io import list_images

    for origin in args.allow_origin:  # checked before the model is loaded
        if not origin.startswith(("http://", "https://")) or origin.rstrip("/").count("/") != 2:
            raise DisSamError(f"--allow-origin {origin!r}: give an origin such as https://tools.example.org "
                              "(scheme, host and optional port; no path)")
    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-megapixels", args.max_megapixels),
                        ("--max-megapixel-boxes", args.max_megapixel_boxes), ("--body-timeout", args.body_timeout)):
        if not 0 < value < float("inf"):
            raise DisSamError(f"{flag} must be a positive number, not {value}")
    for flag, count in (("--queue-size", args.queue_size), ("--max-points", args.max_points)):
        if count < 1:
            raise DisSamError(f"{flag} must be at least 1, not {count}")
    predictor = predictor_from_args(args, device=None if args.device == "auto" else args.device,
                                    backend=args.backend, precision=args.precision)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6),
                    max_cost=int(args.max_megapixel_boxes * 1e6), queue_size=args.queue_size,
                    body_timeout_s=args.body_timeout, max_points=args.max_points)
    folder = Path(args.examples) if args.examples else EXAMPLES_DIR
    if args.examples and not folder.is_dir():
        raise DisSamError(f"--examples {folder}: not a folder")
    examples = {p.stem: p for p in list_images(folder)} if folder.is_dir() else {}
    models = describe_models(predictor, sam=args.sam, refiner=args.refiner)
    return create_app(predictor, limits=limits, models=models, examples=examples, host=args.host,
                      allow_hosts=args.allow_host, allow_origins=args.allow_origin)


def run(args: argparse.Namespace) -> int:
    from dissam.errors import DisSamError

    if not is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this address can use the app and the machine's "
                    "compute; there is no login. Use --host 127.0.0.1 unless you mean it.", args.host)
    try:
        import uvicorn
    except ImportError:
        raise DisSamError("dissam app needs the optional extra: pip install 'dissam[app]' (uvicorn)") from None
    app = build(args)
    print(f"dissam app: open http://{args.host}:{args.port}/ (Ctrl+C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
