"""``dissam convert``: an official ``.pth`` <-> a Hugging Face Hub-style folder, losslessly."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "convert a refiner .pth to a Hub folder (config.json + model.safetensors + README.md) and back"
DESCRIPTION = """\
  dissam convert dis-sam.pth  out/dis-sam        .pth (or dissam .safetensors) -> Hub folder
  dissam convert out/dis-sam  dis-sam-again.pth  Hub folder -> plain .pth state dict
  dissam convert sam_vit_l_0b3195.pth out/sam-vit-l    official SAM -> transformers SamModel folder (one way)

Refiners (DIS-SAM, IS-Net, GT encoder, models from `dissam train`) convert both ways without
changing a bit of any tensor; the key set and shapes are checked both ways. SOURCE may also be a
registry name (dis-sam, isnet, sam-vit-l, ...; see `dissam models list`). --push ORG/NAME uploads the
folder to the Hugging Face Hub afterwards (needs `hf auth login`).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help=".pth / .safetensors file, Hub folder, or registry name")
    p.add_argument("dest", metavar="DEST", help="output folder (from a file) or .pth file (from a folder)")
    p.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    p.add_argument("--push", metavar="ORG/NAME", help="upload the written folder to this Hub repository")
    p.add_argument("--private", action="store_true", help="with --push: create the repository private")


def _source_path(value: str) -> tuple[Path, str | None]:
    """(local path, role) for a path or a registry name."""
    p = Path(value).expanduser()
    if p.exists():
        return p, None
    from dissam.errors import DisSamError
    from dissam.hub import fetch, find_entry

    entry = find_entry(value)
    if entry is None:
        raise DisSamError(f"{value} is neither a file, a folder nor a registry name (see `dissam models list`)")
    if entry.role == "salient":
        raise DisSamError(f"{entry.name} is an ONNX file that --stage1 {entry.name} runs as it is: nothing to convert")
    return fetch(entry), entry.role


def _is_sam_state_dict(path: Path) -> bool:
    from dissam.checkpoints import read_state_dict

    return any(k.startswith("image_encoder.") for k in read_state_dict(path))


def run(args: argparse.Namespace) -> int:
    from dissam.errors import DisSamError
    from dissam.hub.folder import folder_to_pth, is_refiner_folder, pth_to_folder

    src, role = _source_path(args.source)
    dest = Path(args.dest).expanduser()
    if dest.exists() and not args.overwrite:
        raise DisSamError(f"{dest} exists; pass --overwrite to replace it")
    if src.is_dir():
        if not is_refiner_folder(src):
            raise DisSamError(
                f"{src} is not a refiner folder (config.json + model.safetensors written by dissam); "
                "SAM folders are read by --sam directly and need no conversion"
            )
        if args.push:
            raise DisSamError("--push uploads a folder: convert a .pth into a folder to push it")
        out = folder_to_pth(src, dest)
        print(f"dissam convert: {src} -> {out}")
        return 0
    if role == "sam" or (role is None and _is_sam_state_dict(src)):
        from dissam.stages.sam import load_sam

        out = load_sam(str(src)).save_pretrained(dest)
        print(f"dissam convert: {src} -> {out} (transformers SamModel folder; `--sam {out}` loads it)")
    else:
        out = pth_to_folder(src, dest)
        print(f"dissam convert: {src} -> {out} (config.json, model.safetensors, README.md)")
    if args.push:
        from huggingface_hub import HfApi

        api = HfApi()
        repo = api.create_repo(args.push, private=args.private or None, exist_ok=True).repo_id
        info = api.upload_folder(repo_id=repo, folder_path=str(out), commit_message="dissam convert")
        print(f"dissam convert: pushed to {getattr(info, 'commit_url', repo)}")
    return 0
