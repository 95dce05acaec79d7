"""The machinery behind tests/test_docs.py: every fenced block of README.md and docs/*.md, read with
the marker that says how it is tested, and a workspace of tiny stand-ins to run the runnable ones in.

A command or Python block is preceded by one of (docs/testing.md has the contributor's view):

* ``<!-- docs: run [slow] [creates=GLOB,GLOB] [exit=N] -->``: executed in a fresh workspace, then the
  files it promises must exist;
* ``<!-- docs: check REASON -->``: it needs what this machine does not have (real weights, DIS-5K,
  a GPU, the network, a server that keeps running); every ``dissam`` command of it is parsed by the real
  parser (sub-command, flags, choices), every ``benchmarks/*.py`` script must exist with its flags,
  and Python blocks must compile, import what they name from dissam and call it with parameters its
  signature has.

Data blocks are tagged ``json``, ``yaml`` or ``text``; JSON and YAML must parse (``…`` stands for an
elided value).

The workspace (:func:`build_workspace`) holds what the documented commands name, as tiny stand-ins:
``photo.jpg``, ``photos/`` + ``boxes.json``, official-style ``sam_vit_l_0b3195.pth`` (a tiny SAM) and
``dis_sam.pth`` (a compact refiner), ``models/sam2.1-hiera-tiny`` and ``models/sam3`` (tiny random
SAM 2.1 / SAM 3 video checkpoints), the same under their hub ids in an offline Hugging Face cache, a
user model registry that maps ``sam-vit-l`` and ``dis-sam`` to the stand-ins (as a mirror would), a
``DIS5K`` folder of generated samples, ``preds/`` for ``dissam eval``, and ``clip.mp4``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND_LANGS = ("bash", "python")
DATA_LANGS = ("json", "yaml", "toml", "text")
MARKER = re.compile(r"<!--\s*docs:\s*(run|check)\b(.*?)-->", re.S)
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)


@dataclass
class Block:
    """One fenced block: where it is, its language, its text and its marker."""

    page: Path
    line: int
    lang: str
    text: str
    mode: str | None = None  # "run" / "check" (command blocks), None otherwise
    options: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(pages=PAGES) -> list[Block]:
    """Every fenced block of ``pages`` with the ``<!-- docs: ... -->`` marker just above it."""
    out = []
    for page in pages:
        text = page.read_text()
        for m in FENCE.finditer(text):
            line = text[: m.start()].count("\n") + 1
            block = Block(page, line, m.group("lang").strip(), m.group("body"))
            before = text[: m.start()].rstrip().splitlines()[-1:] or [""]
            marker = MARKER.search(before[0])
            if marker:
                block.mode = marker.group(1)
                words = marker.group(2).split()
                block.options = dict(w.split("=", 1) for w in words if "=" in w)
                block.options.update({w: "" for w in words if "=" not in w and w == "slow"})
                block.reason = " ".join(w for w in words if "=" not in w and w != "slow")
            out.append(block)
    return out


# ------------------------------------------------------------------------------------------- commands
def shell_lines(text: str) -> list[str]:
    """The commands of a bash block: backslash continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        out.append(s)
    return out


def split_commands(line: str) -> list[list[str]]:
    """``a && b`` -> ``[[a...], [b...]]`` (shlex words; a trailing ``# comment`` removed)."""
    return [shlex.split(raw, comments=True) for raw in raw_commands(line)]


def raw_commands(line: str) -> list[str]:
    """``a && b`` -> ``["a", "b"]``, the text of each command as written (for bash: globs, ``~``)."""
    parts = [p.strip() for p in re.split(r"\s(?:&&|;)\s", line)]
    return [p for p in parts if p and shlex.split(p, comments=True)]


def dissam_argv(words: list[str]) -> list[str] | None:
    """The ``dissam`` arguments of a command line, or ``None`` when it does not run dissam
    (``dissam ...``, ``.venv/bin/dissam ...``, ``python -m dissam ...``, ``torchrun ... -m dissam ...``)."""
    env_free = [w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)] if words else []
    if not env_free:
        return None
    head = env_free[0]
    if head.endswith("dissam") and "/" not in head.replace(".venv/bin/", ""):
        return env_free[1:]
    if "-m" in env_free:
        i = env_free.index("-m")
        if i + 1 < len(env_free) and env_free[i + 1] == "dissam":
            return env_free[i + 2 :]
    return None


def script_call(words: list[str]) -> tuple[Path, list[str]] | None:
    """``(script, args)`` for ``python benchmarks/x.py ...`` / ``examples/x.py`` lines."""
    for i, w in enumerate(words):
        if w.endswith(".py") and (w.startswith("benchmarks/") or w.startswith("examples/")):
            return ROOT / w, words[i + 1 :]
    return None


def check_dissam_argv(argv: list[str]) -> None:
    """Parse ``argv`` with the real ``dissam`` parser (argparse exits with status 2 on an unknown flag,
    a bad choice or a missing argument)."""
    from dissam.cli import build_parser

    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`dissam {' '.join(argv)}` does not parse (exit {exc.code})") from None


def check_script(script: Path, args: list[str]) -> None:
    assert script.is_file(), f"{script.relative_to(ROOT)} does not exist"
    source = script.read_text()
    for a in args:
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            assert f'"{flag}"' in source, f"{script.name} has no option {flag}"


# -------------------------------------------------------------------------------------------- python
def check_python(text: str) -> None:
    """Compile; resolve every ``dissam`` import; check the keyword arguments of calls to dissam
    callables (and of methods of what they return, where the call names the class) against their
    signatures."""
    tree = ast.parse(text)
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dissam":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                names[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dissam":
                    importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(node.func, names)
        if target is None or not callable(target):
            continue
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            continue
        if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            continue
        for kw in node.keywords:
            if kw.arg is not None:
                assert kw.arg in sig.parameters, f"{getattr(target, '__qualname__', target)} takes no {kw.arg}="


def _resolve(func: ast.AST, names: dict[str, object]):
    if isinstance(func, ast.Name):
        return names.get(func.id)
    if isinstance(func, ast.Attribute):
        base = _resolve(func.value, names)
        return getattr(base, func.attr, None) if base is not None else None
    return None


def check_data(block: Block) -> None:
    text = block.text.replace("{…}", "{}").replace("[…]", "[]").replace("…", "")
    if block.lang == "json":
        json.loads(text)
    elif block.lang == "yaml":
        yaml.safe_load(text)
    elif block.lang == "toml":
        tomllib.loads(text)


# ----------------------------------------------------------------------------------------- workspace
def _save_hf(model, folder: Path, tokenizer=None) -> None:
    model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def _hf_cache_entry(hf_home: Path, repo_id: str) -> Path:
    """A snapshot folder of ``repo_id`` in an offline Hugging Face cache (``refs/main`` -> commit)."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_workspace(base: Path) -> Path:
    """Create the stand-ins of the documented commands under ``base`` (once per test session)."""
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests"))
    from stage1_helpers import tiny_sam2_video, tiny_sam3_tracker_video  # noqa: E402 - test helpers

    from dissam.data.clips import moving_clip, write_clip
    from dissam.data.synthetic import generate_dataset
    from dissam.models.isnet import RefinerConfig, build_refiner
    from dissam.testing import sam_fixture_state_dict

    base.mkdir(parents=True, exist_ok=True)
    photo = Image.open(ROOT / "examples" / "images" / "photo_coffee.jpg").convert("RGB").resize((640, 480))
    photo.save(base / "photo.jpg", quality=92)
    (base / "photos").mkdir()
    photo.save(base / "photos" / "cup.jpg", quality=92)
    photo.transpose(Image.FLIP_LEFT_RIGHT).save(base / "photos" / "cup_mirrored.jpg", quality=92)
    (base / "boxes.json").write_text(json.dumps({"cup": [[120, 40, 610, 470]], "cup_mirrored": [[30, 40, 520, 470]]}))
    shutil.copytree(ROOT / "examples", base / "examples", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(ROOT / "configs", base / "configs")
    # official-style weights: a plain SAM state dict, a plain 5-channel refiner state dict
    rows = json.loads((ROOT / "tests" / "fixtures" / "sam" / "manifest.json").read_text())
    torch.save(sam_fixture_state_dict(rows), base / "sam_vit_l_0b3195.pth")
    torch.manual_seed(0)  # a very narrow 5-channel IS-Net: what matters here is the path, not the quality
    torch.save(build_refiner(RefinerConfig("isnet", 5, 1, 0.0625)).state_dict(), base / "dis_sam.pth")
    shutil.copy(base / "dis_sam.pth", base / "dis-sam.pth")
    shutil.copy(base / "dis_sam.pth", base / "gpu_itr_24000_traLoss_4.7147.pth")
    models = base / "models"
    models.mkdir()
    shutil.copy(base / "sam_vit_l_0b3195.pth", models / "sam_vit_l_0b3195.pth")
    _save_hf(tiny_sam2_video(), models / "sam2.1-hiera-tiny")
    _save_hf(tiny_sam3_tracker_video(), models / "sam3")
    hf = base / "hf"
    _save_hf(tiny_sam2_video(), _hf_cache_entry(hf, "facebook/sam2.1-hiera-tiny"))
    _save_hf(tiny_sam3_tracker_video(), _hf_cache_entry(hf, "facebook/sam3"))
    # the registry's names, served by a mirror folder of stand-ins (what DISSAM_REGISTRY is for)
    mirror = base / "mirror"
    mirror.mkdir()
    shutil.copy(base / "sam_vit_l_0b3195.pth", mirror / "sam_vit_l_0b3195.pth")
    shutil.copy(base / "dis_sam.pth", mirror / "dis-sam.pth")
    entries = {}
    for name, fname in (("sam-vit-l", "sam_vit_l_0b3195.pth"), ("dis-sam", "dis-sam.pth")):
        f = mirror / fname
        entries[name] = {"filename": fname, "url": f.as_uri(), "size": f.stat().st_size, "sha256": _sha256(f),
                         "check": None}
    (base / "registry.json").write_text(json.dumps({"models": entries}, indent=1))
    cache = base / "home" / ".cache" / "dissam" / "models"  # as if `dissam models download` had run
    cache.mkdir(parents=True)
    for entry in entries.values():
        shutil.copy(mirror / entry["filename"], cache / entry["filename"])
    (base / "home" / "Downloads").mkdir()
    shutil.copy(base / "dis_sam.pth", base / "home" / "Downloads" / "gpu_itr_24000_traLoss_4.7147_dis-sam.pth")
    # data: a DIS-5K-like root of generated samples, predictions for `dissam eval`, a clip
    synth = base / "_synth"
    generate_dataset(synth, n=6, seed=0, masks="degrade", progress=False, size_range=(96, 128))
    for split in ("DIS-TR", "DIS-VD", "DIS-TE1"):
        shutil.copytree(synth, base / "DIS5K" / split, ignore=shutil.ignore_patterns("*.json"))
    shutil.rmtree(synth)
    (base / "preds" / "DIS-VD").mkdir(parents=True)
    for gt in sorted((base / "DIS5K" / "DIS-VD" / "gt").glob("*.png")):
        g = np.asarray(Image.open(gt).convert("L"))
        Image.fromarray(np.roll(g, 2, axis=1)).save(base / "preds" / "DIS-VD" / gt.name)
    shutil.copytree(base / "preds" / "DIS-VD", base / "runs" / "dis-sam" / "DIS-VD")  # a method x split tree
    write_clip(base / "clip.mp4", moving_clip(frames=48, size=(120, 160), seed=0))
    return base


def workspace_env(ws: Path) -> dict[str, str]:
    """The environment a documented command sees in workspace ``ws``."""
    return {
        "HOME": str(ws / "home"),
        "DISSAM_HOME": str(ws / "home" / ".cache" / "dissam"),
        "DISSAM_REGISTRY": str(ws / "registry.json"),
        "DISSAM_CACHE": str(ws / "home" / ".cache" / "dissam"),
        "HF_HOME": str(ws / "hf"),
        "HF_HUB_OFFLINE": "1",
        "DISSAM_DOWNLOAD_TIMEOUT": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def fresh_copy(base: Path, dest: Path) -> Path:
    """A workspace of its own for one block: the stand-ins copied (cheap: all tiny), the caches too;
    ``.venv`` is this environment (the README's commands name ``.venv/bin/dissam``)."""
    shutil.copytree(base, dest, symlinks=True)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    return dest


SKIPPED = (("bash", "scripts/setup.sh"), ("bash", "scripts/test.sh"))
"""What a runnable block may contain but the test does not repeat: the environment's own set-up (CI
runs it; the suite runs inside what it made) and the suite itself."""


def _skipped(words: list[str]) -> bool:
    if tuple(words[:2]) in SKIPPED:
        return True
    pip = [w for w in words[:3] if w.endswith("pip")]
    return bool(pip) and "install" in words  # the extras are installed in the test environment


def run_bash_block(block: Block, ws: Path, monkeypatch) -> None:
    """Run every command of ``block`` in ``ws`` with bash, as written (``dissam`` and ``.venv/bin/...``
    are this environment's), each in its own process as a user's shell would."""
    want = int(block.options.get("exit", "0"))
    env = {**os.environ, **workspace_env(ws), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for line in shell_lines(block.text):
        for raw in raw_commands(line):
            if _skipped(shlex.split(raw, comments=True)):
                continue
            res = subprocess.run(["bash", "-c", raw], cwd=ws, env=env, capture_output=True, text=True,
                                 timeout=int(block.options.get("timeout", "900")))
            assert res.returncode == want, (f"{block.id}: `{raw}` exited {res.returncode}, expected {want}:\n"
                                            f"{res.stderr[-3000:]}")
    check_creates(block, ws)


def run_python_block(block: Block, ws: Path, monkeypatch) -> None:
    """Run the block as a user would: saved as a script and run with this Python (a script is what
    exposes a missing ``if __name__ == "__main__":`` guard or a ``__main__`` reference)."""
    script = ws / "docs_block.py"
    script.write_text(block.text)
    env = {**os.environ, **workspace_env(ws)}
    res = subprocess.run([sys.executable, str(script)], cwd=ws, env=env, capture_output=True, text=True,
                         timeout=int(block.options.get("timeout", "600")))
    want = int(block.options.get("exit", "0"))
    assert res.returncode == want, f"{block.id} exited {res.returncode}:\n{res.stderr[-3000:]}"
    check_creates(block, ws)


def check_creates(block: Block, ws: Path) -> None:
    for pattern in filter(None, block.options.get("creates", "").split(",")):
        found = [p for p in ws.glob(pattern) if p.is_file() and p.stat().st_size > 0]
        assert found, f"{block.id}: nothing matches {pattern} after the block ran"
