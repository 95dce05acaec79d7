"""``load_refiner``: any refiner source (a registry name, a file, a folder, a hub id or a state dict)
to a ready :class:`~dissam.refiner.Refiner`.

Names and hub ids are resolved by :mod:`dissam.hub.store` (downloaded on first use, cached); the
weights are then read by :mod:`dissam.checkpoints` (``weights_only=True``, strict keys and shapes) or,
for a Hub-style folder, by :mod:`dissam.hub.folder`. The network (3-channel IS-Net, 5-channel
DIS-SAM refiner, GT encoder; any width) is read off the tensors, never off a file name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from dissam.checkpoints import (
    build_with_weights,
    infer_refiner_config,
    load_checkpoint,
    read_state_dict,
    strip_prefixes,
    tensor_versions,
)
from dissam.hub.store import resolve_refiner_source
from dissam.models.isnet import RefinerConfig, build_refiner
from dissam.refiner import Refiner

__all__ = ["load_refiner"]


def load_refiner(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    eval_mode: bool = True,
) -> Refiner:
    """Load a refiner (or GT encoder).

    Args:
        source: an official ``.pth`` (``isnet.pth``, the DIS-SAM checkpoint), a dissam checkpoint
            (``NAME.safetensors`` + ``NAME.json``, or the folder holding ``model.safetensors``), a
            Hub-style folder (``config.json`` + ``model.safetensors``), a registry name (``dis-sam``,
            ``isnet``, ``dis-sam-compact``), a Hugging Face id of such a folder, or a state dict.
        device: where the network goes.
        eval_mode: put the network in eval mode (BatchNorm with running statistics).
    Returns:
        a :class:`~dissam.refiner.Refiner`: the network (``.net``) with its config, the input size it
        was trained at, the prompt channels it was trained without and its source.
    Raises:
        CheckpointError: missing, truncated or unsafe file, or weights that match no known network.
        OfflineError / DownloadError: a name or hub id that is not cached and cannot be fetched.
    """
    if isinstance(source, Mapping):
        sd, name = strip_prefixes(source), "state dict"
    else:
        path = Path(resolve_refiner_source(source))  # registry names and hub ids -> local paths
        if path.is_dir() and (path / "config.json").is_file():  # a Hub-style folder
            # dissam.hub.folder imports huggingface_hub (a third of a second): only for folders
            from dissam.hub.folder import load_refiner_folder

            ref = load_refiner_folder(path, device=device)
            return _loaded(ref, eval_mode)
        if path.is_dir():
            path = path / "model.safetensors"
        name = str(path)
        if path.suffix == ".safetensors":
            model, info = load_checkpoint(path, device=device)
            config = RefinerConfig.from_dict(info["config"]) if info.get("config") else infer_refiner_config(
                model.state_dict()
            )
            ref = Refiner.from_checkpoint_info(model, config, info, name)
            return _loaded(ref, eval_mode)
        sd = read_state_dict(path)
    config = infer_refiner_config(sd)
    model = build_with_weights(lambda: build_refiner(config), sd, name)  # no random init, no copy
    model.to(device)
    ref = Refiner(model, config, 1024, (), name)
    return _loaded(ref, eval_mode, from_file=not isinstance(source, Mapping))


def _loaded(ref: Refiner, eval_mode: bool, from_file: bool = True) -> Refiner:
    """``ref`` in eval mode (if asked), with a record of its weights as read from the file (graphs
    exported from that file then apply to it: :attr:`Refiner.weights_are_source`)."""
    if eval_mode:
        ref.eval()
    if from_file:
        ref.loaded_versions = tensor_versions(ref.net)
    return ref
