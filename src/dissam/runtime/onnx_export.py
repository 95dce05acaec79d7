"""ONNX export of the refiner, the SAM image encoder and the SAM prompt decoder (SAM and HQ-SAM).

All graphs are written with **opset 17** by the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``). Why that exporter: it needs no extra package (the
``torch.export``-based default of torch >= 2.9 needs ``onnxscript``), it exports these three graphs in
seconds, and its graphs match torch within float32 rounding (see ``tests/test_onnx_export.py``).

Graphs (names of inputs and outputs, ``N`` marks a dynamic axis):

* refiner: ``x`` ``(N, C, S, S)`` float32 (``C = 5``: normalised ``[R, G, B, coarse mask, box map]``
  from :func:`dissam.transforms.clean_inputs`) -> ``d1`` ``(N, 1, S, S)`` probabilities. ``S`` is
  fixed at export (the refiner's input size). Dropped prompt channels are zeroed by the caller
  (:mod:`dissam.runtime.runners`), not inside the graph.
* SAM image encoder: ``pixel_values`` ``(1, 3, 1024, 1024)`` float32 (normalised, zero-padded, as
  :func:`dissam.stages.sam.preprocess_image` makes it) -> ``image_embeddings`` ``(1, 256, 64, 64)``;
  HQ-SAM adds ``intermediate_embeddings`` ``(L, 1, 64, 64, C_vit)`` (the outputs of the L global
  attention blocks, stacked; HQ-SAM's upstream decoder export uses the same layout).
* SAM prompt decoder: ``image_embeddings`` ``(1, 256, 64, 64)``, ``boxes`` ``(1, N, 4)`` float32 XYXY
  in the 1024 input frame (:meth:`dissam.stages.sam.SamStage.transform_boxes`), HQ-SAM also
  ``intermediate_embeddings`` -> ``low_res_logits`` ``(N, 3, 256, 256)`` and ``iou_predictions``
  ``(N, 3)`` (``multimask_output=True``: mask tokens 1..3, as DIS-SAM's ``"first"`` selection uses).

Graphs over protobuf's 2 GB limit (ViT-H's encoder) keep their weights in one external file,
``<name>.onnx.data``, next to the ``.onnx`` file (keep the two together).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dissam.errors import DisSamError
from dissam.refiner import Refiner

__all__ = [
    "OPSET",
    "RefinerD1",
    "SamEncoderGraph",
    "SamDecoderGraph",
    "export_refiner",
    "export_sam_encoder",
    "export_sam_decoder",
    "quantize_int8",
    "require_onnx",
]

log = logging.getLogger(__name__)

OPSET = 17
"""ONNX opset of every exported graph (the SAM decoder export of segment-anything uses 17 too)."""


def require_onnx(runtime: bool = True) -> None:
    """Raise a :class:`DisSamError` that says how to install the extra when onnx (and onnxruntime)
    are missing."""
    import importlib.util

    missing = [m for m in (("onnx", "onnxruntime") if runtime else ("onnx",)) if importlib.util.find_spec(m) is None]
    if missing:
        raise DisSamError(
            f"{' and '.join(missing)} not installed: the ONNX backend needs the optional extra, "
            "`pip install 'dissam[onnx]'` (or `pip install onnx onnxruntime`)"
        )


class RefinerD1(nn.Module):
    """The refiner reduced to its inference output: ``(N, C, S, S)`` -> d1 ``(N, 1, S, S)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0][0]


class SamEncoderGraph(nn.Module):
    """SAM's vision encoder: ``pixel_values`` -> ``image_embeddings`` (and HQ-SAM's stacked
    ``intermediate_embeddings``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.encoder = model.vision_encoder
        self.is_hq = getattr(model.config, "model_type", "") == "sam_hq"

    def forward(self, pixel_values: torch.Tensor):
        out = self.encoder(pixel_values=pixel_values)
        if self.is_hq:
            return out.last_hidden_state, torch.stack(list(out.intermediate_embeddings))
        return out.last_hidden_state


class SamDecoderGraph(nn.Module):
    """SAM's prompt encoder + mask decoder for box prompts, three masks per box."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.is_hq = getattr(model.config, "model_type", "") == "sam_hq"

    def forward(self, image_embeddings: torch.Tensor, boxes: torch.Tensor, *intermediate: torch.Tensor):
        kwargs = {}
        if self.is_hq:
            kwargs = {"intermediate_embeddings": list(torch.unbind(intermediate[0])), "hq_token_only": False}
        out = self.model(image_embeddings=image_embeddings, input_boxes=boxes, multimask_output=True, **kwargs)
        return out.pred_masks[0], out.iou_scores[0]


def _export(module: nn.Module, args: tuple, path: str | os.PathLike, input_names: Sequence[str],
            output_names: Sequence[str], dynamic_axes: dict) -> Path:
    """Export ``module`` to ``path`` atomically: the graph (and any external data) is written in a
    temporary folder beside ``path`` and moved into place, so an interrupted export never leaves a
    file that looks finished."""
    require_onnx(runtime=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # the TorchScript exporter warns about its own deprecation and about Python ints in
            # transformers' shape checks (constant for a fixed 1024 input): both are expected here
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, args, str(tmp / path.name), dynamo=False, opset_version=OPSET,
                input_names=list(input_names), output_names=list(output_names), dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        if len(list(tmp.iterdir())) > 1:
            _one_data_file(tmp, path.name)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == path.name):  # the .onnx file last
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s", path)
    return path


def _one_data_file(folder: Path, name: str) -> None:
    """Rewrite a graph whose weights the exporter wrote as one external file per tensor (graphs over
    protobuf's 2 GB limit, e.g. ViT-H's encoder) with all of them in ``<name>.data``: tensor-named
    files of two graphs in one cache folder would overwrite each other."""
    import onnx

    model = onnx.load(str(folder / name))  # reads the external tensors too
    for f in folder.iterdir():
        f.unlink()
    onnx.save_model(model, str(folder / name), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{name}.data")


def export_refiner(net: nn.Module, path: str | os.PathLike, size: int = 1024, in_ch: int = 5) -> Path:
    """Write the refiner ``net`` (a :class:`~dissam.models.isnet.ISNetDIS`, or a
    :class:`~dissam.refiner.Refiner`) as ONNX: ``x`` ``(N, in_ch, size, size)`` -> ``d1``; batch
    dynamic."""
    if isinstance(net, Refiner):
        size, in_ch, net = net.input_size, net.in_ch, net.net
    dev = next(net.parameters()).device
    x = torch.zeros(1, in_ch, size, size, device=dev)
    return _export(RefinerD1(net), (x,), path, ["x"], ["d1"], {"x": {0: "batch"}, "d1": {0: "batch"}})


def _sam_model(model) -> nn.Module:
    """Accept a :class:`~dissam.stages.sam.SamStage` or a ``SamModel``/``SamHQModel``."""
    return getattr(model, "model", model) if not hasattr(model, "vision_encoder") else model


def export_sam_encoder(model, path: str | os.PathLike) -> Path:
    """Write the image encoder of ``model`` (``SamModel``, ``SamHQModel`` or a ``SamStage``) as ONNX
    (input fixed at ``(1, 3, image_size, image_size)``)."""
    model = _sam_model(model)
    size = int(model.config.vision_config.image_size)
    dev = next(model.parameters()).device
    graph = SamEncoderGraph(model)
    outputs = ["image_embeddings"] + (["intermediate_embeddings"] if graph.is_hq else [])
    return _export(graph, (torch.zeros(1, 3, size, size, device=dev),), path, ["pixel_values"], outputs, {})


def export_sam_decoder(model, path: str | os.PathLike) -> Path:
    """Write the prompt encoder + mask decoder of ``model`` as ONNX: box prompts, the number of boxes
    dynamic, three masks per box."""
    model = _sam_model(model)
    dev = next(model.parameters()).device
    graph = SamDecoderGraph(model)
    vc = model.config.vision_config
    grid = int(vc.image_size) // int(vc.patch_size)
    emb = torch.zeros(1, int(model.config.prompt_encoder_config.hidden_size), grid, grid, device=dev)
    boxes = torch.tensor([[[0.0, 0.0, 64.0, 64.0], [8.0, 8.0, 512.0, 256.0]]], device=dev)
    args: tuple = (emb, boxes)
    names = ["image_embeddings", "boxes"]
    if graph.is_hq:
        n_global = len(vc.global_attn_indexes)
        args += (torch.zeros(n_global, 1, grid, grid, int(vc.hidden_size), device=dev),)
        names.append("intermediate_embeddings")
    axes = {"boxes": {1: "boxes"}, "low_res_logits": {0: "boxes"}, "iou_predictions": {0: "boxes"}}
    return _export(graph, args, path, names, ["low_res_logits", "iou_predictions"], axes)


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation of an exported graph (weights int8 once, activations quantised per
    call): ONNX Runtime's ``quantize_dynamic`` with unsigned 8-bit weights (QUInt8, as the SAM
    decoder export of segment-anything uses). Only MatMul/Gemm are quantised: int8 convolutions
    (``ConvInteger``) have no fast CPU kernel in ONNX Runtime. Lossy (opt-in)."""
    require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # quantize_dynamic writes to a path: a temporary name, renamed once complete (no half file)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    # the quantiser reports every tensor it skips on the root logger: hundreds of INFO lines
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # and its one advice to pre-process, which a user cannot act on
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"])
        os.replace(tmp, dst)
    finally:
        logging.disable(previous)
        tmp.unlink(missing_ok=True)
    return dst
