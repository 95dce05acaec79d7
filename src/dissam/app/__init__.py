"""``dissam app``: a local web page to draw boxes and get masks and cut-outs (optional extra
``dissam[app]``: starlette, uvicorn, python-multipart).

* :mod:`dissam.app.service`: the work, without HTTP: decoding uploads within limits, one
  predictor whose per-image state (the SAM embedding) is kept per image, results as PNGs.
* :mod:`dissam.app.server`: the Starlette application: the page, the JSON API, one worker thread
  behind a bounded queue (:mod:`dissam.app.worker`).
* :mod:`dissam.app.requests`: bodies read within limits, parsed off the event loop, checked field by
  field, the cost budget.
* :mod:`dissam.app.security`: the ``Host`` and ``Origin`` checks and the page's security headers.
* ``static/``: the page (plain HTML, CSS and JavaScript; nothing is fetched from the internet).

The repository's app documentation describes the page, the API and the limits.
"""

from __future__ import annotations

__all__ = ["create_app", "SegmentationService", "Limits"]


def __getattr__(name: str):  # the extra's imports happen only when the app is used
    if name == "create_app":
        from dissam.app.server import create_app

        return create_app
    if name in ("SegmentationService", "Limits"):
        from dissam.app import service

        return getattr(service, name)
    raise AttributeError(name)
