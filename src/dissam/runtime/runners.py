"""One callable per (backend, precision) for the two expensive networks: the refiner and SAM's image
encoder. The predictor calls these instead of the modules.

* refiner runner: ``x`` ``(N, C, S, S)`` float32 normalised inputs -> d1 ``(N, 1, S, S)`` float32
  probabilities on the CPU or the refiner's device. Dropped prompt channels (Table 2 ablation models)
  are zeroed in every backend.
* SAM encoder runner: ``pixel_values`` ``(1, 3, 1024, 1024)`` -> ``(image_embeddings (1, 256, 64,
  64), intermediate_embeddings)`` with the latter a list of ``(1, 64, 64, C_vit)`` tensors for HQ-SAM,
  ``None`` for SAM; float32, on the model's device.

Backends and precisions:

=========  ===========  =====================================================================
backend    precision    what runs
=========  ===========  =====================================================================
torch      fp32         eager torch; refiner in ``channels_last`` on the CPU (lossless, faster)
torch      bf16 / fp16  torch autocast (fp16 on CUDA only); lossy, opt-in
onnx       fp32         ONNX Runtime on the exported graph (cached, :mod:`dissam.runtime.cache`)
onnx       int8         ONNX Runtime, dynamic int8 MatMul/Gemm (SAM's encoder; the refiner,
                        all convolutions, stays fp32); lossy, opt-in
=========  ===========  =====================================================================

The default (:func:`resolve_runtime`) is the fastest choice measured lossless on this kind of
machine (the speed scripts in the repository measure each path).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch

from dissam.errors import DisSamError
from dissam.refiner import Refiner, forward_d1, zero_dropped
from dissam.runtime import BACKENDS, PRECISIONS
from dissam.runtime.cache import cached_path
from dissam.runtime.onnx_export import export_refiner, export_sam_encoder, quantize_int8, require_onnx

__all__ = [
    "resolve_runtime",
    "make_refiner_runner",
    "make_sam_encoder_runner",
    "TorchRefinerRunner",
    "OnnxRefinerRunner",
    "TorchSamEncoderRunner",
    "OnnxSamEncoderRunner",
    "ort_session",
    "autocast_dtype",
]

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a torch-backend precision (``fp32``: no autocast)."""
    if precision not in _DTYPES:
        raise DisSamError(f"precision {precision!r} has no torch autocast dtype; use one of {', '.join(_DTYPES)}")
    return _DTYPES[precision]


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def resolve_runtime(device: torch.device, backend: str | None = None, precision: str | None = None
                    ) -> tuple[str, str]:
    """Validate ``backend``/``precision`` and fill in defaults: ``(backend, precision)``.

    Default backend: ``"torch"``; ``"auto"`` picks ONNX Runtime on a CPU when it is installed (the fastest
    lossless path measured there) and torch otherwise;
    default precision ``"fp32"``: the lossy precisions (bf16, fp16, int8) stay opt-in until measured
    on trained weights. Raises :class:`DisSamError` for combinations that do not exist."""
    backend = backend or "torch"
    precision = precision or "fp32"
    if backend == "auto":
        # the fastest lossless choice measured on a CPU: ONNX Runtime when it is
        # installed; torch elsewhere (CUDA) and for the torch-only precisions
        backend = "onnx" if device.type == "cpu" and onnx_available() and precision in ("fp32", "int8") else "torch"
    if backend not in BACKENDS:
        raise DisSamError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise DisSamError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if backend == "torch" and precision == "int8":
        raise DisSamError("int8 runs on the ONNX backend: pass backend='onnx' (--backend onnx)")
    if backend == "onnx" and precision in ("bf16", "fp16"):
        raise DisSamError(f"{precision} runs on the torch backend (autocast): pass backend='torch'")
    if precision == "fp16" and device.type != "cuda":
        raise DisSamError("fp16 autocast is for CUDA devices; on the CPU use bf16")
    if backend == "onnx":
        require_onnx()
    return backend, precision


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); ``None`` where unknown (not Linux).

    Without them bf16 autocast is emulated and several times *slower* than fp32 (measured 7x on an
    AVX2-only EPYC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def _warn_slow_bf16(device: torch.device, precision: str) -> None:
    if precision == "bf16" and device.type == "cpu" and cpu_has_native_bf16() is False:
        log.warning("this CPU has no bf16 instructions (avx512_bf16/amx): bf16 runs emulated and is slower "
                    "than fp32 here; use --precision fp32 (or --backend onnx for a faster lossless path)")


def ort_session(path: str | Path, device: torch.device | None = None, threads: int | None = None):
    """An ONNX Runtime session for ``path``: CUDA execution provider on a CUDA device when onnxruntime
    has it, else the CPU with ``threads`` (default: torch's thread count) intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


# ---------------------------------------------------------------------------------------- refiner
class TorchRefinerRunner:
    """Eager torch: fp32 (``channels_last`` when asked), bf16/fp16 under autocast."""

    backend = "torch"

    def __init__(self, refiner: Refiner, precision: str = "fp32", channels_last: bool | None = None):
        self.refiner = refiner
        self.precision = precision
        self.dtype = _DTYPES[precision]
        # channels_last is the layout oneDNN's convolutions want: measured 1.26x faster on the CPU,
        # lossless (only the summation order changes, within float32 rounding)
        self.channels_last = refiner.device.type == "cpu" if channels_last is None else bool(channels_last)
        _warn_slow_bf16(refiner.device, precision)
        if self.channels_last:
            refiner.net.to(memory_format=torch.channels_last)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.refiner.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return forward_d1(self.refiner.net, x, dtype=self.dtype, dropped_channels=self.refiner.dropped_channels)


class OnnxRefinerRunner:
    """ONNX Runtime on the exported refiner (exported once per weights, then read from the cache)."""

    backend = "onnx"

    def __init__(self, refiner: Refiner, precision: str = "fp32", path: str | Path | None = None,
                 threads: int | None = None):
        self.refiner = refiner
        self.precision = precision
        if path is None:
            fp32 = cached_path(refiner.net, refiner.source, "refiner", refiner.input_size, refiner.in_ch)
            if not fp32.is_file():
                log.info("exporting the refiner to ONNX (once): %s", fp32)
                export_refiner(refiner, fp32)
            # int8 applies to MatMul/Gemm (quantize_int8); the refiner is all convolutions, so its
            # int8 graph would be the fp32 graph: int8 runs the fp32 refiner (SAM's encoder is int8)
            path = fp32
        self.path = Path(path)
        self.session = ort_session(self.path, refiner.device, threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = zero_dropped(x.detach().float().cpu(), self.refiner.dropped_channels)
        (d1,) = self.session.run(["d1"], {"x": x.contiguous().numpy()})
        return torch.from_numpy(d1)


def make_refiner_runner(refiner: Refiner, backend: str = "torch", precision: str = "fp32", **kwargs: Any):
    """The refiner runner for ``backend``/``precision`` (validated by :func:`resolve_runtime`)."""
    backend, precision = resolve_runtime(refiner.device, backend, precision)
    if backend == "onnx":
        return OnnxRefinerRunner(refiner, precision, **kwargs)
    return TorchRefinerRunner(refiner, precision, **kwargs)


# ------------------------------------------------------------------------------------ SAM encoder
class TorchSamEncoderRunner:
    """SAM's vision encoder in eager torch, fp32 or under bf16/fp16 autocast."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, precision: str = "fp32"):
        self.model = model
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.is_hq = getattr(model.config, "model_type", "") == "sam_hq"
        _warn_slow_bf16(next(model.parameters()).device, precision)

    def __call__(self, pixel_values: torch.Tensor):
        dev = next(self.model.parameters()).device
        with torch.inference_mode(), torch.autocast(dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = self.model.vision_encoder(pixel_values=pixel_values.to(dev))
        inter = [t.float() for t in out.intermediate_embeddings] if self.is_hq else None
        return out.last_hidden_state.float(), inter


class OnnxSamEncoderRunner:
    """SAM's vision encoder in ONNX Runtime, fp32 or dynamic int8."""

    backend = "onnx"

    def __init__(self, model: torch.nn.Module, source: str | None, precision: str = "fp32",
                 path: str | Path | None = None, threads: int | None = None):
        self.precision = precision
        self.is_hq = getattr(model.config, "model_type", "") == "sam_hq"
        self.device = next(model.parameters()).device
        if path is None:
            fp32 = cached_path(model.vision_encoder, source, "sam-encoder")
            if not fp32.is_file():
                log.info("exporting the SAM image encoder to ONNX (once): %s", fp32)
                export_sam_encoder(model, fp32)
            path = fp32
            if precision == "int8":
                path = fp32.with_name(fp32.name.replace(".onnx", ".int8.onnx"))
                if not path.is_file():
                    quantize_int8(fp32, path)
        self.path = Path(path)
        self.session = ort_session(self.path, self.device, threads)

    def __call__(self, pixel_values: torch.Tensor):
        outs = self.session.run(None, {"pixel_values": pixel_values.detach().float().cpu().contiguous().numpy()})
        emb = torch.from_numpy(outs[0]).to(self.device)
        inter = list(torch.from_numpy(outs[1]).to(self.device).unbind(0)) if self.is_hq else None
        return emb, inter


def make_sam_encoder_runner(stage, backend: str = "torch", precision: str = "fp32", **kwargs: Any):
    """The encoder runner for a :class:`~dissam.stages.sam.SamStage` (validated like the refiner's)."""
    backend, precision = resolve_runtime(stage.device, backend, precision)
    if backend == "onnx":
        return OnnxSamEncoderRunner(stage.model, stage.source, precision, **kwargs)
    return TorchSamEncoderRunner(stage.model, precision)
