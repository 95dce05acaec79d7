"""The Starlette application of ``dissam app``: the page, the JSON API, one worker.

All model work runs on **one worker thread** (:mod:`dissam.app.worker`) fed by a bounded queue: the
process holds one model instance, requests run one at a time in arrival order, and when
``Limits.queue_size`` requests are already waiting a new one is answered ``503`` at once.

Before a request is queued it has been read within its size and time limits, parsed in a thread
(off the event loop, which keeps answering everyone else), and checked field by field, for the
cost budget and against the kept image (:mod:`dissam.app.requests`); the ``Host`` and ``Origin``
checks (:mod:`dissam.app.security`) ran before that. A request holds its image from admission until
it finishes, so no other request can evict it; a request whose client goes away is dropped from the
queue, or stopped between boxes if it is running.

Every answer is JSON, errors ``{"error": message}`` with a 4xx/5xx status (404 and 405 included).
Refused input is logged at INFO (refused hosts and origins at WARNING, a full queue only at DEBUG), a
client that went away at INFO, each in one line; only an unexpected failure is logged at ERROR with
its traceback, and answered 500.

Routes: ``GET /`` (the page), ``GET /static/...``, ``GET /api/info``,
``POST /api/image``, ``POST /api/predict``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dissam.app import requests as rq
from dissam.app.prompts import check_prompts, count_objects
from dissam.app.security import OriginGuard, OriginPolicy, SecurityHeaders, content_security_policy
from dissam.app.service import Abandoned, Busy, Limits, SegmentationService, upload_size
from dissam.app.worker import Worker
from dissam.errors import DisSamError

log = logging.getLogger("dissam.app")

STATIC = Path(__file__).parent / "static"


def _error(exc: BaseException, request: Request | None = None) -> JSONResponse:
    """The JSON answer to ``exc``: its status for a refusal (logged at INFO, one line), 500 for
    anything else (logged at ERROR with the traceback: a fault of the server)."""
    where = f"{request.method} {request.url.path}" if request is not None else "request"
    if isinstance(exc, DisSamError):
        status = getattr(exc, "status", 400)
        # a full queue is back-pressure, not bad input: polite clients retry, and each retry is not news
        log.log(logging.DEBUG if status == 503 else logging.INFO, "%s refused (%d): %s", where, status, exc)
        return JSONResponse({"error": str(exc)}, status_code=status)
    log.error("%s failed", where, exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); the server keeps running"},
                        status_code=500)


async def _wait_disconnect(receive) -> None:
    """Return when the client disconnects (call only after the whole body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(predictor, *, limits: Limits | None = None, models: dict | None = None,
               examples: dict[str, Path] | None = None, host: str = "127.0.0.1",
               allow_hosts: tuple[str, ...] | list[str] = (), allow_origins: tuple[str, ...] | list[str] = (),
               ) -> Starlette:
    """The ASGI application around one ``predictor`` (a :class:`~dissam.predictor.DisSamPredictor`).

    Args:
        limits: request limits (:class:`~dissam.app.service.Limits`).
        models: what the page shows about the models (:func:`~dissam.app.service.describe_models`).
        examples: names -> image files the page offers (the client sends only the name).
        host: the address the server listens on; requests must name it (or, for a loopback address,
            ``localhost``/``127.0.0.1``/``[::1]``) in ``Host``: :mod:`dissam.app.security`.
        allow_hosts: more names the server answers to (``--allow-host``).
        allow_origins: origins of other pages that may call the API (``--allow-origin``).
    """
    limits = limits or Limits()
    # python-multipart logs each malformed body at WARNING; the app answers and logs it itself, once
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    service = SegmentationService(predictor, limits=limits, models=models, examples=examples)
    worker = Worker(limits.queue_size)
    receiving = asyncio.Semaphore(max(1, limits.max_receiving))

    async def run_job(request: Request, fn, on_drop=None):
        """Queue ``fn(cancel)``; its result, unless the client goes away first (then the job is
        dropped from the queue, or asked to stop, and :class:`~dissam.app.requests.ClientGone` raised)."""
        job = worker.submit(fn, on_drop=on_drop)
        result = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(_wait_disconnect(request.receive))
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
            if result.done():
                return result.result()
            worker.abandon(job)
            result.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody reads it
            raise rq.ClientGone("the client went away while its request " +
                                ("was running" if job.future.running() else "waited in the queue"))
        finally:
            gone.cancel()

    async def read(request: Request) -> rq.Body:
        """The parsed body (read within the limits, parsed in a thread)."""
        if receiving.locked():
            raise Busy(f"the server is busy receiving other uploads (at most {limits.max_receiving} at once); "
                       "try again in a moment")
        async with receiving:  # bodies in memory, raw or being parsed, are bounded by max_receiving
            body = await rq.read_body(request.receive, request.headers, limits)
            return await run_in_threadpool(rq.parse_body, request.headers.get("content-type", ""), body)

    async def handle(request: Request, work):
        try:
            result = await work(request)
            # tens of MB of base64 PNGs for a large image: serialised off the event loop
            body = await run_in_threadpool(json.dumps, result, separators=(",", ":"))
            return Response(body, media_type="application/json")
        except rq.ClientGone as exc:
            log.info("%s %s: %s", request.method, request.url.path, exc)
            return Response(status_code=499)  # never delivered: the client is gone
        except Abandoned as exc:
            log.info("%s %s: %s", request.method, request.url.path, exc)
            return Response(status_code=499)
        except Exception as exc:
            return _error(exc, request)

    async def index(request: Request):
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    async def info(request: Request):
        return JSONResponse(service.info())

    async def image_work(request: Request) -> dict:
        body = await read(request)
        req = rq.read_fields(body, rq.IMAGE_FIELDS, rq.ImageRequest())
        if body.image is not None:
            data = body.image
            await run_in_threadpool(upload_size, data, limits.max_pixels)  # refused before it is queued
            return await run_job(request, lambda cancel: service.add_image(data, lease=True))
        if req.example:
            return await run_job(request, lambda cancel: service.add_example(req.example, lease=True))
        raise rq.RequestError("send an image file in the 'image' field (or an 'example' name)")

    async def predict_work(request: Request) -> dict:
        body = await read(request)
        req = rq.read_fields(body, rq.PREDICT_FIELDS, rq.PredictRequest())
        options = {"threshold": req.threshold, "value": req.value, "fg_estimation": req.fg_estimation}
        n = count_objects(req.boxes, req.points, limits)

        def objects(w: int, h: int) -> dict:
            """The boxes, or with clicks the prompts, checked against the image (service.predict's args)."""
            if req.points is None:
                return {"boxes": rq.check_boxes(req.boxes, w, h, limits)}
            return {"boxes": None, "prompts": check_prompts(req.boxes, req.points, w, h, limits)}

        if body.image is not None:  # one request: the image and the boxes
            data = body.image

            def sizes():
                w, h = upload_size(data, limits.max_pixels)
                rq.check_cost(w, h, n, limits)
                return hashlib.sha256(data).hexdigest()

            image_id = await run_in_threadpool(sizes)

            def one_shot(cancel):
                try:
                    up = service.add_image(data, preview=False, hold=True, image_id=image_id)
                    checked = objects(up["width"], up["height"])
                    return service.predict(image_id, cancel=cancel, **checked, **options)
                finally:
                    service.release(image_id)

            return await run_job(request, one_shot)
        if not req.image_id:
            raise rq.RequestError("send the image (multipart 'image') or the image_id of an uploaded image")
        image_id = req.image_id
        w, h = service.hold(image_id)  # from here until the job ends, the image cannot be evicted
        try:
            rq.check_cost(w, h, n, limits)
            checked = objects(w, h)
        except BaseException:
            service.release(image_id)
            raise

        def two_step(cancel):
            try:
                return service.predict(image_id, cancel=cancel, **checked, **options)
            finally:
                service.release(image_id)

        try:
            return await run_job(request, two_step, on_drop=lambda: service.release(image_id))
        except Busy:
            service.release(image_id)
            raise

    async def image(request: Request):
        return await handle(request, image_work)

    async def predict(request: Request):
        return await handle(request, predict_work)

    async def http_error(request: Request, exc: HTTPException):
        message = {404: f"no such page or endpoint: {request.url.path[:200]}",
                   405: f"{request.method} is not allowed on {request.url.path[:200]}"
                        + (f"; use {exc.headers.get('Allow')}" if exc.headers and exc.headers.get("Allow") else "")}
        log.info("%s %s refused (%d)", request.method, request.url.path[:200], exc.status_code)
        return JSONResponse({"error": message.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code,
                            headers=exc.headers)

    async def server_error(request: Request, exc: Exception):
        return _error(exc, request)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    middleware = [Middleware(SecurityHeaders, csp=content_security_policy(allow_origins)),
                  Middleware(OriginGuard, policy=OriginPolicy(host, allow_hosts, allow_origins))]
    if allow_origins:  # CORS answers, so that the allowed pages' scripts can read the results
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(allow_origins), allow_methods=["GET", "POST"],
                                     allow_headers=["content-type"], max_age=600))
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/image", image, methods=["POST"]),
            Route("/api/predict", predict, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.worker = worker
    return app
