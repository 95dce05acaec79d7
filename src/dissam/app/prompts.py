"""The app's clicks: the ``points`` field of ``POST /api/predict``, checked like the boxes.

``points`` is a list parallel to ``boxes``: ``points[i]`` holds the clicks of object ``i``, each
``[x, y]`` (label 1: on the object) or ``[x, y, label]`` (``1`` object, ``0`` background), in pixels
of the decoded image (EXIF orientation applied; x to the right, y down, the pixel in column 3, row 5
is ``(3, 5)``). ``boxes[i]`` may be ``null`` where ``points[i]`` is not empty (an object given by
clicks alone); with ``boxes`` left out, every object is clicks alone. Without ``points`` a request is
the box-only request it always was (``dissam.app.requests.check_boxes``).

Every refusal is a :class:`~dissam.app.service.RequestError` (400) naming the field as sent
(``points[1][0][2]``) and quoting the value: not a list, a label other than 1 or 0, a number that is
not finite or overflows, a point off the image, more clicks in the request than
``Limits.max_points`` (counted before any is read), an object with neither a box nor a click.
"""

from __future__ import annotations

import numpy as np

from dissam import json_input
from dissam.app.service import Limits, RequestError
from dissam.points import Prompt

__all__ = ["read_points", "count_objects", "check_box", "check_points", "check_prompts"]


def check_box(raw, where: str, width: int, height: int) -> np.ndarray:
    """One box as sent, checked against a ``width x height`` image and clipped to it: float64 ``(4,)``
    XYXY. Messages name ``where`` and quote the box as sent (``boxes[1] [599, 10, 900, 300]``)."""
    try:
        x0, y0, x1, y1 = json_input.box(raw, where)
    except json_input.JsonInputError as exc:
        raise RequestError(f"{exc} (XYXY pixels of the image)") from None
    sent = json_input.shorten(raw)
    if x1 <= x0 or y1 <= y0:
        raise RequestError(f"{where} {sent} is inverted or empty: a box is [x0, y0, x1, y1], two corners, with "
                           "x1 > x0 and y1 > y0 (not a width and a height)")
    if x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
        raise RequestError(f"{where} {sent} lies entirely outside the {width}x{height} image")
    c = [min(max(x0, 0.0), width - 1.0), min(max(y0, 0.0), height - 1.0),
         min(max(x1, 0.0), width - 1.0), min(max(y1, 0.0), height - 1.0)]
    if c[2] <= c[0] or c[3] <= c[1]:
        raise RequestError(f"{where} {sent} only touches the edge of the {width}x{height} image (pixels x "
                           f"0..{width - 1}, y 0..{height - 1}): it has no area inside it")
    return np.asarray(c, dtype=np.float64)


def read_points(raw, form: bool, max_depth: int = 8) -> list:
    """The ``points`` field as sent (JSON, or JSON text in a form field) -> a list with one entry per
    object (checked by :func:`check_prompts`)."""
    if isinstance(raw, str):  # a form field: JSON text
        try:
            raw = json_input.loads(raw, max_depth=max_depth, what="the text sent")
        except json_input.JsonInputError as exc:
            raise RequestError(f"points must be JSON, e.g. [[[x, y], [x, y, 0]]]: {exc}") from None
    if not isinstance(raw, list):
        raise RequestError("points must be a list with one list of clicks per box, e.g. [[[120, 80], [40, 30, 0]]] "
                           f"([x, y] on the object, [x, y, 0] not on it), not {json_input.shorten(raw)}")
    return raw


def count_objects(boxes: list, points: list | None, limits: Limits) -> int:
    """How many objects a request segments (boxes, or clicks alone); refuses none, more than
    ``limits.max_boxes``, and more clicks than ``limits.max_points``, before reading any of them."""
    n = len(boxes) if boxes or points is None else len(points)
    if n == 0:
        raise RequestError("boxes is empty: draw at least one box" if points is None else
                           "boxes and points are both empty: draw a box or click on the object")
    if n > limits.max_boxes:
        what = f"boxes has {n} boxes" if boxes else f"points has {n} objects"
        raise RequestError(f"{what}: at most {limits.max_boxes} boxes (objects) per request")
    if points is not None:
        clicks = sum(len(p) for p in points if isinstance(p, list))
        if clicks > limits.max_points:
            raise RequestError(f"points has {clicks} clicks: at most {limits.max_points} per request")
    return n


def check_points(raw, where: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray] | None:
    """One object's clicks checked against a ``width x height`` image -> float64 ``P x 2`` (x, y) and
    int64 ``(P,)`` labels, or ``None`` for ``[]``. A point lies on the image when
    ``-0.5 <= x < width - 0.5`` and ``-0.5 <= y < height - 0.5`` (it rounds to one of its pixels)."""
    if raw == []:
        return None
    if isinstance(raw, list) and len(raw) in (2, 3) and all(json_input.is_number(v) for v in raw):
        raise RequestError(f"{where} {json_input.shorten(raw)} is one point, not a list of clicks: points holds one "
                           f"list of clicks per box, e.g. [[{json_input.shorten(raw)}]]")
    try:
        coords, labels = json_input.points(raw, where)
    except json_input.JsonInputError as exc:
        raise RequestError(str(exc)) from None
    for j, (x, y) in enumerate(coords):
        if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
            raise RequestError(f"{where}[{j}] {json_input.shorten(raw[j])} lies outside the {width}x{height} image "
                               f"(pixels x 0..{width - 1}, y 0..{height - 1})")
    return np.asarray(coords, np.float64).reshape(-1, 2), np.asarray(labels, np.int64)


def check_prompts(boxes: list, points: list, width: int, height: int, limits: Limits) -> list[Prompt]:
    """``boxes`` and ``points`` as sent -> one :class:`~dissam.points.Prompt` per object (boxes
    checked and clipped as :func:`dissam.app.requests.check_boxes` does; XYXY, ``(x1, y1)``
    inclusive)."""
    count_objects(boxes, points, limits)
    if not boxes:
        boxes = [None] * len(points)
    if len(points) != len(boxes):
        raise RequestError(f"points has {len(points)} entries for {len(boxes)} boxes: give one list of clicks per "
                           "box ([] for a box without clicks; null in boxes for an object of clicks alone)")
    out = []
    for i, (raw_box, raw_points) in enumerate(zip(boxes, points)):
        clicks = check_points(raw_points, f"points[{i}]", width, height)
        if raw_box is None and clicks is None:
            raise RequestError(f"boxes[{i}] is null and points[{i}] is empty: give a box, clicks or both")
        box = None if raw_box is None else check_box(raw_box, f"boxes[{i}]", width, height)
        out.append(Prompt(box, *(clicks if clicks is not None else (None, None))))
    return out
