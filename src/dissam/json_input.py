"""JSON from people and programs dissam does not control: bounded parsing and checked values.

Used by the prompts files of ``dissam predict`` (:mod:`dissam.prompts`) and by the app's requests
(:mod:`dissam.app.requests`), so both refuse the same things with the same kind of message:

* nesting deeper than ``max_depth`` is refused from a scan of the text, before the parser recurses
  (``json.loads`` would raise ``RecursionError`` near a thousand levels, after using the stack);
* numbers that cannot be used are kept as :class:`Unusable` (with the text as sent) instead of
  becoming ``inf``, ``nan`` or a 400-digit ``int`` that overflows on the first conversion to float;
  :func:`number` then reports them with the place they were found;
* every message names the place as the caller wrote it (``boxes[0][2]``, ``prompts.json["cat"][1]``)
  and quotes the value as sent, shortened.

The value readers (:func:`number`, :func:`box`, :func:`point`, :func:`points`) are where a kind of
prompt gets its reader once, for both the prompts files and the app.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from dissam.errors import DisSamError

MAX_DEPTH = 32
"""Default nesting limit: a prompts file or request needs 4 levels (object, list, entry, box)."""

MAX_POINTS = 1000
"""The most clicks (points) one object may have, in a prompts file, on the command line or in a request."""

MAX_INT_DIGITS = 20
"""Integers with more digits than this are :class:`Unusable` (no coordinate or setting needs them)."""

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class JsonInputError(DisSamError, ValueError):
    """JSON that cannot be used: not JSON, nested too deep, or a value of the wrong kind."""


class Unusable:
    """A number from the JSON text that has no finite float value in range (``1e400``, ``NaN``,
    ``Infinity``, a 400-digit integer); ``text`` is what was sent."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return shorten_text(self.text)


def _parse_int(text: str):
    return Unusable(text) if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else Unusable(text)


def check_depth(text: str, max_depth: int = MAX_DEPTH, what: str = "the JSON") -> None:
    """Refuse ``text`` if its arrays and objects nest deeper than ``max_depth`` (strings skipped)."""
    depth = 0
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonInputError(f"{what} is nested deeper than {max_depth} levels; nothing dissam reads "
                                     "needs more than a few")
        elif tok in "]}":
            depth -= 1


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, what: str = "the JSON") -> Any:
    """``json.loads`` with a depth limit, unusable numbers kept as :class:`Unusable`, and every
    failure a :class:`JsonInputError` whose message starts with ``what``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonInputError(f"{what} is not UTF-8 text ({exc})") from None
    check_depth(text, max_depth, what)
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=Unusable)
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:  # a safety net: check_depth refuses deep nesting first
        raise JsonInputError(f"{what} is nested too deeply") from None


def shorten_text(text: str, limit: int = 40) -> str:
    if len(text) <= limit:
        return text
    digits = sum(c.isdigit() for c in text)
    size = f"{digits} digits" if digits > limit else f"{len(text)} characters"
    return f"{text[:limit // 2]}...({size})"


def shorten(value: Any, limit: int = 80) -> str:
    """What was sent, as JSON-like text, cut to about ``limit`` characters for a message."""
    if isinstance(value, Unusable):
        return shorten_text(value.text)
    try:
        text = json.dumps(value, default=repr, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text)} characters)"
    return text


def kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float, Unusable)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def is_number(value: Any) -> bool:
    """A JSON number (a usable one or :class:`Unusable`), not ``true``/``false``."""
    return isinstance(value, (int, float, Unusable)) and not isinstance(value, bool)


def number(value: Any, where: str) -> float:
    """A finite float from a JSON value, or a :class:`JsonInputError` naming ``where``."""
    if isinstance(value, Unusable):
        raise JsonInputError(f"{where} = {shorten_text(value.text)} is not a finite number in range")
    if not is_number(value):
        raise JsonInputError(f"{where} must be a number, not {kind(value)} ({shorten(value)})")
    out = float(value)
    if not math.isfinite(out):  # a float from Python rather than from JSON text
        raise JsonInputError(f"{where} = {value!r} is not a finite number")
    return out


def box(value: Any, where: str) -> list[float]:
    """``[x0, y0, x1, y1]`` as four finite floats (a list or tuple of four numbers), else a
    :class:`JsonInputError` naming ``where`` and quoting the value as sent."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise JsonInputError(f"{where} must be a box [x0, y0, x1, y1] (four numbers), not {shorten(value)}")
    return [number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def looks_like_box(value: Any) -> bool:
    """Four numbers in a list: one bare box where a list of boxes was expected."""
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(is_number(v) for v in value)


def label(value: Any, where: str) -> int:
    """A point label, ``1`` (on the object) or ``0`` (not on the object), else a :class:`JsonInputError`."""
    if not is_number(value) or isinstance(value, Unusable) or value not in (0, 1):
        raise JsonInputError(f"{where} must be 1 (object) or 0 (background), not {shorten(value)}")
    return int(value)


def point(value: Any, where: str) -> tuple[float, float, int]:
    """``[x, y]`` (label 1) or ``[x, y, label]`` -> ``(x, y, label)`` with finite x, y and a label of 1
    or 0, else a :class:`JsonInputError` naming ``where`` and quoting the value as sent."""
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise JsonInputError(f"{where} must be a point [x, y] or [x, y, label] (label 1 = object, "
                             f"0 = background), not {shorten(value)}")
    x, y = (number(v, f"{where}[{i}]") for i, v in enumerate(value[:2]))
    return x, y, (label(value[2], f"{where}[2]") if len(value) == 3 else 1)


def points(value: Any, where: str, max_points: int = MAX_POINTS) -> tuple[list[list[float]], list[int]]:
    """A non-empty list of at most ``max_points`` points (:func:`point`) -> ``(coords, labels)``:
    ``P x 2`` ``[x, y]`` floats and ``P`` labels."""
    if not isinstance(value, (list, tuple)) or not value:
        raise JsonInputError(f"{where} must be a non-empty list of points [x, y] or [x, y, label], "
                             f"not {shorten(value)}")
    if len(value) > max_points:
        raise JsonInputError(f"{where} has {len(value)} points; at most {max_points} per object")
    read = [point(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return [[x, y] for x, y, _ in read], [lab for _, _, lab in read]
