"""Fill the generated regions of README.md and docs/*.md from their single sources.

* ``<!-- figures: benchmarks/results/NAME.json#TABLE -->`` ... ``<!-- /figures -->``: the table
  ``TABLE`` that the benchmark script wrote into its results file, and a line saying how, when and
  where it was measured (command, date, machine, commit);
* ``<!-- fig: benchmarks/results/NAME.json#results.KEY.KEY[:FORMAT] -->VALUE<!-- /fig -->``: one
  figure quoted in prose, formatted with the Python format spec ``FORMAT`` (default ``g``);
* ``<!-- options: COMMAND -->`` ... ``<!-- /options -->``: the option table of ``dissam COMMAND``, from
  its argument parser (the ``--help`` text is the one source of each description);
* ``<!-- models -->`` ... ``<!-- /models -->``: the named models of ``dissam.hub.registry``;
* ``<!-- stages -->`` ... ``<!-- /stages -->``: the stage 1s of ``dissam.stages.registry``.

Usage: ``python scripts/render_docs.py`` rewrites the files; ``--check`` only reports regions that
differ (exit 1), which is what tests/test_docs.py runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FIGURES = re.compile(r"(<!-- figures: (?P<file>[^#\s]+)#(?P<table>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)
FIG = re.compile(r"(<!-- fig: (?P<file>[^#\s]+)#(?P<path>[\w.\[\]-]+)(?::(?P<fmt>[^ ]+))? -->)(?P<body>.*?)(?P<end><!-- /fig -->)")
OPTIONS = re.compile(r"(<!-- options: (?P<command>[\w-]+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S)
MODELS = re.compile(r"(<!-- models -->\n)(?P<body>.*?)(<!-- /models -->)", re.S)
STAGES = re.compile(r"(<!-- stages -->\n)(?P<body>.*?)(<!-- /stages -->)", re.S)


def _load(file: str) -> dict:
    path = ROOT / file
    if not path.is_file():
        raise SystemExit(f"{file}: no such results file")
    return json.loads(path.read_text())


def provenance(doc: dict) -> str:
    m = doc.get("machine", {})
    where = m.get("gpu") or f"{m.get('cpu', 'CPU')}, {m.get('cores', '?')} cores"
    load = m.get("load_average_at_start")
    load = f", load {load} at start" if load is not None else ""
    dirty = " + uncommitted changes" if doc.get("dirty") else ""
    return (f"*Measured with `{doc['command']}` on {where}{load}, {doc['date']}, "
            f"commit {doc.get('commit') or 'not recorded'}{dirty}.*\n")


def render_figures(m: re.Match) -> str:
    doc = _load(m["file"])
    tables = doc.get("tables", {})
    if m["table"] not in tables:
        raise SystemExit(f"{m['file']} has no table {m['table']!r} (it has {', '.join(tables) or 'none'})")
    return m.group(1) + tables[m["table"]].rstrip() + "\n\n" + provenance(doc) + m.group(5)


def lookup(doc: dict, path: str):
    value = doc
    for part in path.split("."):
        if isinstance(value, list):
            value = value[int(part)]
        else:
            if part not in value:
                raise SystemExit(f"no {path!r} in the results file")
            value = value[part]
    return value


def render_fig(m: re.Match) -> str:
    value = lookup(_load(m["file"]), m["path"])
    text = format(value, m["fmt"] or "g") if not isinstance(value, str) else value
    return m.group(1) + text + m["end"]


def option_table(command: str) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from dissam.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    rows = ["| option | default | what it does |", "|---|---|---|"]
    for action in sub._actions:
        if not action.option_strings or action.dest == "help" or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.choices is not None:
            flags += " " + "/".join(str(c) for c in action.choices)
        elif action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
        empty = action.default in (None, False, argparse.SUPPRESS) or action.default == []
        default = "" if empty else f"`{action.default}`"
        text = (action.help or "").replace("|", "\\|").replace("%%", "%")
        rows.append(f"| {flags} | {default} | {text} |")
    return "\n".join(rows) + "\n"


def render_options(m: re.Match) -> str:
    return m.group(1) + option_table(m["command"]) + m.group(4)


def models_table() -> str:
    """The named models of the hub registry (as shipped: no user overrides)."""
    sys.path.insert(0, str(ROOT / "src"))
    from dissam.hub.registry import REGISTRY

    rows = ["| name | role | source | size | checked by | licence |", "|---|---|---|---|---|---|"]
    for e in REGISTRY.values():
        source = (f"`{e.url}`" if e.url else f"`{e.hub_id}` (Hugging Face)" if e.hub_id
                  else "built into the package" if e.kind == "builtin" else f"by hand: {e.manual}")
        size = f"{e.size:,} B" if e.size else ""
        checks = [c for c, on in (("size", e.size), ("SHA-256", e.sha256), ("MD5", getattr(e, "md5", None)),
                                  ("keys and shapes", e.check)) if on]
        checked = " + ".join(checks) or ("the Hugging Face cache" if e.kind == "hf" else "")
        rows.append(f"| `{e.name}` | {e.role} | {source} | {size} | {checked} | {e.license} |")
    return "\n".join(rows) + "\n"


def stages_table() -> str:
    """The stage 1s of the stage registry."""
    sys.path.insert(0, str(ROOT / "src"))
    from dissam.stages.registry import BUILTIN_STAGES

    rows = ["| `--stage1` | what it is | weights | image encoder runs on | video | licence |", "|---|---|---|---|---|---|"]
    for spec in BUILTIN_STAGES:
        weights = "needs `--sam`" if spec.needs_weights else "bundled" if spec.bundled else "none"
        fixed = "ONNX Runtime, fp32" if spec.bundled else "OpenCV"  # the flags apply to the refiner alone
        runtime = fixed if spec.backends is None else f"{' or '.join(spec.backends)}; {', '.join(spec.precisions)}"
        video = "propagates (video checkpoints)" if spec.video_loader else "re-prompted per frame"
        rows.append(f"| `{spec.name}` | {spec.summary} | {weights} | {runtime} | {video} | {spec.license} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    text = FIGURES.sub(render_figures, text)
    text = FIG.sub(render_fig, text)
    text = MODELS.sub(lambda m: m.group(1) + models_table() + m.group(3), text)
    text = STAGES.sub(lambda m: m.group(1) + stages_table() + m.group(3), text)
    return OPTIONS.sub(render_options, text)


def stale_pages(pages=PAGES) -> list[Path]:
    """Pages whose generated regions differ from their sources."""
    return [p for p in pages if render(p.read_text()) != p.read_text()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report stale pages, write nothing (exit 1 if any)")
    args = ap.parse_args()
    stale = stale_pages()
    if args.check:
        for p in stale:
            print(f"stale generated region(s): {p.relative_to(ROOT)} (run python scripts/render_docs.py)")
        return 1 if stale else 0
    for p in stale:
        p.write_text(render(p.read_text()))
        print(f"updated {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
