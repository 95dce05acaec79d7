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

import json
import os
from pathlib import Path

from dissam.errors import BoxError, DisSamError


def parse_box(text: str) -> list[float]:
    """``"x0,y0,x1,y1"`` (commas or spaces) -> four floats."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise BoxError(f"cannot parse box {text!r}: expected four numbers x0,y0,x1,y1") from exc
    if len(vals) != 4:
        raise BoxError(f"cannot parse box {text!r}: expected four numbers x0,y0,x1,y1, got {len(vals)}")
    return vals


def _entry_to_box(entry, where: str) -> list[float]:
    if isinstance(entry, (list, tuple)) and len(entry) == 4 and all(isinstance(v, (int, float)) for v in entry):
        return [float(v) for v in entry]
    if isinstance(entry, dict):
        if "box" in entry:
            return _entry_to_box(entry["box"], where)
        if entry.get("type") == "rectangle" and "data" in entry:
            return _entry_to_box(entry["data"], where)
        if "type" in entry:
            raise BoxError(f"{where}: prompt type {entry['type']!r} is not supported (only boxes/rectangles)")
    raise BoxError(f"{where}: cannot read a box from {entry!r}; use [x0, y0, x1, y1] or {{\"box\": [...]}}")


def load_prompts(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    """Read a prompts file (see module docstring) -> ``{key: [box, ...]}``."""
    p = Path(path)
    if not p.is_file():
        raise DisSamError(f"prompts file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DisSamError(f"prompts file {p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DisSamError(f"prompts file {p} must hold an object mapping image names to lists of boxes")
    out = {}
    for key, entries in data.items():
        if isinstance(entries, (list, tuple)) and len(entries) == 4 and all(isinstance(v, (int, float)) for v in entries):
            entries = [entries]  # a single bare box
        if not isinstance(entries, (list, tuple)):
            entries = [entries]
        out[str(key)] = [_entry_to_box(e, f"{p.name}[{key!r}]") for e in entries]
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
