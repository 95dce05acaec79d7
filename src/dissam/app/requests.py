"""The app's requests: bodies read within limits, parsed off the event loop, checked field by field.

Every check here runs **before** a request is queued for the model, and every refusal is a
:class:`~dissam.app.service.RequestError` (a 4xx JSON answer) whose message names the HTTP field as
the client sent it (``boxes[1][2]``, ``value``) and quotes the value as sent.

* :func:`read_body`: the body, cut off at the limit for its content type (``413``), within
  ``Limits.body_timeout_s`` (``408``); a client that goes away raises :class:`ClientGone`.
* :func:`parse_body` (run in a thread: a 32 MiB multipart body must not stall the event loop):
  ``application/json`` (at most ``MAX_JSON_BYTES``, nested at most ``MAX_JSON_DEPTH`` deep),
  ``multipart/form-data`` (at most ``MAX_FIELDS`` parts, one file, text fields of at most
  ``MAX_FIELD_BYTES``) or ``application/x-www-form-urlencoded``.
* :func:`read_fields`: each field through its reader in :data:`PREDICT_FIELDS` or
  :data:`IMAGE_FIELDS`; unknown fields are refused, naming the known ones. A new field is one reader
  and one entry in the table.
* :func:`check_boxes` (box geometry against the decoded image, in the caller's numbers),
  :func:`dissam.app.prompts.check_prompts` (boxes with clicks, the ``points`` field) and
  :func:`check_cost` (the per-request budget, pixels x objects).

Coordinates: boxes are XYXY pixels of the decoded image (EXIF orientation applied), ``(x1, y1)``
inclusive.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dissam import json_input
from dissam.app.prompts import check_box, read_points
from dissam.app.service import (
    THRESHOLD_MODES,
    CostTooHigh,
    Limits,
    RequestError,
    RequestTimeout,
    UploadTooLarge,
)

MAX_JSON_BYTES = 64 * 2**10
"""Largest JSON (or url-encoded) body: 16 boxes take a few hundred bytes."""
MAX_JSON_DEPTH = 8
MAX_FIELDS = 8
"""Most parts in a multipart body (fields and the file together), or fields in a JSON object."""
MAX_FIELD_BYTES = 64 * 2**10
"""Largest text field of a multipart body (``boxes`` as a JSON string)."""
MAX_PART_HEADER_BYTES = 8 * 2**10
MAX_NUMBER_TEXT = 64
"""Longest text accepted for a number in a form field (``value``)."""

_IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


class ClientGone(Exception):
    """The client disconnected; there is no one to answer (logged at INFO, nothing sent)."""


@dataclass
class Body:
    """A parsed request body: text (or JSON) ``fields`` and the uploaded ``image`` bytes, if any."""

    kind: str  # "json", "multipart" or "form"
    fields: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None


# ---------------------------------------------------------------------- reading
def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def body_limit(content_type: str, limits: Limits) -> int:
    """The most bytes a body of this content type may have."""
    return limits.max_upload_bytes if _media_type(content_type) == "multipart/form-data" else \
        min(MAX_JSON_BYTES, limits.max_upload_bytes)


def _too_large(n: int, limit: int, content_type: str) -> UploadTooLarge:
    what = "the upload" if _media_type(content_type) == "multipart/form-data" else "the request body"
    return UploadTooLarge(f"{what} is too large ({n / 2**20:.2f} MiB or more); the limit is "
                          f"{limit / 2**20:g} MiB" + ("" if what == "the upload" else
                                                      " (images go in a multipart 'image' field)"))


async def read_body(receive, headers, limits: Limits) -> bytes:
    """The whole request body, refused early when ``Content-Length`` is over the limit, cut off
    while reading when it is not announced, and given up after ``limits.body_timeout_s``."""
    ctype = headers.get("content-type", "")
    limit = body_limit(ctype, limits)
    announced = headers.get("content-length")
    if announced is not None:
        if not announced.strip().isdigit() or len(announced.strip()) > 18:
            raise RequestError(f"the Content-Length header must be a byte count, not {json_input.shorten(announced)}")
        if int(announced) > limit:
            raise _too_large(int(announced), limit, ctype)
    chunks, seen = [], 0
    deadline = time.monotonic() + limits.body_timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {limits.body_timeout_s:g} s "
                                 f"({seen / 2**20:.2f} MiB received)") from None
        if message["type"] == "http.disconnect":
            raise ClientGone(f"the client went away after {seen} bytes of the body")
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise _too_large(seen, limit, ctype)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# ---------------------------------------------------------------------- parsing (in a thread)
def parse_body(content_type: str, body: bytes) -> Body:
    """Parse a body read by :func:`read_body` (call from a worker thread, not the event loop)."""
    media = _media_type(content_type)
    if media == "application/json":
        data = _json(body, "the JSON body")
        if not isinstance(data, dict):
            raise RequestError(f"the JSON body must be an object of fields, not {json_input.kind(data)}")
        if len(data) > MAX_FIELDS:
            raise RequestError(f"the JSON body has {len(data)} fields; at most {MAX_FIELDS}")
        return Body("json", {str(k): v for k, v in data.items()})
    if media == "multipart/form-data":
        return _multipart(content_type, body)
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                                           max_num_fields=MAX_FIELDS)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(f"the url-encoded form is malformed ({exc}); at most {MAX_FIELDS} fields") from None
        fields: dict[str, Any] = {}
        for k, v in pairs:
            _add_field(fields, k, v)
        return Body("form", fields)
    raise RequestError("send multipart/form-data (with an 'image' file) or application/json, not "
                       f"{json_input.shorten(content_type or 'a body without Content-Type')}")


def _json(text: bytes | str, what: str) -> Any:
    try:
        return json_input.loads(text, max_depth=MAX_JSON_DEPTH, what=what)
    except json_input.JsonInputError as exc:
        raise RequestError(str(exc)) from None


def _add_field(fields: dict, name: str, value) -> None:
    if name in fields:
        raise RequestError(f"the field {json_input.shorten(name)} was sent twice; send each field once")
    fields[name] = value


def _multipart(content_type: str, body: bytes) -> Body:
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise RequestError("the multipart body has no boundary: Content-Type must be multipart/form-data; "
                           "boundary=... (let the HTTP client build it)")
    if len(boundary) > 70:
        raise RequestError("the multipart boundary is longer than 70 characters (RFC 2046)")
    parts: list[dict] = []
    current: dict = {}
    header_field, header_value = bytearray(), bytearray()

    def on_part_begin():
        nonlocal current
        if len(parts) >= MAX_FIELDS:
            raise RequestError(f"the multipart body has more than {MAX_FIELDS} parts; send only the image "
                               "and the fields the API takes")
        current = {"headers": {}, "data": bytearray(), "header_bytes": 0}
        parts.append(current)

    def on_header_field(data, start, end):
        header_field.extend(data[start:end])
        _count_header(end - start)

    def on_header_value(data, start, end):
        header_value.extend(data[start:end])
        _count_header(end - start)

    def _count_header(n):
        current["header_bytes"] += n
        if current["header_bytes"] > MAX_PART_HEADER_BYTES:
            raise RequestError(f"a multipart part has more than {MAX_PART_HEADER_BYTES // 1024} KiB of headers")

    def on_header_end():
        current["headers"][bytes(header_field).decode("latin-1").strip().lower()] = \
            bytes(header_value).decode("latin-1").strip()
        header_field.clear()
        header_value.clear()

    def on_headers_finished():
        disposition = current["headers"].get("content-disposition", "")
        kind, opts = parse_options_header(disposition)
        name = opts.get(b"name")
        if kind != b"form-data" or name is None:
            raise RequestError("every multipart part needs Content-Disposition: form-data; name=\"...\"")
        current["name"] = name.decode("utf-8", "replace")
        current["is_file"] = b"filename" in opts

    def on_part_data(data, start, end):
        current["data"].extend(data[start:end])
        if not current.get("is_file") and len(current["data"]) > MAX_FIELD_BYTES:
            raise RequestError(f"the field {json_input.shorten(current['name'])} is larger than "
                               f"{MAX_FIELD_BYTES // 1024} KiB")

    ended = []
    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_end": lambda: ended.append(True)})
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise RequestError(f"the multipart body is malformed ({exc}); let the HTTP client build it") from None
    if not ended:
        raise RequestError("the multipart body does not end with its closing boundary, or its boundary does not "
                           "match the Content-Type header; let the HTTP client build it")
    out = Body("multipart")
    for part in parts:
        name = part.get("name", "")
        if part.get("is_file"):
            if name != "image":
                raise RequestError(f"a file was sent in the field {json_input.shorten(name)}; the image goes in "
                                   "the field 'image'")
            if out.image is not None:
                raise RequestError("two files were sent in the field 'image'; send one image per request")
            out.image = bytes(part["data"])
            continue
        try:
            text = bytes(part["data"]).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(f"the field {json_input.shorten(name)} is not UTF-8 text") from None
        _add_field(out.fields, name, text)
    return out


# ---------------------------------------------------------------------- fields
def _image_id(raw, form: bool) -> str:
    if not isinstance(raw, str) or not _IMAGE_ID.match(raw):
        raise RequestError(f"image_id must be the 64-hex-digit id that /api/image returned, not "
                           f"{json_input.shorten(raw)}")
    return raw


def _boxes(raw, form: bool) -> list[list[float]]:
    if isinstance(raw, str):  # a form field: JSON text
        try:
            raw = json_input.loads(raw, max_depth=MAX_JSON_DEPTH, what="the text sent")
        except json_input.JsonInputError as exc:
            raise RequestError(f"boxes must be JSON, e.g. [[x0, y0, x1, y1]]: {exc}") from None
    if json_input.looks_like_box(raw):
        raw = [raw]  # one box, not in a list
    if not isinstance(raw, list):
        raise RequestError(f"boxes must be a list of [x0, y0, x1, y1] boxes (XYXY pixels of the image), not "
                           f"{json_input.shorten(raw)}")
    return raw  # checked against the limit and the image by check_boxes


def _threshold(raw, form: bool) -> str:
    if not isinstance(raw, str) or raw not in THRESHOLD_MODES:
        raise RequestError(f"threshold must be one of {', '.join(THRESHOLD_MODES)}, not {json_input.shorten(raw)}")
    return raw


def _value(raw, form: bool) -> float:
    if isinstance(raw, str):
        text = raw.strip()
        try:
            if len(text) > MAX_NUMBER_TEXT:
                raise ValueError
            v = float(text)
        except ValueError:
            raise RequestError(f"value (the binary threshold) must be a number, not {json_input.shorten(raw)}") from None
    else:
        try:
            v = json_input.number(raw, "value")
        except json_input.JsonInputError as exc:
            raise RequestError(str(exc)) from None
    if not (math.isfinite(v) and 0.0 < v < 1.0):
        raise RequestError(f"value (the binary threshold) must lie strictly between 0 and 1, not "
                           f"{json_input.shorten(raw)}")
    return v


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _flag(raw, form: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise RequestError(f"fg_estimation must be true or false, not {json_input.shorten(raw)}")


def _example(raw, form: bool) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= 200:
        raise RequestError(f"example must be the name of an example image, not {json_input.shorten(raw)}")
    return raw


def _points(raw, form: bool) -> list:
    return read_points(raw, form, MAX_JSON_DEPTH)


@dataclass(frozen=True)
class PredictRequest:
    """The fields of ``POST /api/predict`` (defaults as documented); ``boxes`` and ``points`` as
    sent (not yet checked against the image: :func:`check_boxes`,
    :func:`dissam.app.prompts.check_prompts`); ``points`` is ``None`` when not sent."""

    image_id: str | None = None
    boxes: list = field(default_factory=list)
    points: list | None = None
    threshold: str = "soft"
    value: float = 0.5
    fg_estimation: bool = True


@dataclass(frozen=True)
class ImageRequest:
    """The fields of ``POST /api/image`` besides the file."""

    example: str | None = None


PREDICT_FIELDS = {"image_id": _image_id, "boxes": _boxes, "points": _points, "threshold": _threshold,
                  "value": _value, "fg_estimation": _flag}
"""Field name -> reader ``(raw, from_form) -> value`` for ``POST /api/predict`` (besides the file)."""
IMAGE_FIELDS = {"example": _example}


def read_fields(body: Body, readers: dict, into):
    """``into`` (a dataclass instance of defaults) with each field of ``body`` read by its reader."""
    unknown = sorted(set(body.fields) - set(readers))
    if unknown:
        known = ", ".join(sorted(readers) + ["image (a file)"])
        raise RequestError(f"unknown field {json_input.shorten(unknown[0])}; this endpoint takes {known}")
    form = body.kind != "json"
    return replace(into, **{name: readers[name](raw, form) for name, raw in body.fields.items()})


# ---------------------------------------------------------------------- boxes and cost
def count_boxes(boxes: list, limits: Limits) -> int:
    """How many boxes; refuses none and more than ``limits.max_boxes`` before looking at any."""
    if len(boxes) == 0:
        raise RequestError("boxes is empty: draw at least one box")
    if len(boxes) > limits.max_boxes:
        raise RequestError(f"boxes has {len(boxes)} boxes: at most {limits.max_boxes} boxes per request")
    return len(boxes)


def check_boxes(boxes: list, width: int, height: int, limits: Limits) -> np.ndarray:
    """The sent ``boxes`` checked against a ``width x height`` image and clipped to it: ``N x 4``
    float64 XYXY. Messages quote each box as sent (``boxes[1] [599, 10, 900, 300]``)."""
    count_boxes(boxes, limits)
    return np.stack([check_box(raw, f"boxes[{i}]", width, height) for i, raw in enumerate(boxes)])


def check_cost(width: int, height: int, n_boxes: int, limits: Limits) -> None:
    """Refuse (``413``) a request whose cost, pixels x boxes, is over ``limits.max_cost``."""
    cost = width * height * n_boxes
    if cost > limits.max_cost:
        fits = max(0, limits.max_cost // max(1, width * height))
        raise CostTooHigh(
            f"this request would cost {cost / 1e6:.1f} megapixel-boxes ({n_boxes} box(es) on a {width}x{height} "
            f"image of {width * height / 1e6:.1f} megapixels); the limit is {limits.max_cost / 1e6:g} per request: "
            + (f"send at most {fits} box(es) per request and the rest in more requests" if fits else
               "downscale the image first"))
