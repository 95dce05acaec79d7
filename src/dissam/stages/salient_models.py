"""What each salient-object network expects and returns, described once.

A salient-object network (U²-Net, IS-Net, BiRefNet, RMBG) maps an RGB image to a foreground
probability map with no prompt. :mod:`dissam.stages.salient` runs one on the crop of each box; this
table says, per network, how: the square input side, how pixels are scaled and normalised, which
output is the prediction and whether it is still logits, and whether the map is min-max normalised
(as the network's own inference code does). The weights themselves (URL, size, checksums, licence)
are a :mod:`dissam.hub.registry` entry named by :attr:`SalientModel.weights`; each model here is also
one stage 1 of :mod:`dissam.stages.registry` under the same name.

The values follow each network's own inference code (U-2-Net's ``u2net_test.py``, DIS's
``Inference.py``, BiRefNet's ``inference.py``) and the published ONNX files (rembg's release assets):

* ``u2netp``, ``u2net``: 320², ImageNet mean/std, / max, output 0 (d1, already a sigmoid), min-max;
* ``isnet-general-use``: 1024², mean 0.5 / std 1.0, / 255, output 0 (d1, already a sigmoid), min-max;
* ``birefnet-general``, ``birefnet-general-lite``: 1024², ImageNet mean/std, / 255, output 0 (logits:
  sigmoid), no min-max;
* ``bria-rmbg``: 1024², ImageNet mean/std, / 255, output 0 read as probabilities with min-max (as
  rembg reads that file; BRIA's own code applies a sigmoid to the PyTorch model's last output).

"/ max" divides the resized crop by its own maximum (U-2-Net's ``ToTensorLab``), "/ 255" by 255.
rembg divides every model's input by its maximum; dissam follows the authors instead. Importing
this module is light (no numpy, no ONNX Runtime): the stage registry reads it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SalientModel", "SALIENT_MODELS", "U2NETP", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALINGS = ("max", "255")
ACTIVATIONS = ("none", "sigmoid")


@dataclass(frozen=True)
class SalientModel:
    """One salient-object network's input and output conventions.

    Attributes:
        name: the stage-1 name (``--stage1``) and, for downloadable ones, usually the weights' name.
        label: what the app's page and listings call it.
        summary: one line for ``--help`` and the docs.
        weights: the :mod:`dissam.hub.registry` entry of its weights (``None``: bundled, U²-Netp).
        input_size: the square side the network runs at (the crop is resized to it, no aspect kept).
        mean, std: per-channel normalisation after scaling, ``(x - mean) / std``, RGB order.
        scaling: ``"max"`` (divide by the resized crop's maximum) or ``"255"``.
        output_index: which output of the ONNX graph is the prediction (``N x 1 x S x S``).
        activation: ``"sigmoid"`` when that output is logits, ``"none"`` when it is probabilities.
        minmax: stretch the map to [0, 1] by its own minimum and maximum (after the activation).
        torch_arch: ``"isnet"`` when the authors' ``.pth`` runs through dissam's own ``ISNetDIS(in_ch=3)``
            (no conversion needed); ``None``: ONNX files only.
        reference: where the network and its inference code are published.
    """

    name: str
    label: str
    summary: str
    weights: str | None
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scaling: str = "255"
    output_index: int = 0
    activation: str = "none"
    minmax: bool = False
    torch_arch: str | None = None
    reference: str = ""

    def __post_init__(self):
        if self.scaling not in SCALINGS or self.activation not in ACTIVATIONS or self.input_size < 1:
            raise ValueError(f"salient model {self.name!r}: scaling must be one of {SCALINGS}, activation one of "
                             f"{ACTIVATIONS} and input_size positive")


_U2NET = dict(input_size=320, scaling="max", minmax=True, reference="https://github.com/xuebinqin/U-2-Net")
_BIREFNET = dict(input_size=1024, activation="sigmoid", reference="https://github.com/ZhengPeng7/BiRefNet")

U2NETP = SalientModel("u2netp", "U²-Netp", "U²-Netp in the box (bundled, 4.6 MB)", None, **_U2NET)
"""The bundled network of stages ``u2netp``, ``u2netp-grabcut`` and ``u2netp-auto``."""

SALIENT_MODELS: dict[str, SalientModel] = {m.name: m for m in (
    SalientModel("u2net", "U²-Net", "U²-Net in the box (176 MB download)", "u2net", **_U2NET),
    SalientModel("isnet-general-use", "IS-Net general-use",
                 "IS-Net general-use in the box (179 MB download; or the authors' .pth): the CPU choice",
                 "isnet-general-use", input_size=1024, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), minmax=True,
                 torch_arch="isnet", reference="https://github.com/xuebinqin/DIS"),
    SalientModel("birefnet-general", "BiRefNet general", "BiRefNet (Swin-L) in the box (973 MB download)",
                 "birefnet-general", **_BIREFNET),
    SalientModel("birefnet-general-lite", "BiRefNet general lite",
                 "BiRefNet lite (Swin-T) in the box (224 MB download)", "birefnet-general-lite", **_BIREFNET),
    SalientModel("bria-rmbg", "BRIA RMBG-2.0", "BRIA RMBG-2.0 in the box (1 GB download; NON-COMMERCIAL licence)",
                 "bria-rmbg", input_size=1024, minmax=True, reference="https://huggingface.co/briaai/RMBG-2.0"),
)}
"""The downloadable salient-object stage 1s, by stage name."""
