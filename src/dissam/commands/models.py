"""``dissam models``: list, download, locate and verify the named models."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "list, download, locate and verify named models (SAM, salient-object stage 1s, refiners, built-in)"
DESCRIPTION = """\
  dissam models list [--json]            every named model, its source and whether it is cached
  dissam models download NAME...         fetch into the cache (verified; resumes; --model dis-sam for a pair)
  dissam models path NAME                print the local path (exit 1 if it is not there yet)
  dissam models verify [NAME|FILE...]    check cached models (no argument: all) or a file (--as NAME)

Cache: $DISSAM_HOME, else $XDG_CACHE_HOME/dissam, else ~/.cache/dissam (files under models/);
Hugging Face repositories stay in the Hugging Face cache. Offline: DISSAM_OFFLINE=1 or HF_HUB_OFFLINE=1.
Mirrors: DISSAM_MIRROR, DISSAM_URL_<NAME>, or a registry file (DISSAM_REGISTRY); see docs/models.md.
Every --sam / --refiner of the other commands accepts these names too.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="the registry, with cache status")
    ls.add_argument("--json", action="store_true", help="print JSON")
    dl = sub.add_parser("download", help="fetch models into the cache")
    dl.add_argument("names", nargs="*", metavar="NAME")
    dl.add_argument("--model", metavar="PRESET", help="both models of a preset (dis-sam = sam-vit-l + dis-sam)")
    dl.add_argument("--force", action="store_true", help="delete a cached file and download it again")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    pa = sub.add_parser("path", help="print where a model is (no download)")
    pa.add_argument("name", metavar="NAME")
    ve = sub.add_parser("verify", help="check cached models or a file against the registry")
    ve.add_argument("targets", nargs="*", metavar="NAME|FILE")
    ve.add_argument("--as", dest="as_name", metavar="NAME", help="check FILE against this entry")
    ve.add_argument("--deep", action="store_true",
                    help="also read the weights and check keys and shapes when a checksum already matched")


def _source(e) -> str:
    if e.kind == "builtin":
        return "built-in (in the package)"
    if e.kind == "hf":
        return f"hf://{e.hub_id}"
    return e.url or f"manual: {e.manual}"


def _status(e) -> tuple[str, str | None]:
    from dissam.hub.store import cached_path, local_path

    path = cached_path(e)
    if path is not None:
        return "cached", str(path)
    if e.kind == "file" and not e.url:
        return "manual", str(local_path(e))
    return "not cached", str(local_path(e)) if e.kind == "file" else None


def _list(args) -> int:
    from dissam.hub import PRESETS, entries, models_dir

    rows = []
    for e in entries().values():
        status, path = _status(e)
        rows.append({"name": e.name, "role": e.role, "kind": e.kind, "description": e.description,
                     "source": _source(e), "size": e.size, "sha256": e.sha256, "md5": e.md5, "check": e.check,
                     "status": status, "path": path, "license": e.license, "noncommercial": e.noncommercial})
    if args.json:
        presets = {n: {"stage1": p.stage1, "sam": p.sam, "refiner": p.refiner} for n, p in PRESETS.items()}
        print(json.dumps({"cache": str(models_dir()), "models": rows, "presets": presets}, indent=1))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"cache: {models_dir()}")
    for r in rows:
        size = f"{r['size'] / 1e6:,.0f} MB" if r["size"] else ""
        print(f"  {r['name']:<{w}}  {r['role']:<7}  {r['status']:<10}  {size:>9}  {r['description']}")
        print(f"  {'':<{w}}  {r['source']}")
        if r["license"]:
            marker = "NON-COMMERCIAL: " if r["noncommercial"] else ""
            print(f"  {'':<{w}}  licence: {marker}{r['license']}")
    print("presets (--model):")
    for name, p in PRESETS.items():
        weights = f" ({p.sam})" if p.sam else " (no weights to download)"
        print(f"  {name}: stage1={p.stage1}{weights}, refiner={p.refiner}: {p.description}")
    return 0


def _download(args) -> int:
    from dissam.errors import DisSamError
    from dissam.hub import fetch, get_entry, preset_sources
    from dissam.hub.store import local_path

    names = list(args.names)
    if args.model:
        names += [n for n in preset_sources(args.model) if n]
    if not names:
        raise DisSamError("name at least one model (see `dissam models list`) or --model PRESET")
    failed = 0
    for name in dict.fromkeys(names):
        entry = get_entry(name)
        if args.force and entry.kind == "file" and local_path(entry).is_file():
            local_path(entry).unlink()
        try:
            path = fetch(entry, progress=not args.no_progress)
        except DisSamError as exc:
            failed += 1
            msg = str(exc)
            print(msg if msg.startswith(entry.name) else f"{entry.name}: {msg}", file=sys.stderr)
            continue
        print(f"{entry.name}: {path}")
    return 1 if failed else 0


def _path(args) -> int:
    from dissam.hub import get_entry
    from dissam.hub.store import cached_path, local_path

    entry = get_entry(args.name)
    path = cached_path(entry)
    if path is not None:
        print(path)
        return 0
    where = f" (it goes to {local_path(entry)})" if entry.kind == "file" else ""
    print(f"{entry.name} is not cached yet{where}: run `dissam models download {entry.name}`", file=sys.stderr)
    return 1


def _verify_one(entry, path, deep: bool) -> bool:
    from dissam.errors import DisSamError
    from dissam.hub.verify import verify_file

    try:
        report = verify_file(entry, path, structure=True if deep else None)
    except DisSamError as exc:
        msg = str(exc)
        print(f"FAIL {msg}" if msg.startswith(f"{entry.name}:") else f"FAIL {entry.name}: {msg}")
        return False
    print(f"ok   {entry.name}: {path} ({'; '.join(report.checks)})")
    return True


def _verify(args) -> int:
    from pathlib import Path

    from dissam.errors import DisSamError
    from dissam.hub import entries, find_entry, get_entry
    from dissam.hub.download import manual_instructions
    from dissam.hub.store import cached_path, local_path
    from dissam.hub.verify import identify

    reg = entries()
    ok = True
    if not args.targets:
        checked = 0
        for e in reg.values():
            path = cached_path(e)
            if path is None:
                continue
            checked += 1
            if e.kind == "hf":
                print(f"ok   {e.name}: {path} (Hugging Face snapshot with config.json and weights)")
            else:
                ok &= _verify_one(e, path, args.deep)
        if not checked:
            print("no model is cached yet (see `dissam models list`)")
        return 0 if ok else 1
    for target in args.targets:
        p = Path(target).expanduser()
        if p.is_file():
            if args.as_name:
                ok &= _verify_one(get_entry(args.as_name), p, args.deep)
                continue
            cands = [e for e in reg.values() if e.kind in ("file", "builtin")]
            try:
                matches = identify(p, cands)
            except DisSamError as exc:
                print(f"FAIL {p}: {exc}")
                ok = False
                continue
            if not matches:
                print(f"FAIL {p}: matches no registry entry (no checksum or key set fits); "
                      "use --as NAME to see the differences")
                ok = False
            for e, report in matches:
                print(f"ok   {p} is {e.name} ({'; '.join(report.checks)}); cache path: {local_path(e)}")
            continue
        entry = find_entry(target)
        if entry is None:
            get_entry(target)  # raises with suggestions
        path = cached_path(entry)
        if path is None:
            ok = False
            if entry.kind == "file":
                dest = local_path(entry)
                print(f"FAIL {entry.name}: not in the cache ({dest}). To put it there:\n"
                      + manual_instructions(dest, entry.url, entry.manual, entry.notes, entry.name))
            else:
                print(f"FAIL {entry.name}: not in the cache; run `dissam models download {entry.name}`")
            continue
        if entry.kind == "hf":
            print(f"ok   {entry.name}: {path} (Hugging Face snapshot with config.json and weights)")
        else:
            ok &= _verify_one(entry, path, args.deep)
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "models_command", None)
    if action is None:
        print(DESCRIPTION)
        return 2
    return {"list": _list, "download": _download, "path": _path, "verify": _verify}[action](args)
