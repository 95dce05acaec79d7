"""Box prompts from the command line and from prompt files.

``--box x0,y0,x1,y1`` (repeatable) applies to every input image. A prompts file gives boxes per image,
keyed by file name (``"cat.jpg"``), stem (``"cat"``) or the path as given; each value is a list of
entries, and an entry is any of:

* ``[x0, y0, x1, y1]`` — a plain box (in ``--box-format``, XYXY by default);
* ``{"box": [x0, y0, x1, y1]}`` — the same as an object (other keys ignored);
* ``{"type": "rectangle", "data": [x0, y0, x1, y1], "label": 1}`` — rembg-style SAM prompts
  (entries of other types, such as points, are rejected with a clear error).

Example::

    {"cat.jpg": [[10, 20, 200, 220]],
     "tree": [{"box": [0, 0, 50, 80]}, {"type": "rectangle", "data": [60, 0, 120, 90], "label": 1}]}
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from dissam import json_input
from dissam.errors import BoxError, DisSamError


def parse_box(text: str) -> list[float]:
    """``"x0,y0,x1,y1"`` (commas or spaces) -> four finite floats."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise BoxError(f"cannot parse box {json_input.shorten_text(text)!r}: expected four numbers x0,y0,x1,y1") from exc
    if len(vals) != 4:
        raise BoxError(f"cannot parse box {json_input.shorten_text(text)!r}: expected four numbers x0,y0,x1,y1, "
                       f"got {len(vals)}")
    for part, v in zip(parts, vals):
        if not math.isfinite(v):
            raise BoxError(f"cannot use box {json_input.shorten_text(text)!r}: {json_input.shorten_text(part)} "
                           "is not a finite number")
    return vals


def _entry_to_box(entry, where: str) -> list[float]:
    """One prompts-file entry (see the module docstring) -> ``[x0, y0, x1, y1]``; ``where`` names
    the entry in messages (file and keys, e.g. ``p.json["cat"][1]``)."""
    if isinstance(entry, (list, tuple)):
        try:
            return json_input.box(entry, where)
        except json_input.JsonInputError as exc:
            raise BoxError(str(exc)) from None
    if isinstance(entry, dict):
        if "box" in entry:
            return _entry_to_box(entry["box"], f'{where}["box"]')
        if entry.get("type") == "rectangle" and "data" in entry:
            return _entry_to_box(entry["data"], f'{where}["data"]')
        if "type" in entry:
            raise BoxError(f"{where}: prompt type {json_input.shorten(entry['type'])} is not supported "
                           "(only boxes/rectangles)")
    raise BoxError(f"{where}: cannot read a box from {json_input.shorten(entry)}; use [x0, y0, x1, y1] or "
                   '{"box": [...]}')


def load_prompts(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    """Read a prompts file (see module docstring) -> ``{key: [box, ...]}``.

    Raises :class:`~dissam.errors.DisSamError` (:class:`~dissam.errors.BoxError` for an entry) naming
    the file and the entry for anything unusable: not JSON, nested deeper than
    :data:`dissam.json_input.MAX_DEPTH`, a number that is not finite or has more than
    :data:`dissam.json_input.MAX_INT_DIGITS` digits, a value of the wrong type."""
    p = Path(path)
    if not p.is_file():
        raise DisSamError(f"prompts file not found: {p}")
    try:
        data = json_input.loads(p.read_bytes(), what=f"prompts file {p}")
    except json_input.JsonInputError as exc:
        raise DisSamError(str(exc)) from None
    except OSError as exc:
        raise DisSamError(f"cannot read prompts file {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise DisSamError(f"prompts file {p} must hold an object mapping image names to lists of boxes, "
                          f"not {json_input.kind(data)}")
    out = {}
    for key, entries in data.items():
        where = f"prompts file {p}, entry [{json_input.shorten(key)}]"
        if json_input.looks_like_box(entries) or not isinstance(entries, (list, tuple)):
            out[str(key)] = [_entry_to_box(entries, where)]  # a single entry, not in a list
        else:
            out[str(key)] = [_entry_to_box(e, f"{where}[{i}]") for i, e in enumerate(entries)]
    return out


def boxes_for_image(image_path: Path, prompts: dict[str, list[list[float]]] | None,
                    cli_boxes: list[list[float]] | None) -> list[list[float]]:
    """Boxes for one image: the prompts-file entry (by path, name or stem) plus any ``--box``."""
    boxes: list[list[float]] = []
    if prompts:
        for key in (str(image_path), image_path.name, image_path.stem):
            if key in prompts:
                boxes.extend(prompts[key])
                break
    if cli_boxes:
        boxes.extend(cli_boxes)
    return boxes
