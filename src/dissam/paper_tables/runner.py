"""The per-image work of one rank: lazily loaded models, the prompt context of an image (boxes, SAM
masks, cached), each method's prediction map, and PNG writes on writer threads.

A model that cannot be loaded stops the run (:class:`FatalError`); a bad image is recorded as a
failure of that image and the run goes on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dissam.errors import DatasetError, DisSamError
from dissam.hub.loading import load_refiner
from dissam.io import read_image, read_mask
from dissam.paper_tables.config import BenchmarkConfig, check_settings, weight_free_stage
from dissam.paper_tables.protocol import (
    HQ_SELECTION,
    PROMPTED,
    SAM_SELECTION,
    Item,
    jitter_box,
    method_name,
    variant_name,
    whole_gt_box,
)
from dissam.runtime.runners import make_refiner_runner
from dissam.sharding import DistEnv, device_for_rank
from dissam.stages.registry import load_stage1
from dissam.transforms import (
    assemble_input,
    box_map_from_box,
    faithful_sample,
    postprocess,
    resize_uint8,
    to_authors_png,
)
from dissam.utils import atomic_write_bytes

__all__ = ["Runner", "FatalError", "write_png_fast", "load_net"]

logger = logging.getLogger("dissam.paper_tables")


class FatalError(DisSamError):
    """A model could not be loaded: stops the run instead of failing every image."""


def _fatal(loader):
    def wrapped(self):
        try:
            return loader(self)
        except FatalError:
            raise
        except Exception as exc:  # a wrong path, checkpoint or hub id is the user's, not the image's
            raise FatalError(
                str(exc) if isinstance(exc, DisSamError) else f"{type(exc).__name__}: {exc}"
            ) from exc

    return wrapped


class Runner:
    """Lazily loaded models and the per-image work of one rank."""

    def __init__(self, cfg: BenchmarkConfig, methods: list[str]) -> None:
        self.cfg = cfg
        self.methods = methods
        self.run_dir = Path(cfg.run_dir)
        self._sam = self._hq = self._refiner = self._isnet = None
        self._runners: dict[str, Any] = {}  # method -> refiner runtime (--backend / --precision)
        self._device = None
        self.stats = {"computed": 0, "reused": 0, "sam_calls": 0, "failed": 0}
        self._settings_written = False
        self.writer = None  # a ThreadPoolExecutor for the PNG writes, or None (synchronous)
        self._pending: list = []

    # ---------------------------------------------------------------- models
    @property
    def device(self):
        if self._device is None:
            env = DistEnv(self.cfg.rank, self.cfg.local_rank, self.cfg.world_size)
            self._device = device_for_rank(self.cfg.device, env)  # cuda:LOCAL_RANK under torchrun
        return self._device

    @_fatal
    def sam(self):
        if self._sam is None:
            if self.cfg.sam is None and not weight_free_stage(self.cfg.stage1):
                raise DisSamError("a SAM mask has to be computed but no --sam SOURCE was given")
            # any stage 1 (auto: a .pth is SAM; a folder's config.json names SAM 2.1 / SAM 3)
            self._sam = load_stage1(self.cfg.stage1 or "auto", self.cfg.sam, self.device,
                                    backend=self.cfg.backend, precision=self.cfg.precision)
        return self._sam

    @_fatal
    def hq(self):
        if self._hq is None:
            self._hq = load_stage1("sam-hq", self.cfg.hq_sam, self.device)
        return self._hq

    @_fatal
    def refiner(self):
        if self._refiner is None:
            self._refiner = load_net(self.cfg.refiner, self.device, 5, "--refiner")
        return self._refiner

    @_fatal
    def isnet(self):
        if self._isnet is None:
            self._isnet = load_net(self.cfg.isnet, self.device, 3, "--isnet")
        return self._isnet

    def _run(self, method: str, ref):
        """The network call of ``method``: ``Refiner.forward_d1`` (the faithful default, PyTorch's
        contiguous fp32), or the runtime of ``--backend``/``--precision`` when one is asked for."""
        if not (self.cfg.backend or self.cfg.precision):
            return ref.forward_d1
        if method not in self._runners:
            self._runners[method] = make_refiner_runner(ref, self.cfg.backend or "torch", self.cfg.precision or "fp32")
        return self._runners[method]

    # ---------------------------------------------------------------- paths
    def pred_path(self, column: str, item: Item) -> Path:
        return self.run_dir / "predictions" / column / item.split / f"{item.stem}.png"

    def sam_cache(self, kind: str, pct: float | None, item: Item) -> Path:
        return self.run_dir / "sam-masks" / f"{kind}-{variant_name(pct)}" / item.split / f"{item.stem}.png"

    def box_path(self, pct: float | None, item: Item) -> Path:
        return self.run_dir / "boxes" / variant_name(pct) / item.split / f"{item.stem}.json"

    # ---------------------------------------------------------------- one image
    def todo(self, item: Item) -> list[tuple[str, float | None]]:
        """``[(method, pct)]`` whose prediction file does not exist yet (``pct`` None = GT box)."""
        return [
            (m, pct)
            for pct in [None, *self.cfg.jitters]
            for m in self.methods
            if (pct is None or m in PROMPTED) and not self.pred_path(method_name(m, pct), item).is_file()
        ]

    def read(self, item: Item) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(image H x W x 3, gt H x W, mask H x W or None)`` uint8, sizes checked. Thread-safe
        (runs ahead of the networks in the reader thread)."""
        image = read_image(item.image)
        hw = image.shape[:2]
        gt = read_mask(item.gt)
        if gt.shape != hw:
            raise DatasetError(
                f"ground truth {item.gt.name} is {gt.shape[1]}x{gt.shape[0]} but the image is {hw[1]}x{hw[0]}"
            )
        mask = None
        if item.mask is not None:
            mask = read_mask(item.mask)
            if mask.shape != hw:
                raise DatasetError(
                    f"SAM mask {item.mask} is {mask.shape[1]}x{mask.shape[0]} but the image is {hw[1]}x{hw[0]}"
                )
        return image, gt, mask

    def process(self, item: Item, todo: list | None = None, loaded=None) -> list[dict]:
        """Compute every missing prediction of ``item`` (``todo``: :meth:`todo`, ``loaded``: a future of
        :meth:`read`, both computed here when None); the PNGs are queued on the writer threads when
        :attr:`writer` is set. Returns failure records (possibly empty)."""
        n_all = sum(
            1 for pct in [None, *self.cfg.jitters] for m in self.methods if pct is None or m in PROMPTED
        )
        todo = self.todo(item) if todo is None else todo
        self.stats["reused"] += n_all - len(todo)
        if not todo:
            return []
        try:
            data = loaded.result() if loaded is not None else self.read(item)
            ctx = self._context(item, todo, data)
        except (ImportError, FatalError):
            raise  # a broken installation or wrong weights, not a bad image
        except Exception as exc:  # noqa: BLE001 - reported per image, the run goes on
            return self._fail(item, [method_name(m, p) for m, p in todo], exc)
        failures = []
        for m, pct in todo:
            col = method_name(m, pct)
            try:
                out = self._predict(m, pct, item, ctx)
                if not self._settings_written:
                    check_settings(self.cfg, self.methods, write=True)
                    self._settings_written = True
                self._write(self.pred_path(col, item), out, (item, col))
            except (ImportError, FatalError):
                raise
            except Exception as exc:  # noqa: BLE001
                failures += self._fail(item, [col], exc)
        return failures

    def _write(self, path: Path, arr: np.ndarray, what: tuple[Item, str] | None = None) -> None:
        """Write ``arr`` as PNG (atomically), on a writer thread when :attr:`writer` is set; a
        prediction (``what`` = (item, column)) counts as computed once it is on disk."""
        if self.writer is None:
            write_png_fast(path, arr)
            if what is not None:
                self.stats["computed"] += 1
            return
        self._pending.append((self.writer.submit(write_png_fast, path, arr), what))

    def drain(self, max_pending: int = 0) -> list[dict]:
        """Wait for queued writes until at most ``max_pending`` remain; failure records of the failed ones."""
        failures = []
        while len(self._pending) > max_pending:
            fut, what = self._pending.pop(0)
            try:
                fut.result()
                if what is not None:
                    self.stats["computed"] += 1
            except Exception as exc:  # noqa: BLE001
                if what is None:
                    logger.warning("could not write a SAM mask cache file: %s", exc)
                else:
                    failures += self._fail(what[0], [what[1]], exc)
        return failures

    def _fail(self, item: Item, cols: list[str], exc: Exception) -> list[dict]:
        msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, DisSamError) else str(exc)
        logger.debug("failure on %s/%s", item.split, item.stem, exc_info=exc)
        self.stats["failed"] += len(cols)
        return [{"split": item.split, "stem": item.stem, "method": c, "error": msg} for c in cols]

    def _context(self, item: Item, todo: list[tuple[str, float | None]], data) -> dict:
        image, gt, mask = data
        box, fallback = whole_gt_box(gt)
        if box is None:
            raise DatasetError(f"ground truth {item.gt.name} is empty (all zero): no prompt box")
        hw = image.shape[:2]
        boxes = {None: box}
        for pct in self.cfg.jitters:
            boxes[pct] = jitter_box(box, pct, self.cfg.jitter_seed, item.split, item.stem, hw)
        for pct, b in boxes.items():
            p = self.box_path(pct, item)
            if not p.is_file():
                rec = {"box_xyxy": [float(v) for v in b], "image_hw": [int(hw[0]), int(hw[1])]}
                if pct is None:
                    rec["fallback"] = bool(fallback)
                    rec["sam_mask"] = "mask/" if item.mask is not None else "computed"
                else:
                    rec.update(
                        jitter_pct=pct, jitter_seed=self.cfg.jitter_seed, gt_box_xyxy=[float(v) for v in box]
                    )
                atomic_write_bytes(p, json.dumps(rec).encode())
        ctx: dict[str, Any] = {"image": image, "gt": gt, "boxes": boxes, "hw": hw}
        need_sam = sorted({pct or 0 for m, pct in todo if m in ("dis-sam", "sam")})
        need_hq = sorted({pct or 0 for m, pct in todo if m == "hq-sam"})
        ctx["sam"] = self._coarse("sam", [p or None for p in need_sam], item, image, boxes)
        ctx["hq"] = self._coarse("hq", [p or None for p in need_hq], item, image, boxes)
        if mask is not None:
            ctx["sam"][None] = mask  # the authors' mask/ file
        return ctx

    def _coarse(self, kind: str, pcts: list[float | None], item: Item, image, boxes) -> dict:
        """``{pct: H x W uint8 {0, 255}}`` SAM (or HQ-SAM) masks, from the cache or computed with one
        image embedding for all boxes of this image."""
        out: dict[float | None, np.ndarray] = {}
        missing = []
        for pct in pcts:
            if kind == "sam" and pct is None and item.mask is not None:
                continue  # the authors' mask/ file is read instead
            p = self.sam_cache(kind, pct, item)
            if p.is_file():
                out[pct] = read_mask(p)
            else:
                missing.append(pct)
        if missing:
            stage = self.sam() if kind == "sam" else self.hq()
            stage.set_image(image)
            sel = SAM_SELECTION if kind == "sam" else HQ_SELECTION
            masks = stage.coarse_masks(np.stack([boxes[p] for p in missing]), selection=sel)
            self.stats["sam_calls"] += 1
            for pct, m in zip(missing, masks, strict=True):
                u8 = np.where(m, 255, 0).astype(np.uint8)
                self._write(self.sam_cache(kind, pct, item), u8)
                out[pct] = u8
        return out

    def _predict(self, method: str, pct: float | None, item: Item, ctx: dict) -> np.ndarray:
        if method == "sam":
            return ctx["sam"][pct]
        if method == "hq-sam":
            return ctx["hq"][pct]
        x = self._input(method, pct, ctx)
        ref = self.refiner() if method == "dis-sam" else self.isnet()
        # dropped prompt channels of ablation models are zeroed on a copy (the faithful sample is
        # cached for the other methods)
        d1 = self._run(method, ref)(x[None])  # side output 1: (1, 1, S, S) probabilities
        return to_authors_png(postprocess(d1[0, 0], ctx["hw"]))  # (H, W)

    def _input(self, method: str, pct: float | None, ctx: dict):
        """The network input: ``(5, S, S)`` for ``dis-sam``, ``(3, S, S)`` for ``isnet``, float32.

        One :func:`~dissam.transforms.faithful_sample` per image (with the GT-box SAM mask when that
        is needed) gives the RGB channels and the authors' GT box map; a jittered variant swaps in
        its SAM mask (resized like the authors' masks) and the box map of the jittered box
        (:func:`~dissam.transforms.box_map_from_box`), through the same
        :func:`~dissam.transforms.assemble_input`."""
        import torch

        size, hw = self.cfg.size, ctx["hw"]
        mask0 = ctx["sam"].get(None)
        if "base" not in ctx or (pct is None and method == "dis-sam" and not ctx["base_has_mask"]):
            m = mask0 if mask0 is not None else np.zeros(hw, np.uint8)
            ctx["base"] = faithful_sample(ctx["image"], ctx["gt"], m, size=size)
            ctx["base_has_mask"] = mask0 is not None
        base = ctx["base"]
        if method == "isnet":
            return base["image"][:3]
        if pct is None:
            return base["image"]
        mask_u8 = resize_uint8(torch.from_numpy(np.ascontiguousarray(ctx["sam"][pct]))[None], size)
        return assemble_input(base["im_u8"], mask_u8, box_map_from_box(ctx["boxes"][pct], hw, size))


def write_png_fast(path: Path, arr: np.ndarray) -> None:
    """Lossless 8-bit PNG through OpenCV (compression level 1: about 6x faster than PIL's default on
    a 8 MP map, files about 1.6x larger), written atomically (temp file + rename)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr, dtype=np.uint8))
    if not ok:
        raise DisSamError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, buf.tobytes())


def load_net(path, device, in_ch: int, flag: str):
    ref = load_refiner(path, device)
    if ref.in_ch != in_ch:
        raise DisSamError(
            f"{flag} {path} is a {ref.in_ch}-channel network; expected {in_ch} channels "
            + ("(the DIS-SAM refiner: RGB + SAM mask + box map)" if in_ch == 5 else "(IS-Net: RGB only)")
        )
    return ref.requires_grad_(False)
