"""The docs cannot drift: every fenced block of README.md and docs/*.md is classified, runnable blocks
run on tiny stand-ins, the others parse against the real command line and API, generated regions
(figures, option tables) equal their sources, and help texts point only to files that exist.
How this works for contributors: docs/testing.md."""

from __future__ import annotations

import ast
import importlib.util
import re

import pytest
from docs_harness import (
    COMMAND_LANGS,
    DATA_LANGS,
    PAGES,
    ROOT,
    build_workspace,
    check_data,
    check_dissam_argv,
    check_python,
    check_script,
    dissam_argv,
    fresh_copy,
    read_blocks,
    run_bash_block,
    run_python_block,
    script_call,
    shell_lines,
    split_commands,
)

BLOCKS = read_blocks()
COMMANDS = [b for b in BLOCKS if b.lang in COMMAND_LANGS]
RUNNABLE = [b for b in COMMANDS if b.mode == "run"]


def _render():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_block_is_classified():
    """A new page or block cannot slip past: commands carry a marker, everything else a data tag."""
    problems = []
    for b in BLOCKS:
        if b.lang in COMMAND_LANGS and b.mode not in ("run", "check"):
            problems.append(f"{b.id}: a {b.lang} block without <!-- docs: run --> or <!-- docs: check REASON -->")
        elif b.lang in COMMAND_LANGS and b.mode == "check" and not b.reason:
            problems.append(f"{b.id}: <!-- docs: check --> needs a reason (what this machine lacks)")
        elif b.lang not in (*COMMAND_LANGS, *DATA_LANGS):
            problems.append(f"{b.id}: tag the block as one of {', '.join(COMMAND_LANGS + DATA_LANGS)} (got {b.lang!r})")
        elif b.lang in DATA_LANGS and b.mode:
            problems.append(f"{b.id}: a {b.lang} block is data; a docs marker applies to bash/python only")
    assert not problems, "\n".join(problems)
    assert len(RUNNABLE) >= 20  # most of what the docs show runs


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("json", "yaml")], ids=lambda b: b.id)
def test_data_blocks_parse(block):
    check_data(block)


@pytest.mark.parametrize("block", COMMANDS, ids=lambda b: b.id)
def test_commands_name_real_flags_and_api(block):
    """Every dissam command parses with the real parser; scripts exist with their flags; Python
    imports resolve and calls use parameters that exist."""
    if block.lang == "python":
        check_python(block.text)
        return
    for line in shell_lines(block.text):
        for words in split_commands(line):
            argv = dissam_argv(words)
            if argv is not None:
                check_dissam_argv(argv)
            elif (call := script_call(words)) is not None:
                check_script(*call)


@pytest.fixture(scope="session")
def docs_workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("docs") / "base")


def _params(blocks):
    return [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if "slow" in b.options else []) for b in blocks]


@pytest.mark.parametrize("block", _params(RUNNABLE))
def test_runnable_blocks_run(block, docs_workspace, tmp_path, monkeypatch):
    ws = fresh_copy(docs_workspace, tmp_path / "ws")
    if block.lang == "bash":
        run_bash_block(block, ws, monkeypatch)
    else:
        run_python_block(block, ws, monkeypatch)


def test_rendering_a_figure_keeps_its_region(tmp_path, monkeypatch):
    """A rendered figure stays between its comments, so rendering twice changes nothing."""
    render = _render()
    (tmp_path / "r.json").write_text('{"command": "python b.py", "date": "2026-01-01 00:00 UTC", "commit": "abc",'
                                     ' "machine": {"cores": 2}, "results": {"a": {"b": 0.1234}},'
                                     ' "tables": {"t": "| x | y |\\n|---|---:|\\n| a | 1 |\\n"}}')
    monkeypatch.setattr(render, "ROOT", tmp_path)
    text = ("took <!-- fig: r.json#results.a.b:.0% --><!-- /fig --> less\n"
            "<!-- figures: r.json#t -->\n<!-- /figures -->\n")
    once = render.render(text)
    assert once.startswith("took <!-- fig: r.json#results.a.b:.0% -->12%<!-- /fig --> less\n")
    assert "| a | 1 |\n\n*Measured with `python b.py` on CPU, 2 cores, 2026-01-01 00:00 UTC, commit abc.*\n" in once
    assert render.render(once) == once


def test_generated_regions_are_closed():
    """Every opening comment of a generated region has its closing one (an unclosed region is never
    rendered, so its text would silently keep whatever was typed there)."""
    render = _render()
    unclosed = []
    for page in PAGES:
        text = page.read_text()
        for pattern, opening in ((render.FIGURES, "<!-- figures: "), (render.FIG, "<!-- fig: "),
                                 (render.OPTIONS, "<!-- options: "), (render.MODELS, "<!-- models -->"),
                                 (render.STAGES, "<!-- stages -->")):
            code = re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)  # examples in code are no regions
            if code.count(opening) != len(pattern.findall(code)):
                unclosed.append(f"{page.relative_to(ROOT)}: {opening.strip()}")
    assert not unclosed, unclosed


def test_generated_regions_are_up_to_date():
    stale = _render().stale_pages()
    assert not stale, f"run `python scripts/render_docs.py`: stale regions in {[str(p.relative_to(ROOT)) for p in stale]}"


# Pages of measurements: every figure on them comes from a results file. Elsewhere, a section (the text
# under one heading, down to the next heading of any level) that renders a figure from a results file is
# held to the same rule. The lab notebook (docs/lab/) is a record and is not checked.
MEASURED_PAGES = ("docs/benchmarks.md",)
GENERATED = re.compile(r"<!-- (figures|fig|options|models|stages)\b[^>]*-->.*?<!-- /\1 -->", re.S)
HEADING = re.compile(r"^#{1,6} ", re.M)


def _hand_typed_figures(text: str) -> list[str]:
    """Decimals, ratios and percentages of ``text`` outside generated regions, code and fenced blocks
    (a version in a model's name, "SAM 2.1", is a name, not a figure)."""
    text = GENERATED.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands carry settings, not figures
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\bSAM \d+(?:\.\d+)?", "SAM", text)
    return re.findall(r"(?<![\w.])\d+\.\d+|\d+(?:\.\d+)?\s?[×x%](?!\w)", text)


def _measured_text(path) -> str:
    """What of a page the figure check reads: all of a page of measurements; elsewhere the sections
    that render a figure from a results file."""
    text = path.read_text()
    if str(path.relative_to(ROOT)) in MEASURED_PAGES:
        return text
    no_code = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)  # `# comment` is no heading
    bounds = [m.start() for m in HEADING.finditer(no_code)] + [len(text)]
    sections = [text[a:b] for a, b in zip([0, *bounds], bounds)]
    return "".join(s for s in sections if re.search(r"<!-- figs?(?:ures)?: benchmarks/results/", s))


CHECKED_PAGES = [p for p in PAGES if "lab" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("page", CHECKED_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_benchmark_figures_come_from_results_files(page):
    """A measured figure is never typed by hand: on docs/benchmarks.md, and in any section elsewhere
    that renders figures from a results file, every decimal, ratio or percentage outside a generated
    region is an error (quote it with <!-- fig: ... --> or put it in the script's table)."""
    figures = _hand_typed_figures(_measured_text(page))
    assert not figures, f"hand-typed figures in {page.relative_to(ROOT)}: {figures[:20]}"


def test_the_measured_sections_are_checked():
    """The pages that quote measurements are under the check, so moving a figure out of a region fails."""
    assert "<!-- figures: benchmarks/results/" in _measured_text(ROOT / "docs" / "benchmarks.md")
    video = _measured_text(ROOT / "docs" / "video.md")
    assert "## Measured on generated moving-object clips" in video and "video_stability.json#" in video
    assert "precision_accuracy.json#" in _measured_text(ROOT / "docs" / "runtime.md")


def test_hand_typed_figure_check_finds_what_it_should(tmp_path, monkeypatch):
    """The check above flags typed decimals, ratios and percentages and leaves regions, code, model
    names and plain counts alone; outside the pages of measurements it reads only the sections that
    render a results file."""
    text = ("took 3.2 s, 2.5x faster, 1.6× larger, 40 % less; 16 images, step 4, `--n 0.5`, SAM 2.1 tiny\n"
            "<!-- fig: benchmarks/results/x.json#results.a:.2f -->0.77<!-- /fig -->\n"
            "<!-- figures: benchmarks/results/x.json#t -->\n| a | 0.5 |\n<!-- /figures -->\n"
            "<!-- options: predict -->\n| `--x` | 0.5 |\n<!-- /options -->\n")
    assert _hand_typed_figures(text) == ["3.2", "2.5", "1.6", "40 %"]
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# Page\n\nversion 1.5 of a tool\n\n## Measured\n\n```bash\n# a comment, not a heading\n```\n"
                    "took 2.5 s; <!-- fig: benchmarks/results/x.json#results.a -->1<!-- /fig -->\n\n## Other\n\n7.5 MB\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert _hand_typed_figures(_measured_text(page)) == ["2.5"]


def _help_texts():
    from dissam.cli import build_parser

    parser = build_parser()
    yield "dissam", parser.description or ""
    for name, sub in next(a for a in parser._actions if a.dest == "command").choices.items():
        yield name, (sub.description or "") + "\n" + "\n".join(a.help or "" for a in sub._actions)


def test_help_texts_point_only_to_files_that_exist():
    missing = []
    for name, text in _help_texts():
        for ref in re.findall(r"(?:docs/[\w./-]+\.md|README(?:\.md)?)", text):
            if not (ROOT / ref.replace("README", "README.md").replace(".md.md", ".md")).is_file():
                missing.append(f"dissam {name}: {ref}")
    assert not missing, missing


def test_docstrings_do_not_point_into_docs():
    """The wheel ships no docs/ folder: docstrings and comments of the package are self-contained."""
    offenders = []
    for path in sorted((ROOT / "src" / "dissam").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "docs/" in node.value:
                if re.search(r"docs/[\w-]+\.md", node.value) and _is_docstring(node, tree):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "#" in line and re.search(r"#.*docs/[\w-]+\.md", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i} (comment)")
        if "tests/fixtures" in path.read_text():
            offenders.append(f"{path.relative_to(ROOT)} names tests/fixtures")
    assert not offenders, offenders


def _is_docstring(node, tree) -> bool:
    for parent in ast.walk(tree):
        if isinstance(parent, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = parent.body
            if body and isinstance(body[0], ast.Expr) and body[0].value is node:
                return True
        if isinstance(parent, ast.Assign | ast.AnnAssign):
            pass
    # attribute docstrings: a string expression right after an assignment
    for parent in ast.walk(tree):
        body = getattr(parent, "body", None)
        if isinstance(body, list):
            for prev, cur in zip(body, body[1:]):
                if isinstance(cur, ast.Expr) and cur.value is node and isinstance(prev, ast.Assign | ast.AnnAssign):
                    return True
    return False


def test_every_option_of_the_app_is_documented():
    text = (ROOT / "docs" / "app.md").read_text()
    from dissam.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["app"]
    flags = [o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert [f for f in flags if f"`{f}`" not in text] == []


def test_pages_exist():
    assert {p.name for p in PAGES} >= {"README.md", "testing.md", "architecture.md"}
