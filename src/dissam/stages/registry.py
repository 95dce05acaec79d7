"""The stage-1 registry: every stage 1 dissam can run, in one table.

Each stage is a :class:`StageSpec`: its name (what ``--stage1`` takes), its label on the app's page,
the function that loads it, whether it needs weights, which ``config.json`` model types and hub ids
select it when ``--stage1 auto`` looks at a source, the video tracker that propagates it (if any),
the backends and precisions its image encoder runs on, and its licence. The command line's choices,
the app's labels, video and the benchmark read this table; nothing else lists stage kinds.

Loading goes through :func:`load_stage1`; :func:`resolve_stage` holds the one rule for what
``stage1`` means when it is ``None`` or ``"auto"`` (including the offline default when no weights are
given). The table is light: loaders are named as ``"module:function"`` strings and imported only
when a stage is loaded, so the command line lists the choices without importing torch.

Third-party stages register through the ``dissam.stage1`` entry-point group: each entry point loads
to a :class:`StageSpec` (or a callable returning one), e.g. in the plugin's ``pyproject.toml``::

    [project.entry-points."dissam.stage1"]
    efficientsam = "dissam_efficientsam.spec:SPEC"

:func:`register_stage` does the same from Python (a notebook, a test).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dissam.errors import CheckpointError, DisSamError
from dissam.hub.registry import REGISTRY
from dissam.hub.sources import exists, is_hub_id
from dissam.runtime import BACKENDS, PRECISIONS
from dissam.stages.salient_models import SALIENT_MODELS, U2NETP, SalientModel

__all__ = [
    "StageSpec",
    "ENTRY_POINT_GROUP",
    "OFFLINE_DEFAULT",
    "REFINE_ONLY",
    "stage_specs",
    "stage_names",
    "get_spec",
    "register_stage",
    "detect_stage",
    "resolve_stage",
    "load_stage1",
    "check_runtime",
    "read_model_type",
    "log_offline_default",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dissam.stage1"
OFFLINE_DEFAULT = "u2netp-auto"
"""The stage 1 used when no weights are given, by every command and by the Python API."""
OFFLINE_FALLBACK = "grabcut"
"""The stage 1 used instead of :data:`OFFLINE_DEFAULT` where ONNX Runtime is not installed."""
REFINE_ONLY = "none"
"""The ``stage1`` value of a predictor without stage 1: every call passes its own coarse mask."""

_TORCH_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class StageSpec:
    """One stage 1.

    Attributes:
        name: what ``--stage1`` and ``load_stage1`` take (``"sam"``, ``"u2netp-auto"``).
        label: what the app's page calls it.
        summary: one line for listings (``--help``, docs).
        loader: ``"module:function"``; the function is called as ``loader(source, device, **options)``
            and returns a :class:`~dissam.stages.base.Stage1`.
        needs_weights: ``True``: a weights source (``--sam``) is required.
        bundled: runs on what ships with dissam (no download).
        model_types: ``config.json`` ``model_type`` values that select this stage under ``auto``.
        hub_markers: lower-case substrings of a hub id that select it under ``auto`` (checked in table
            order).
        file_suffixes: a weights *file* with one of these suffixes selects it under ``auto``.
        hub_example: a hub id (or registry name) to show in hints.
        weights_names: registry names (``dissam models``) whose weights select it under ``auto``
            (``--sam isnet-general-use`` alone runs ``--stage1 isnet-general-use``).
        video_loader: ``"module:function"`` loading a tracker that propagates the object through a clip
            (``loader(source, device)``); ``None``: the image stage is re-prompted on every frame.
        backends: the image encoder's runtimes (``--backend``); ``None``: the stage runs on a fixed
            runtime of its own (U²-Netp on ONNX Runtime, GrabCut on OpenCV) and the flags apply to the
            refiner alone.
        precisions: the image encoder's precisions (``--precision``).
        license: the weights' licence.
        options: keyword arguments for the loader (what tells variants of one loader apart).
        text: the stage also answers text prompts (SAM 3).
    """

    name: str
    label: str
    summary: str
    loader: str
    needs_weights: bool = True
    bundled: bool = False
    model_types: tuple[str, ...] = ()
    hub_markers: tuple[str, ...] = ()
    file_suffixes: tuple[str, ...] = ()
    hub_example: str | None = None
    weights_names: tuple[str, ...] = ()
    video_loader: str | None = None
    backends: tuple[str, ...] | None = ("torch",)
    precisions: tuple[str, ...] = ("fp32",)
    license: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    text: bool = False

    def load(self, source: str | os.PathLike | None, device=None, **options) -> Any:
        """Import the loader and call it (``options`` add to or override :attr:`options`)."""
        return _import(self.loader)(source, device, **{**self.options, **options})


def _import(target: str) -> Callable:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_U2NETP = dict(loader="dissam.stages.u2netp:load_stage", needs_weights=False, bundled=True, backends=None,
               license="Apache-2.0 (U-2-Net)")


def _salient_spec(model: SalientModel) -> StageSpec:
    """The stage 1 of a downloadable salient-object network: its weights' registry entry gives the
    licence (and marks a non-commercial one in the label)."""
    weights = REGISTRY[str(model.weights)]
    label = f"{model.label} (non-commercial)" if weights.noncommercial else model.label
    return StageSpec(model.name, label, model.summary, "dissam.stages.salient:load_stage", backends=None,
                     hub_example=weights.name, weights_names=(weights.name,), license=weights.license,
                     options={"model": model.name})

BUILTIN_STAGES: tuple[StageSpec, ...] = (
    StageSpec("sam", "SAM", "SAM ViT-B/L/H (the paper's stage 1: ViT-L)", "dissam.stages.sam:load_stage",
              model_types=("sam",), file_suffixes=(".pth", ".pt", ".bin", ".safetensors", ".ckpt"),
              hub_example="facebook/sam-vit-large", backends=("torch", "onnx"), precisions=PRECISIONS,
              license="Apache-2.0", options={"hq": None}),
    StageSpec("sam-hq", "HQ-SAM", "HQ-SAM ViT-B/L/H", "dissam.stages.sam:load_stage", model_types=("sam_hq",),
              hub_markers=("hq",), hub_example="syscv-community/sam-hq-vit-large", backends=("torch", "onnx"),
              precisions=PRECISIONS, license="Apache-2.0", options={"hq": True}),
    StageSpec("sam2", "SAM 2.1", "SAM 2 / 2.1, Hiera tiny to large", "dissam.stages.sam2:load_stage",
              model_types=("sam2", "sam2_video"), hub_markers=("sam2",), hub_example="facebook/sam2.1-hiera-tiny",
              video_loader="dissam.video.trackers:load_sam2_video", precisions=_TORCH_PRECISIONS,
              license="Apache-2.0"),
    StageSpec("sam3", "SAM 3", "SAM 3 (boxes: its tracker; text: its detector)",
              "dissam.stages.sam3:load_stage",
              model_types=("sam3", "sam3_tracker", "sam3_video", "sam3_tracker_video"), hub_markers=("sam3",),
              hub_example="facebook/sam3", video_loader="dissam.video.trackers:load_sam3_video",
              precisions=_TORCH_PRECISIONS, license="SAM License (Meta)", text=True),
    StageSpec("grabcut", "GrabCut", "OpenCV GrabCut in the box (no weights)", "dissam.stages.grabcut:load_stage",
              needs_weights=False, backends=None, license="none (no weights)"),
    StageSpec("u2netp", U2NETP.label, U2NETP.summary, **_U2NETP, options={"grabcut": False}),
    StageSpec("u2netp-grabcut", "U²-Netp + GrabCut", "GrabCut started from U²-Netp's mask", **_U2NETP,
              options={"grabcut": True, "auto": False}),
    StageSpec("u2netp-auto", "U²-Netp auto",
              "U²-Netp's mask, or GrabCut's where it separates the object's colours (the offline default)",
              **_U2NETP, options={"grabcut": True, "auto": True}),
    *(_salient_spec(m) for m in SALIENT_MODELS.values()),
)

_REGISTERED: dict[str, StageSpec] = {}
_PLUGINS: dict[str, StageSpec] | None = None


def register_stage(spec: StageSpec, replace: bool = False) -> None:
    """Add a stage 1 to the registry of this process (a name already taken needs ``replace=True``)."""
    if not isinstance(spec, StageSpec):
        raise DisSamError(f"register_stage takes a StageSpec, not {type(spec).__name__}")
    if spec.name in ("auto", REFINE_ONLY) or not spec.name:
        raise DisSamError(f"{spec.name!r} cannot name a stage 1 (it is a selector of its own)")
    if spec.name in stage_specs() and not replace:
        raise DisSamError(f"a stage 1 named {spec.name!r} is registered already; pass replace=True to replace it")
    _REGISTERED[spec.name] = spec


def _plugins() -> dict[str, StageSpec]:
    """Stages of installed plugins (entry-point group ``dissam.stage1``), read once per process; a
    broken plugin is reported and skipped, never fatal."""
    global _PLUGINS
    if _PLUGINS is None:
        found: dict[str, StageSpec] = {}
        builtin = {s.name for s in BUILTIN_STAGES}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                spec = obj() if callable(obj) and not isinstance(obj, StageSpec) else obj
                if not isinstance(spec, StageSpec):
                    raise TypeError(f"it loads to {type(spec).__name__}, not a StageSpec")
            except Exception as exc:  # a plugin must not break the command line
                log.warning("stage-1 plugin %s (%s) is skipped: %s", ep.name, ep.value, exc)
                continue
            if spec.name in builtin:
                log.warning("stage-1 plugin %s is skipped: %r is a built-in stage", ep.value, spec.name)
                continue
            found[spec.name] = spec
        _PLUGINS = found
    return _PLUGINS


def stage_specs() -> dict[str, StageSpec]:
    """Every stage 1 by name: the built-in ones, then plugins and :func:`register_stage` ones."""
    return {**{s.name: s for s in BUILTIN_STAGES}, **_plugins(), **_REGISTERED}


def stage_names() -> tuple[str, ...]:
    """The names ``--stage1`` takes (besides ``auto``), in table order."""
    return tuple(stage_specs())


def get_spec(name: str) -> StageSpec:
    """The spec of ``name``; an unknown name is a :class:`DisSamError` that lists the known ones."""
    specs = stage_specs()
    if name not in specs:
        close = difflib.get_close_matches(str(name), list(specs), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise DisSamError(f"unknown stage 1 {name!r}{hint}: use one of {', '.join(specs)} or auto")
    return specs[name]


def offline_default() -> str:
    """:data:`OFFLINE_DEFAULT`, or GrabCut where ONNX Runtime (which runs U²-Netp) is missing."""
    if importlib.util.find_spec("onnxruntime") is None:
        return OFFLINE_FALLBACK
    return OFFLINE_DEFAULT


def read_model_type(source: str | os.PathLike) -> str | None:
    """``model_type`` of a local Hugging Face folder's ``config.json`` (``None`` if not a folder or no
    config)."""
    cfg = Path(source).expanduser() / "config.json"
    if not cfg.is_file():
        return None
    try:
        return str(json.loads(cfg.read_text()).get("model_type", "")) or None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {cfg}: {exc}") from exc


def detect_stage(source: str | os.PathLike | None) -> str:
    """The stage 1 that ``source`` holds: the offline default for ``None``; for a registry name of
    weights, the stage whose ``weights_names`` has it; for a file, the stage whose ``file_suffixes`` it
    has; for a folder, the one whose ``model_types`` its ``config.json`` names; for a hub id, the first
    whose ``hub_markers`` occur in it, else ``sam``."""
    if source is None:
        return offline_default()
    specs = list(stage_specs().values())
    if not exists(source):
        named = [s.name for s in specs if os.fspath(source).strip().lower() in s.weights_names]
        if named:
            return named[0]
    path = Path(os.fspath(source)).expanduser()
    if path.is_file():
        for spec in specs:
            if path.suffix.lower() in spec.file_suffixes:
                return spec.name
        if path.suffix.lower() == ".onnx":
            raise DisSamError(f"cannot tell which stage 1 the ONNX file {path} holds: pass --stage1 with it "
                              f"(u2netp for a U²-Netp export; {', '.join(SALIENT_MODELS)})")
        return "sam"  # an official SAM state dict under another suffix; load_sam says if it is not one
    if path.is_dir():
        model_type = read_model_type(path)
        if model_type is None:
            raise DisSamError(f"{path} has no config.json: cannot tell which stage 1 it holds; pass --stage1")
        for spec in specs:
            if model_type in spec.model_types:
                return spec.name
        known = sorted({t for s in specs for t in s.model_types})
        raise DisSamError(f"{path} holds a {model_type!r} model, which is no stage 1 dissam knows ({', '.join(known)})")
    name = os.fspath(source).lower()
    if is_hub_id(source):
        for spec in specs:
            if any(marker in name for marker in spec.hub_markers):
                return spec.name
    return "sam"


def resolve_stage(stage1: str | None, source: str | os.PathLike | None = None) -> str:
    """What ``stage1`` names, as a registry name or :data:`REFINE_ONLY`: ``None`` and ``"auto"`` detect
    it from ``source`` (no source: the offline default); other values must be registered."""
    if stage1 in (None, "auto"):
        return detect_stage(source)
    if stage1 == REFINE_ONLY:
        return REFINE_ONLY
    return get_spec(stage1).name


def log_offline_default(kind: str) -> None:
    """Say which stage 1 runs because no weights were given (the command line's and the API's notice)."""
    logger = logging.getLogger("dissam")  # the package's own name: the notice reads "WARNING dissam: ..."
    if kind == "grabcut":
        logger.warning("ONNX Runtime is not installed, so U²-Netp cannot run: using the weight-free GrabCut stage 1")
    else:
        logger.warning(
            "no SAM weights given: using the bundled U²-Netp stage 1 (with GrabCut's edges where they separate the "
            "object's colours better, and GrabCut where U²-Netp finds nothing in a box; lower quality than SAM); "
            "pass --model dis-sam, --sam sam-vit-l (or an official sam_vit_*.pth, a Hugging Face SAM folder or id) "
            "for the paper's pipeline"
        )


def check_runtime(spec: StageSpec, backend: str | None, precision: str | None) -> None:
    """Raise :class:`DisSamError` when ``spec``'s image encoder cannot run on ``backend`` at
    ``precision`` (stages on a fixed runtime accept any: the flags are for the refiner there)."""
    if spec.backends is None:
        return
    if backend not in (None, "auto") and backend in BACKENDS and backend not in spec.backends:
        raise DisSamError(f"--backend {backend}: stage 1 {spec.name} runs on {' or '.join(spec.backends)} only")
    if precision not in (None, "fp32") and precision not in spec.precisions:
        raise DisSamError(f"--precision {precision}: stage 1 {spec.name} runs at "
                          f"{', '.join(spec.precisions)} only")


def load_stage1(kind: str | None, source: str | os.PathLike | None = None, device=None, *,
                backend: str | None = None, precision: str | None = None):
    """Load a stage 1.

    Args:
        kind: a registry name (:func:`stage_names`), or ``None`` / ``"auto"`` (:func:`detect_stage`).
        source: its weights (a registry name, a file, a Hugging Face folder or hub id); ignored by
            stages that need none (``grabcut``); optional for the bundled ones (``u2netp`` takes an
            ``.onnx`` file instead of the bundled one); for the salient-object stages (``u2net``,
            ``isnet-general-use``, ...) their registry name or an ``.onnx`` file (IS-Net also its
            ``.pth``).
        device: ``"cpu"``, ``"cuda"``, ... (``None``: best available).
        backend, precision: the image encoder's runtime (checked against the spec); ``None``: torch fp32.
    Returns:
        a :class:`~dissam.stages.base.Stage1`.
    """
    name = resolve_stage(kind, source)
    if name == REFINE_ONLY:
        raise DisSamError("stage1='none' loads no stage 1 (refine-only use): pass coarse masks to predict()")
    spec = get_spec(name)
    if spec.needs_weights and source is None:
        example = f" (e.g. {spec.hub_example})" if spec.hub_example else ""
        raise DisSamError(f"--stage1 {name} needs weights: pass --sam with its file, Hugging Face folder or hub id"
                          f"{example}")
    check_runtime(spec, backend, precision)
    stage = spec.load(source, device)
    if backend not in (None, "torch") or precision not in (None, "fp32"):
        if hasattr(stage, "use_runtime"):
            stage.use_runtime(backend or "torch", precision or "fp32")
    return stage
