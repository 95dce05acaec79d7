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

Files with clicks (points) are read by :func:`load_prompt_file` (schema: :data:`POINT_SCHEMA`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from dissam import json_input
from dissam.errors import BoxError, DisSamError, PointError
from dissam.points import Prompt, as_points, make_prompt


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


def _read_prompts_json(path: str | os.PathLike, what: str) -> tuple[Path, dict]:
    """The file's top-level JSON object, read within :mod:`dissam.json_input`'s bounds; ``what`` names
    the lists it maps image names to, for the error."""
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
        raise DisSamError(f"prompts file {p} must hold an object mapping image names to lists of {what}, "
                          f"not {json_input.kind(data)}")
    return p, data


def load_prompts(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    """Read a prompts file (see module docstring) -> ``{key: [box, ...]}``.

    Raises :class:`~dissam.errors.DisSamError` (:class:`~dissam.errors.BoxError` for an entry) naming
    the file and the entry for anything unusable: not JSON, nested deeper than
    :data:`dissam.json_input.MAX_DEPTH`, a number that is not finite or has more than
    :data:`dissam.json_input.MAX_INT_DIGITS` digits, a value of the wrong type."""
    p, data = _read_prompts_json(path, "boxes")
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


# ---------------------------------------------------------------------------------------------
# Point prompts (clicks). Additive: load_prompts / boxes_for_image above are unchanged and keep
# reading box-only files; the functions below read the same files with points as well.
# ---------------------------------------------------------------------------------------------
POINT_SCHEMA = """\
A prompts file may also give clicks (points, (x, y) pixels of the image; label 1 = on the object,
0 = not on the object). Each entry of an image's list is then one object, any of:

* ``{"box": [x0, y0, x1, y1], "points": [[x, y], [x, y, 0]]}`` — a box with clicks; a point is
  ``[x, y]`` (label 1) or ``[x, y, label]``;
* ``{"points": [[x, y], ...]}`` — clicks without a box;
* ``{"box": [...], "point_coords": [[x, y], ...], "point_labels": [1, 0]}`` — SAM's spelling;
* rembg-style ``{"type": "point", "data": [x, y], "label": 1}`` entries: like rembg, they belong to
  the image's one ``rectangle`` entry (or, with none, make one object of clicks alone); an image with
  several rectangles and rembg points is an error (use ``{"box": ..., "points": ...}`` per object).

Example::

    {"cat.jpg": [{"box": [10, 20, 200, 220], "points": [[120, 90], [30, 40, 0]]}],
     "tree": [{"points": [[50, 60]]}]}
"""

MAX_POINTS = json_input.MAX_POINTS
"""The most clicks one object may have in a prompts file or on the command line."""


def parse_point(text: str) -> tuple[float, float, int]:
    """``"x,y"`` or ``"x,y,label"`` (commas or spaces; label 1 = object, 0 = background; default 1) ->
    ``(x, y, label)`` with finite x and y."""
    shown = json_input.shorten_text(text)
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise PointError(f"cannot parse point {shown!r}: expected x,y or x,y,label (label 1 or 0)") from exc
    if len(vals) not in (2, 3):
        raise PointError(f"cannot parse point {shown!r}: expected x,y or x,y,label, got {len(vals)} numbers")
    for part, v in zip(parts, vals):
        if not math.isfinite(v):
            raise PointError(f"cannot use point {shown!r}: {json_input.shorten_text(part)} is not a finite number")
    label = 1 if len(vals) == 2 else vals[2]
    if label not in (0, 1):
        raise PointError(f"point {shown!r}: the label (third number) must be 1 (object) or 0 (background)")
    return vals[0], vals[1], int(label)


def _read_points(value, where: str) -> tuple[list[list[float]], list[int]]:
    """``[[x, y], [x, y, label], ...]`` -> coordinates and labels (:func:`dissam.json_input.points`)."""
    try:
        return json_input.points(value, where, MAX_POINTS)
    except json_input.JsonInputError as exc:
        raise PointError(str(exc)) from None


def _entry_to_prompt(entry, where: str) -> Prompt | None:
    """One object's entry -> :class:`~dissam.points.Prompt`; a rembg ``point`` entry -> ``None``
    (collected by the caller)."""
    if not isinstance(entry, dict):
        return make_prompt(box=_entry_to_box(entry, where))
    if entry.get("type") == "point":
        return None
    box = None
    if "box" in entry or entry.get("type") == "rectangle":
        box = _entry_to_box({k: v for k, v in entry.items() if k in ("box", "type", "data")}, where)
    coords = labels = None
    if "points" in entry:
        coords, labels = _read_points(entry["points"], f'{where}["points"]')
    elif "point_coords" in entry or "point_labels" in entry:
        pts = entry.get("point_coords")
        labs = entry.get("point_labels")
        if not isinstance(pts, list) or not isinstance(labs, list) or len(pts) != len(labs):
            raise PointError(f"{where}: \"point_coords\" and \"point_labels\" must be lists of the same length")
        joined = [[*p, lab] if isinstance(p, list) and len(p) == 2 else p for p, lab in zip(pts, labs)]
        coords, labels = _read_points(joined, f'{where}["point_coords"]')
    if box is None and coords is None:
        raise PointError(f"{where}: cannot read a prompt from {json_input.shorten(entry)}; give \"box\", "
                         "\"points\" or both")
    try:
        return make_prompt(box=box, point_coords=coords, point_labels=labels)
    except PointError as exc:
        raise PointError(f"{where}: {exc}") from exc


def _rembg_point(entry: dict, where: str) -> tuple[list[float], int]:
    data, label = entry.get("data"), entry.get("label", 1)
    if not (isinstance(data, list) and len(data) == 2):
        raise PointError(f"{where}: a rembg point's \"data\" is [x, y], got {json_input.shorten(data)}")
    try:
        x, y, lab = json_input.point([*data, label], where)
    except json_input.JsonInputError as exc:
        raise PointError(f"{exc} (a rembg point's \"data\" is [x, y], its \"label\" 1 or 0)") from None
    return [x, y], lab


def read_prompt_entries(entries, where: str) -> list[Prompt]:
    """One image's list of entries (module docstring, :data:`POINT_SCHEMA`) -> one
    :class:`~dissam.points.Prompt` per object."""
    if json_input.looks_like_box(entries) or not isinstance(entries, (list, tuple)):
        entries = [entries]  # a single entry, not in a list
    prompts, rembg_points, rembg_boxes = [], [], []
    for k, entry in enumerate(entries):
        at = f"{where}[{k}]"
        prompt = _entry_to_prompt(entry, at)
        if prompt is None:
            rembg_points.append(_rembg_point(entry, at))
            continue
        if isinstance(entry, dict) and entry.get("type") == "rectangle":
            rembg_boxes.append(len(prompts))
        prompts.append(prompt)
    if rembg_points:
        if len(rembg_points) > MAX_POINTS:
            raise PointError(f"{where}: {len(rembg_points)} rembg point entries; at most {MAX_POINTS} per object")
        coords = [c for c, _ in rembg_points]
        labels = [lab for _, lab in rembg_points]
        if len(rembg_boxes) > 1:
            raise PointError(f"{where}: rembg-style point entries belong to the image's one rectangle, but there "
                             f"are {len(rembg_boxes)}; give each object as {{\"box\": [...], \"points\": [...]}}")
        if rembg_boxes:
            i = rembg_boxes[0]
            prompts[i] = Prompt(prompts[i].box, *as_points(coords, labels))
        else:
            prompts.append(Prompt(None, *as_points(coords, labels)))
    return prompts


def load_prompt_file(path: str | os.PathLike) -> dict[str, list[Prompt]]:
    """Read a prompts file with boxes and points (module docstring and :data:`POINT_SCHEMA`) ->
    ``{key: [Prompt, ...]}`` (:class:`dissam.points.Prompt`, boxes in the file's own format).

    Refuses what :func:`load_prompts` refuses (not JSON, too deep, numbers that are not finite or too
    long) and more than :data:`MAX_POINTS` clicks per object; errors name the file, the image key and
    the entry."""
    p, data = _read_prompts_json(path, "prompts")
    return {str(key): read_prompt_entries(entries, f"prompts file {p}, entry [{json_input.shorten(key)}]")
            for key, entries in data.items()}


def prompts_for_image(image_path: Path, prompts: dict[str, list[Prompt]] | None,
                      cli_prompts: list[Prompt] | None) -> list[Prompt]:
    """Prompts for one image: the prompts-file entry (by path, name or stem) plus the command line's
    (the lookup of :func:`boxes_for_image`)."""
    return boxes_for_image(image_path, prompts, cli_prompts)
