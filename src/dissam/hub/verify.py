"""Checking a model file against its registry entry.

(The networks and state-dict readers are imported inside the checks: ``dissam models list`` and the
registry import this module, and stay free of torch until a file is actually checked.)

Four checks, each run when the entry has what it needs:

* ``size``: bytes on disk;
* ``sha256`` and ``md5``: the full digests (the file is read once, in 8 MiB blocks, for both; MD5
  because it is what some publishers pin, e.g. rembg for its ONNX files);
* ``check``: the network's exact key set and shapes. ``refiner:<variant>`` compares the state dict
  (read with ``weights_only=True``, wrappers and ``module.`` prefixes removed) with
  ``build_refiner(variant).state_dict()`` built on the ``meta`` device (no memory for weights);
  ``sam:<size>`` checks that the file is an official SAM state dict of that size.

:func:`verify_file` raises :class:`~dissam.errors.VerificationError` naming every difference; the
downloader calls it on the temporary file, before the rename, so a bad file never takes the final name.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dissam.errors import CheckpointError, VerificationError
from dissam.hub.registry import ModelEntry

__all__ = ["file_sha256", "file_digests", "expected_refiner_shapes", "check_refiner_state_dict", "verify_file",
           "VerifyReport"]

_BLOCK = 8 << 20
_LABELS = {"sha256": "SHA-256", "md5": "MD5"}
# hidden size and depth of the official SAM image encoders
SAM_SIZES = {"vit_b": (768, 12), "vit_l": (1024, 24), "vit_h": (1280, 32)}


@dataclass
class VerifyReport:
    """What :func:`verify_file` checked (``checks``: human-readable lines, one per check passed)."""

    path: Path
    checks: list[str] = field(default_factory=list)


def file_digests(path: str | os.PathLike, names: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """``{name: hex digest}`` of the file for each ``hashlib`` name in ``names``, in one read."""
    # usedforsecurity=False: MD5 here checks a download against a published pin (FIPS builds allow it)
    hashes = {n: hashlib.new(n, usedforsecurity=False) for n in names}
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            for h in hashes.values():
                h.update(block)
    return {n: h.hexdigest() for n, h in hashes.items()}


def file_sha256(path: str | os.PathLike) -> str:
    return file_digests(path)["sha256"]


def expected_refiner_shapes(variant) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of ``build_refiner(variant)``'s state dict (``variant``: a name of
    ``REFINER_VARIANTS`` or a ``RefinerConfig``), in state-dict order. Built on the meta device: no
    memory is allocated for weights."""
    from dissam.models.isnet import REFINER_VARIANTS, RefinerConfig

    cfg = REFINER_VARIANTS.get(variant) if isinstance(variant, str) else variant
    if cfg is None:
        raise VerificationError(f"unknown refiner variant {variant!r}; known: {', '.join(REFINER_VARIANTS)}")
    if isinstance(cfg, dict):
        cfg = RefinerConfig.from_dict(cfg)
    return dict(_shapes(cfg.arch, cfg.in_ch, cfg.out_ch, float(cfg.width)))


@functools.lru_cache(maxsize=16)
def _shapes(arch: str, in_ch: int, out_ch: int, width: float) -> tuple[tuple[str, tuple[int, ...]], ...]:
    import torch

    from dissam.models.isnet import RefinerConfig, build_refiner

    with torch.device("meta"):
        net = build_refiner(RefinerConfig(arch, in_ch, out_ch, width))
    return tuple((k, tuple(v.shape)) for k, v in net.state_dict().items())


def check_refiner_state_dict(sd: Mapping, variant, source: str = "state dict") -> int:
    """Raise :class:`VerificationError` unless ``sd`` has exactly the keys and shapes of ``variant``
    (a variant name or a ``RefinerConfig``). Returns the number of tensors."""
    expected = expected_refiner_shapes(variant)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k}: {tuple(sd[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in sd and tuple(sd[k].shape) != expected[k]
    ]
    if missing or unexpected or wrong:
        what = repr(variant) if isinstance(variant, str) else str(variant)
        parts = [f"{source} is not the {what} network:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                more = f" ... and {len(items) - 10} more" if len(items) > 10 else ""
                parts.append(f"  {title} ({len(items)}): " + ", ".join(items[:10]) + more)
        raise VerificationError("\n".join(parts))
    return len(expected)


def _check_sam(path: Path, size: str) -> str:
    from dissam.checkpoints import read_state_dict
    from dissam.checkpoints.sam import infer_sam_config

    sd = read_state_dict(path)
    try:
        cfg = infer_sam_config(sd)
    except CheckpointError as exc:
        raise VerificationError(f"{path} is not an official SAM checkpoint: {exc}") from exc
    vision = cfg["vision_config"]
    got = (int(vision["hidden_size"]), int(vision["num_hidden_layers"]))
    if size in SAM_SIZES and got != SAM_SIZES[size]:
        raise VerificationError(
            f"{path} is a SAM with hidden size {got[0]} and {got[1]} blocks, not {size} "
            f"({SAM_SIZES[size][0]}, {SAM_SIZES[size][1]})"
        )
    return f"SAM {size}: hidden {got[0]}, {got[1]} blocks, {len(sd)} tensors"


def verify_file(entry: ModelEntry, path: str | os.PathLike, structure: bool | None = None) -> VerifyReport:
    """Check ``path`` against ``entry``: size, SHA-256 and, where the entry has one, the structural
    ``check``. ``structure=None`` runs the structural check only when there is no SHA-256 to rely on
    (a matching digest already proves the file); ``True`` always, ``False`` never. SHA-256 and MD5
    are computed in one read of the file.

    Raises:
        VerificationError: the file differs (the message names what differs and what to do).
        CheckpointError: the file cannot be read as weights at all (for structural checks).
    """
    p = Path(path)
    report = VerifyReport(p)
    if not p.is_file():
        raise VerificationError(f"{entry.name}: {p} does not exist")
    nbytes = p.stat().st_size
    if entry.size is not None:
        if nbytes != entry.size:
            raise VerificationError(
                f"{entry.name}: {p} has {nbytes:,} bytes, expected {entry.size:,} "
                "(an interrupted or wrong file; delete it and download again)"
            )
        report.checks.append(f"size {nbytes:,} bytes")
    pinned = {n: v.lower() for n, v in (("sha256", entry.sha256), ("md5", entry.md5)) if v}
    digests = file_digests(p, tuple(pinned)) if pinned else {}
    for name, want in pinned.items():
        if digests[name] != want:
            raise VerificationError(
                f"{entry.name}: {_LABELS[name]} of {p} is {digests[name]}, expected {want} "
                "(a corrupt or different file; delete it and download again)"
            )
        report.checks.append(f"{name} {want[:12]}…")
    run_structure = structure if structure is not None else not pinned
    if run_structure and entry.check:
        what, _, arg = entry.check.partition(":")
        if what == "refiner":
            from dissam.checkpoints import read_state_dict

            n = check_refiner_state_dict(read_state_dict(p), arg, str(p))
            report.checks.append(f"{n} tensors with the keys and shapes of {arg!r}")
        elif what == "sam":
            report.checks.append(_check_sam(p, arg))
        else:
            raise VerificationError(f"{entry.name}: unknown check {entry.check!r}")
    if not report.checks:
        report.checks.append(f"exists ({nbytes:,} bytes; nothing published to check it against)")
    return report


def identify(path: str | os.PathLike, candidates: list[ModelEntry]) -> list[tuple[ModelEntry, VerifyReport]]:
    """The registry entries ``path`` is a valid copy of (for ``dissam models verify FILE``).

    Entries with a SHA-256 or MD5 match on the digests (computed once, in one read); entries with only
    a structural check match on it (the state dict is read once per distinct check)."""
    p = Path(path)
    out: list[tuple[ModelEntry, VerifyReport]] = []
    with_digest = [e for e in candidates if e.sha256 or e.md5]
    if with_digest:
        digests = file_digests(p, ("sha256", "md5"))
        nbytes = p.stat().st_size
        for e in with_digest:
            pins = [(n, v.lower()) for n, v in (("sha256", e.sha256), ("md5", e.md5)) if v]
            if all(digests[n] == v for n, v in pins) and (e.size is None or e.size == nbytes):
                out.append((e, VerifyReport(p, [f"{n} {v[:12]}…" for n, v in pins] + [f"size {nbytes:,} bytes"])))
    if out:
        return out
    sd = None
    for e in candidates:
        if e.sha256 or e.md5 or not e.check or not e.check.startswith("refiner:"):
            continue
        if sd is None:
            from dissam.checkpoints import read_state_dict

            sd = read_state_dict(p)
        try:
            n = check_refiner_state_dict(sd, e.check.split(":", 1)[1], str(p))
        except VerificationError:
            continue
        out.append((e, VerifyReport(p, [f"{n} tensors with the keys and shapes of {e.check.split(':', 1)[1]!r}"])))
    return out
