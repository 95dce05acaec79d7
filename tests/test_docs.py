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


def test_generated_regions_are_up_to_date():
    stale = _render().stale_pages()
    assert not stale, f"run `python scripts/render_docs.py`: stale regions in {[str(p.relative_to(ROOT)) for p in stale]}"


@pytest.mark.xfail(strict=True, reason="docs/benchmarks.md still quotes figures measured before results files")
def test_benchmark_figures_come_from_results_files():
    """docs/benchmarks.md quotes no measured figure by hand: every decimal, ratio or percentage outside
    a generated region is an error (quote it with <!-- fig: ... --> or put it in the script's table)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    text = re.sub(r"<!-- figures: .*?<!-- /figures -->", "", text, flags=re.S)
    text = re.sub(r"<!-- fig: .*?<!-- /fig -->", "", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands carry settings, not figures
    text = re.sub(r"`[^`]*`", "", text)
    figures = re.findall(r"(?<![\w.])\d+\.\d+|\d+(?:\.\d+)?\s?[×x%](?!\w)", text)
    assert not figures, f"hand-quoted figures in docs/benchmarks.md: {figures[:20]}"


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
