"""The Starlette application of ``dissam app``: the page, the JSON API, one worker.

All model work runs on **one worker thread** fed by a bounded queue: the process holds one model
instance, requests run one at a time in arrival order, and when ``Limits.queue_size`` requests are
already waiting a new one is answered ``503`` at once instead of piling up. Request bodies are
counted as they arrive and cut off at ``Limits.max_upload_bytes`` (``413``). Every error becomes a
JSON ``{"error": message}`` with a 4xx/5xx status; the server keeps serving.

Routes: ``GET /`` (the page), ``GET /static/...``, ``GET /api/info``,
``POST /api/image``, ``POST /api/predict``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dissam.app.service import Busy, Limits, RequestError, SegmentationService, UploadTooLarge
from dissam.errors import DisSamError

log = logging.getLogger("dissam.app")

STATIC = Path(__file__).parent / "static"
# the page loads nothing from elsewhere; the browser enforces it
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")


class Worker:
    """One thread running submitted calls in order, behind a queue of at most ``queue_size``."""

    def __init__(self, queue_size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self._thread = threading.Thread(target=self._loop, name="dissam-app-worker", daemon=True)
        self._thread.start()

    def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._queue.put_nowait((fn, args, kwargs, fut, time.perf_counter()))
        except queue.Full:
            raise Busy(f"the server is busy ({self._queue.maxsize} requests are waiting); try again in a moment") \
                from None
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, kwargs, fut, queued_at = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
                if isinstance(result, dict) and isinstance(result.get("timings"), dict):
                    result["timings"]["queue_ms"] = round((time.perf_counter() - queued_at) * 1e3
                                                          - result["timings"].get("total_ms", 0.0), 1)
                fut.set_result(result)
            except BaseException as exc:  # delivered to the request that caused it; the loop goes on
                fut.set_exception(exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (by Content-Length up front, and by
    counting while reading, for uploads that do not announce their length)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _error(self._too_large(int(length)))(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large(seen)
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self, n: int) -> UploadTooLarge:
        return UploadTooLarge(f"the upload is too large ({n / 2**20:.1f} MiB or more); the limit is "
                              f"{self.max_bytes / 2**20:g} MiB")


class SecurityHeaders:
    """ASGI middleware: a Content-Security-Policy that lets the page load nothing from elsewhere."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"content-security-policy", CSP.encode()),
                                                  (b"x-content-type-options", b"nosniff"),
                                                  (b"referrer-policy", b"no-referrer")]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, DisSamError):
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))
    log.exception("request failed", exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); the server keeps running"},
                        status_code=500)


def _parse_boxes(raw) -> list[list[float]]:
    """``[[x0, y0, x1, y1], ...]`` (or one flat box) from a JSON string or an already parsed list."""
    try:
        boxes = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise RequestError(f"boxes must be JSON, e.g. [[x0, y0, x1, y1]]: {exc}") from None
    if isinstance(boxes, list) and len(boxes) == 4 and all(isinstance(v, (int, float)) for v in boxes):
        boxes = [boxes]
    ok = isinstance(boxes, list) and all(
        isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
        for b in boxes)
    if not ok:
        raise RequestError("boxes must be a list of [x0, y0, x1, y1] numbers (XYXY pixels of the image)")
    return [[float(v) for v in b] for b in boxes]


def _flag(raw, default: bool = True) -> bool:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() not in ("0", "false", "no", "off", "")


def create_app(predictor, *, limits: Limits | None = None, models: dict | None = None,
               examples: dict[str, Path] | None = None) -> Starlette:
    """The ASGI application around one ``predictor`` (a :class:`~dissam.predictor.DisSamPredictor`).

    ``examples`` maps names to image files the page offers (the client sends only the name).
    """
    limits = limits or Limits()
    service = SegmentationService(predictor, limits=limits, models=models, examples=examples)
    worker = Worker(limits.queue_size)

    async def run(fn, *args, **kwargs):
        return await asyncio.wrap_future(worker.submit(fn, *args, **kwargs))

    async def form_or_json(request: Request) -> tuple[dict, bytes | None]:
        """Fields and the uploaded ``image`` bytes (if any) of a multipart or JSON request."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(f"the request body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise RequestError("the JSON body must be an object")
            return body, None
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise RequestError("send multipart/form-data (with an 'image' file) or application/json")
        async with request.form(max_files=1, max_fields=16) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            upload = form.get("image")
            data = await upload.read() if upload is not None and not isinstance(upload, str) else None
        return fields, data

    async def index(request: Request):
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    async def info(request: Request):
        return JSONResponse(service.info())

    async def image(request: Request):
        try:
            fields, data = await form_or_json(request)
            if data is not None:
                out = await run(service.add_image, data)
            elif fields.get("example"):
                out = await run(service.add_example, str(fields["example"]))
            else:
                raise RequestError("send an image file in the 'image' field (or an 'example' name)")
            return JSONResponse(out)
        except Exception as exc:
            return _error(exc)

    async def predict(request: Request):
        try:
            fields, data = await form_or_json(request)
            image_id = fields.get("image_id")
            if data is not None:
                image_id = (await run(service.add_image, data, preview=False))["image_id"]
            if not image_id:
                raise RequestError("send the image (multipart 'image') or the image_id of an uploaded image")
            try:
                value = float(fields.get("value", 0.5))
            except (TypeError, ValueError):
                raise RequestError("value (the binary threshold) must be a number") from None
            out = await run(service.predict, str(image_id), _parse_boxes(fields.get("boxes", "[]")),
                            threshold=str(fields.get("threshold", "soft")), value=value,
                            fg_estimation=_flag(fields.get("fg_estimation")))
            return JSONResponse(out)
        except Exception as exc:
            return _error(exc)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/image", image, methods=["POST"]),
            Route("/api/predict", predict, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders), Middleware(BodyLimit, max_bytes=limits.max_upload_bytes)],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.worker = worker
    return app
