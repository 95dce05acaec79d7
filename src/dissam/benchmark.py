"""``dissam benchmark``: the paper's Tables 1 and 3 end to end, with baselines and box jitter.

For every image of every split (``ROOT/<split>/{im,gt,[mask]}``) the prompt comes from the ground
truth, exactly as in the paper's protocol (spec §2.3, §2.6, §6.6):

* **SAM box** (whole-GT box, §2.6): GT binarised at ``>= 128``; 8-connected components of at least
  0.4% of the image area survive; one survivor -> its box, several -> the box of the whole binarised
  mask. (No survivor: the authors produce nothing; we fall back to the box of the whole binarised
  mask and record ``"fallback": true`` in the box file.) XYXY, inclusive pixels of the original image.
* **SAM coarse mask**: ``ROOT/<split>/mask/<stem>.png`` when present (the authors' released masks),
  otherwise SAM (``masks[0]`` of the multimask output, the authors' choice) on the whole-GT box,
  cached in ``RUN_DIR/sam-masks/<variant>/<split>/<stem>.png``.
* **Refiner input** (faithful mode, :func:`dissam.transforms.faithful_sample`): RGB, SAM mask and the
  box map drawn from the resized GT with the authors' quirks.
* **Saved map** (§5): d1 -> bilinear to the original size -> per-image min-max -> x255 -> uint8
  truncation, ``RUN_DIR/predictions/<method>/<split>/<stem>.png``; then :mod:`dissam.evaluate`.

Methods: ``dis-sam``; ``sam`` (the coarse SAM masks x255); ``hq-sam`` (HQ-SAM, same box,
single-output mask as HQ-SAM's own predictor defaults to); ``isnet`` (3-channel IS-Net, no prompt,
the RGB channels of the faithful input, same post-processing).

Box jitter (``jitter_pcts``): each side of the SAM box moves independently by ``u * pct/100`` of the
box width (x sides) or height (y sides), ``u ~ U[-1, 1]`` drawn from a generator seeded by
``(seed, crc32(split), crc32(stem))`` (the same ``u`` for every pct, so 5% and 10% jitter move the
sides in the same directions), rounded to whole pixels and clipped to the image. SAM is re-run on the
jittered box, and the refiner's box channel is replaced by
:func:`dissam.transforms.box_map_from_box` of the jittered box (mapped onto the ``size x size``
grid). The methods become ``<method>@jitter<pct>`` (``dis-sam``, ``sam``, ``hq-sam``; ``isnet``
takes no prompt).

Sharding: under ``torchrun`` (or with ``RANK``/``WORLD_SIZE`` set by hand) each rank takes
``items[rank::world_size]`` of the image list sorted by ``(split, stem)``; rank 0 waits for the
others (torch.distributed gloo barrier when ``MASTER_ADDR``/``MASTER_PORT`` are set, otherwise a
file barrier in ``RUN_DIR/shards/<run id>/``) and evaluates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dissam.errors import DatasetError, DisSamError

logger = logging.getLogger(__name__)

METHODS = ("dis-sam", "sam", "hq-sam", "isnet")
"""Benchmark methods, in table order."""
PROMPTED = ("dis-sam", "sam", "hq-sam")
"""Methods that take the box prompt (and therefore get jitter variants)."""
DIS5K_SPLITS = ("DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
SAM_SELECTION = "first"  # the authors: masks[0] of the multimask output
HQ_SELECTION = "single"  # HQ-SAM's predictor default: multimask_output=False
MAX_JITTER = 50.0


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Item:
    """One benchmark image: ``split``/``stem`` and its files (``mask`` is None without ``mask/``)."""

    split: str
    stem: str
    image: Path
    gt: Path
    mask: Path | None = None


def split_items(root: str | os.PathLike, split: str) -> list[Item]:
    """The images of ``ROOT/<split>/im`` with their ``gt/`` (and ``mask/`` if present), sorted by
    stem (:func:`dissam.data.layout.discover_split`; an image without ground truth is an error)."""
    from dissam.data.layout import discover_split

    samples = discover_split(Path(root) / split, require_gt=True)
    return sorted((Item(split, s.name, s.image, s.gt, s.mask) for s in samples), key=lambda it: it.stem)


def discover_splits(root: str | os.PathLike, splits: Sequence[str] | None = None) -> list[str]:
    """``splits`` checked to exist under ``root`` (any folder with ``im/`` and ``gt/``), or by default
    the DIS-5K evaluation splits (DIS-VD, DIS-TE1..4) present there."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist")
    if splits:
        missing = [s for s in splits if not ((root / s / "im").is_dir() and (root / s / "gt").is_dir())]
        if missing:
            raise DatasetError(
                f"split(s) {', '.join(missing)} not found under {root} (need <split>/im and <split>/gt)"
            )
        return list(dict.fromkeys(splits))
    found = [s for s in DIS5K_SPLITS if (root / s / "im").is_dir() and (root / s / "gt").is_dir()]
    if not found:
        raise DatasetError(
            f"no DIS-5K split (DIS-VD, DIS-TE1..4 with im/ and gt/) under {root}; name the splits with --splits"
        )
    return found


# --------------------------------------------------------------------------------------------
# prompts


def whole_gt_box(gt: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """The SAM prompt box of a ground truth (§2.6): ``((4,) float64 XYXY inclusive, fallback)``.

    ``gt`` is ``H x W`` uint8 (0..255). Binarised at ``>= 128``; 8-connected components with an area of
    at least 0.4% of the image survive; one survivor -> its box; several -> the box of the whole
    binarised mask (:mod:`dissam.data.enrich`). With no survivor (the authors make no sample) the box
    of ``gt >= 128`` (else ``gt > 0``) is returned with ``fallback=True``
    (:func:`dissam.data.enrich.whole_box`). ``(None, False)`` for an all-zero GT.
    """
    from dissam.data.enrich import component_box, components, whole_box

    comps = components(gt)
    if comps:
        box, fallback = component_box(comps[0] if 0 in comps else next(iter(comps.values()))), False
    else:
        box, fallback = whole_box(gt), True
    if box is None:
        return None, False
    return np.asarray(box, dtype=np.float64), fallback


def jitter_box(
    box: Sequence[float], pct: float, seed: int, split: str, stem: str, image_hw: tuple[int, int]
) -> np.ndarray:
    """``box`` (XYXY inclusive) with each side moved independently by up to ``pct`` % of the box width
    (x0, x1) or height (y0, y1), rounded to whole pixels and clipped to the ``(H, W)`` image.

    The offsets are ``u * pct / 100 * (w | h)`` with ``u ~ U[-1, 1]^4`` from
    ``numpy.random.default_rng([seed, crc32(split), crc32(stem)])``: reproducible and independent of
    the order or sharding of the images; one ``u`` per image for every ``pct``.
    Width and height are ``x1 - x0 + 1`` and ``y1 - y0 + 1``. Returns ``(4,)`` float64.
    """
    if not 0 <= pct < MAX_JITTER:
        raise DisSamError(f"box jitter must be in [0, {MAX_JITTER:g}) percent, got {pct:g}")
    x0, y0, x1, y1 = (float(v) for v in box)
    u = np.random.default_rng([int(seed), zlib.crc32(split.encode()), zlib.crc32(stem.encode())]).uniform(
        -1.0, 1.0, 4
    )
    w, h = x1 - x0 + 1.0, y1 - y0 + 1.0
    f = pct / 100.0
    out = np.array([x0 + u[0] * f * w, y0 + u[1] * f * h, x1 + u[2] * f * w, y1 + u[3] * f * h])
    out = np.round(out)
    H, W = image_hw
    out[[0, 2]] = np.clip(out[[0, 2]], 0, W - 1)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, H - 1)
    # pct < 50 keeps x1 > x0 before clipping; clipping at the border can only collapse a 1-pixel box
    if out[2] <= out[0]:
        out[2] = min(out[0] + 1, W - 1)
        out[0] = out[2] - 1
    if out[3] <= out[1]:
        out[3] = min(out[1] + 1, H - 1)
        out[1] = out[3] - 1
    return out


def variant_name(pct: float | None) -> str:
    """``"gt-box"`` for the paper's prompt, ``"jitter<pct>"`` for a jittered one."""
    return "gt-box" if not pct else f"jitter{pct:g}"


def method_name(method: str, pct: float | None) -> str:
    """Table column of ``method`` at jitter ``pct``: ``"dis-sam"``, ``"dis-sam@jitter10"``."""
    return method if not pct else f"{method}@jitter{pct:g}"


def parse_jitters(values: Sequence[str | float] | None) -> list[float]:
    """``["5,10", "20"]`` -> ``[5.0, 10.0, 20.0]`` (sorted, unique, 0 dropped, each < 50)."""
    out: set[float] = set()
    for v in values or []:
        for part in str(v).split(","):
            part = part.strip().rstrip("%")
            if not part:
                continue
            try:
                pct = float(part)
            except ValueError as exc:
                raise DisSamError(f"--box-jitter takes percentages like 5 or 5,10; got {v!r}") from exc
            if not 0 <= pct < MAX_JITTER:
                raise DisSamError(f"--box-jitter must be in [0, {MAX_JITTER:g}), got {pct:g}")
            if pct > 0:
                out.add(pct)
    return sorted(out)


def shard(items: Sequence[Item], rank: int, world_size: int) -> list[Item]:
    """Rank ``rank``'s slice of ``items`` sorted by ``(split, stem)``: every ``world_size``-th one."""
    ordered = sorted(items, key=lambda it: (it.split, it.stem))
    return ordered[rank::world_size]


# --------------------------------------------------------------------------------------------
# configuration


@dataclass
class BenchmarkConfig:
    """Everything ``dissam benchmark`` needs (the CLI maps its flags one to one)."""

    data: str
    run_dir: str
    splits: list[str] | None = None
    sam: str | None = None
    refiner: str | None = None
    hq_sam: str | None = None
    isnet: str | None = None
    methods: list[str] | None = None  # None = every method whose weights are given
    jitters: list[float] = field(default_factory=list)
    jitter_seed: int = 0
    size: int = 1024
    device: str | None = "auto"
    workers: int = 1
    metrics: list[str] | None = None
    progress: bool = True
    skeleton_cache: str | None = "auto"
    evaluate: bool = True
    rank: int = 0
    world_size: int = 1
    barrier_timeout_s: float = 7 * 24 * 3600.0


def resolve_methods(cfg: BenchmarkConfig, have_masks: bool) -> tuple[list[str], list[str]]:
    """``(methods to run, skip messages)``. Explicitly requested methods without weights raise."""
    available = {
        "dis-sam": (cfg.refiner is not None, "--refiner CKPT (the DIS-SAM checkpoint)"),
        "sam": (cfg.sam is not None or have_masks, "--sam SOURCE (or mask/ folders in every split)"),
        "hq-sam": (cfg.hq_sam is not None, "--hq-sam SOURCE (an HQ-SAM Hugging Face folder or hub id)"),
        "isnet": (cfg.isnet is not None, "--isnet isnet.pth (the IS-Net DIS checkpoint)"),
    }
    if cfg.methods:
        unknown = [m for m in cfg.methods if m not in METHODS]
        if unknown:
            raise DisSamError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
        missing = [f"{m} needs {available[m][1]}" for m in cfg.methods if not available[m][0]]
        if missing:
            raise DisSamError("requested method(s) cannot run: " + "; ".join(missing))
        return [m for m in METHODS if m in cfg.methods], []
    run = [m for m in METHODS if available[m][0]]
    skipped = [f"skipping {m}: it needs {available[m][1]}" for m in METHODS if not available[m][0]]
    if not run:
        raise DisSamError("no method can run: give --refiner (and --sam), --hq-sam or --isnet")
    return run, skipped


def columns(methods: Sequence[str], jitters: Sequence[float]) -> list[str]:
    """Table columns: the methods, then each prompted method at each jitter."""
    cols = list(methods)
    for pct in jitters:
        cols += [method_name(m, pct) for m in methods if m in PROMPTED]
    return cols


# --------------------------------------------------------------------------------------------
# the per-image runner


class _FatalError(DisSamError):
    """A model could not be loaded: stops the run instead of failing every image."""


def _fatal(loader):
    def wrapped(self):
        try:
            return loader(self)
        except _FatalError:
            raise
        except Exception as exc:  # a wrong path, checkpoint or hub id is the user's, not the image's
            raise _FatalError(
                str(exc) if isinstance(exc, DisSamError) else f"{type(exc).__name__}: {exc}"
            ) from exc

    return wrapped


class _Runner:
    """Lazily loaded models and the per-image work of one rank."""

    def __init__(self, cfg: BenchmarkConfig, methods: list[str]) -> None:
        self.cfg = cfg
        self.methods = methods
        self.run_dir = Path(cfg.run_dir)
        self._sam = self._hq = self._refiner = self._isnet = None
        self._refiner_dropped: list[int] = []
        self._device = None
        self.stats = {"computed": 0, "reused": 0, "sam_calls": 0, "failed": 0}
        self._settings_written = False
        self.writer = None  # a ThreadPoolExecutor for the PNG writes, or None (synchronous)
        self._pending: list = []

    # ---------------------------------------------------------------- models
    @property
    def device(self):
        if self._device is None:
            from dissam.utils import resolve_device

            self._device = resolve_device(self.cfg.device)
        return self._device

    @_fatal
    def sam(self):
        if self._sam is None:
            if self.cfg.sam is None:
                raise DisSamError("a SAM mask has to be computed but no --sam SOURCE was given")
            from dissam.stages import load_stage1

            # any stage 1, from the source (a .pth is SAM; a folder's config.json names SAM 2.1 / SAM 3)
            self._sam = load_stage1("auto", self.cfg.sam, self.device)
        return self._sam

    @_fatal
    def hq(self):
        if self._hq is None:
            from dissam.models.sam import load_sam

            self._hq = load_sam(self.cfg.hq_sam, self.device, hq=True)
        return self._hq

    @_fatal
    def refiner(self):
        if self._refiner is None:
            from dissam.checkpoints import dropped_prompt_channels

            self._refiner = _load_net(self.cfg.refiner, self.device, 5, "--refiner")
            # channels an ablation model never saw (Table 2 rows), zeroed in its inputs
            self._refiner_dropped = list(dropped_prompt_channels(self._refiner))
        return self._refiner

    @_fatal
    def isnet(self):
        if self._isnet is None:
            self._isnet = _load_net(self.cfg.isnet, self.device, 3, "--isnet")
        return self._isnet

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
        from dissam.io import read_image, read_mask

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
        except (ImportError, _FatalError):
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
            except (ImportError, _FatalError):
                raise
            except Exception as exc:  # noqa: BLE001
                failures += self._fail(item, [col], exc)
        return failures

    def _write(self, path: Path, arr: np.ndarray, what: tuple[Item, str] | None = None) -> None:
        """Write ``arr`` as PNG (atomically), on a writer thread when :attr:`writer` is set; a
        prediction (``what`` = (item, column)) counts as computed once it is on disk."""
        if self.writer is None:
            _write_png_fast(path, arr)
            if what is not None:
                self.stats["computed"] += 1
            return
        self._pending.append((self.writer.submit(_write_png_fast, path, arr), what))

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
                from dissam.utils import atomic_write_bytes

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
        from dissam.io import read_mask

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
        import torch

        from dissam.transforms import postprocess, to_authors_png

        x = self._input(method, pct, ctx)
        net = self.refiner() if method == "dis-sam" else self.isnet()
        if method == "dis-sam" and self._refiner_dropped:
            x = x.clone()  # the faithful sample is cached for the other methods
            x[self._refiner_dropped] = 0.0
        with torch.inference_mode():
            d1 = net(x[None].to(self.device))[0][0]  # side output 1: (1, 1, S, S) probabilities
            pred = postprocess(d1[0, 0].float(), ctx["hw"])  # (H, W)
        return to_authors_png(pred)

    def _input(self, method: str, pct: float | None, ctx: dict):
        """The network input: ``(5, S, S)`` for ``dis-sam``, ``(3, S, S)`` for ``isnet``, float32.

        One :func:`~dissam.transforms.faithful_sample` per image (with the GT-box SAM mask when that
        is needed) gives the RGB channels and the authors' GT box map; a jittered variant swaps in
        its SAM mask (resized like the authors' masks) and the box map of the jittered box
        (:func:`~dissam.transforms.box_map_from_box`), through the same
        :func:`~dissam.transforms.assemble_input`."""
        import torch

        from dissam.transforms import assemble_input, box_map_from_box, faithful_sample, resize_uint8

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


def _write_png_fast(path: Path, arr: np.ndarray) -> None:
    """Lossless 8-bit PNG through OpenCV (compression level 1: about 6x faster than PIL's default on
    a 8 MP map, files about 1.6x larger), written atomically (temp file + rename)."""
    import cv2

    from dissam.utils import atomic_write_bytes

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr, dtype=np.uint8))
    if not ok:
        raise DisSamError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, buf.tobytes())


def _load_net(path, device, in_ch: int, flag: str):
    from dissam.checkpoints import load_refiner

    net = load_refiner(path, device)
    got = (
        int(net.conv_in.weight.shape[1])
        if hasattr(net, "conv_in") and hasattr(net.conv_in, "weight")
        else None
    )
    if got is not None and got != in_ch:
        raise DisSamError(
            f"{flag} {path} is a {got}-channel network; expected {in_ch} channels "
            + ("(the DIS-SAM refiner: RGB + SAM mask + box map)" if in_ch == 5 else "(IS-Net: RGB only)")
        )
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# --------------------------------------------------------------------------------------------
# sharding


def dist_env() -> tuple[int, int]:
    """``(rank, world_size)`` from ``RANK``/``WORLD_SIZE`` (torchrun), ``(0, 1)`` when unset."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1 or not 0 <= rank < world:
        raise DisSamError(f"bad RANK={rank} / WORLD_SIZE={world}")
    return rank, world


def _plan_id(items: Sequence[Item], cols: Sequence[str], cfg: BenchmarkConfig) -> str:
    h = hashlib.sha1()
    for it in items:
        h.update(f"{it.split}/{it.stem}\n".encode())
    h.update(json.dumps([list(cols), cfg.jitter_seed, cfg.size, cfg.world_size]).encode())
    return h.hexdigest()[:12]


def _run_id(plan: str) -> str:
    return os.environ.get("DISSAM_RUN_ID") or (
        os.environ["TORCHELASTIC_RUN_ID"]
        if os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none"
        else f"plan-{plan}"
    )


def _use_gloo(world: int) -> bool:
    return (
        world > 1
        and bool(os.environ.get("MASTER_ADDR"))
        and bool(os.environ.get("MASTER_PORT"))
        and (os.environ.get("DISSAM_BARRIER", "auto") != "file")
    )


def _gather(report: dict, cfg: BenchmarkConfig, shard_dir: Path) -> list[dict] | None:
    """All ranks' reports on rank 0 (None on the others), after every rank finished."""
    from dissam.utils import atomic_write_bytes

    if cfg.world_size == 1:
        return [report]
    if _use_gloo(cfg.world_size):
        from datetime import timedelta

        import torch.distributed as dist

        own = not dist.is_initialized()
        if own:
            dist.init_process_group("gloo", timeout=timedelta(seconds=cfg.barrier_timeout_s))
        gathered = [None] * cfg.world_size if cfg.rank == 0 else None
        try:
            dist.gather_object(report, gathered, dst=0)
        finally:
            if own:
                dist.destroy_process_group()
        return gathered if cfg.rank == 0 else None
    atomic_write_bytes(shard_dir / f"rank{cfg.rank}.json", json.dumps(report).encode())
    if cfg.rank != 0:
        return None
    deadline = time.monotonic() + cfg.barrier_timeout_s
    paths = [shard_dir / f"rank{r}.json" for r in range(cfg.world_size)]
    logger.info("rank 0 waits for %d rank(s) (%s)", cfg.world_size - 1, shard_dir)
    seen: dict[Path, dict] = {}
    while len(seen) < len(paths):
        for p in paths:
            if p not in seen and p.is_file():
                seen[p] = json.loads(p.read_text())
                if "fatal" in seen[p]:
                    raise DisSamError(f"rank {seen[p]['rank']} stopped: {seen[p]['fatal']}")
        if len(seen) == len(paths):
            break
        if time.monotonic() > deadline:
            missing = [p.name for p in paths if p not in seen]
            raise DisSamError(f"timed out waiting for {', '.join(missing)} in {shard_dir}")
        time.sleep(2.0)
    return [seen[p] for p in paths]


# --------------------------------------------------------------------------------------------
# the benchmark


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Predict every missing map of this rank's images, then (rank 0) evaluate and write the tables.

    Returns ``{"methods", "columns", "splits", "stats", "failures", "skipped", "table"}`` where
    ``stats`` counts this rank's ``computed``/``reused`` predictions, ``sam_calls`` and ``failed``,
    ``failures`` lists ``{"split", "stem", "method", "error"}`` (all ranks' on rank 0) and ``table`` is
    the evaluation (:func:`evaluate_run`) on rank 0, None elsewhere or without ``cfg.evaluate``.
    """
    from tqdm.auto import tqdm

    from dissam.metrics import ALL_METRICS, check_metrics

    metrics = check_metrics(cfg.metrics or list(ALL_METRICS))
    splits = discover_splits(cfg.data, cfg.splits)
    by_split = {s: split_items(cfg.data, s) for s in splits}
    items = [it for s in splits for it in by_split[s]]
    have_masks = all(it.mask is not None for it in items)
    methods, skipped = resolve_methods(cfg, have_masks)
    for msg in skipped:
        logger.warning(msg)
        if cfg.rank == 0:
            print(msg, file=sys.stderr)
    if cfg.size < 32 or cfg.size % 32:
        raise DisSamError(f"--size must be a positive multiple of 32, got {cfg.size}")
    needs_sam = (cfg.jitters and any(m in ("dis-sam", "sam") for m in methods)) or (
        not have_masks and any(m in ("dis-sam", "sam") for m in methods)
    )
    if needs_sam and cfg.sam is None:
        n = sum(it.mask is None for it in items)
        raise DisSamError(
            f"SAM masks must be computed ({n} image(s) without mask/"
            + (", and box jitter" if cfg.jitters else "")
            + "): give --sam SOURCE (e.g. sam_vit_l_0b3195.pth)"
        )
    cols = columns(methods, cfg.jitters)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_settings(cfg, methods, write=False)
    mine = shard(items, cfg.rank, cfg.world_size)
    runner = _Runner(cfg, methods)
    failures: list[dict] = []
    desc = "benchmark" + (f" [rank {cfg.rank}/{cfg.world_size}]" if cfg.world_size > 1 else "")
    # the reader thread decodes the next image while this one is in the networks; two writer
    # threads encode and write the PNGs
    plans: dict[int, list] = {}

    def plan(i: int) -> list:
        if i not in plans:
            plans[i] = runner.todo(mine[i])
        return plans[i]

    plan_id = _plan_id(items, cols, cfg)
    shard_dir = run_dir / "shards" / _run_id(plan_id)
    try:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="dissam-read") as reader,
            ThreadPoolExecutor(2, thread_name_prefix="dissam-write") as writer,
        ):
            runner.writer = writer
            ahead = reader.submit(runner.read, mine[0]) if mine and plan(0) else None
            try:
                for i, item in enumerate(
                    tqdm(mine, desc=desc, unit="img", disable=not cfg.progress, file=sys.stderr)
                ):
                    current, ahead = ahead, None
                    if i + 1 < len(mine) and plan(i + 1):
                        ahead = reader.submit(runner.read, mine[i + 1])
                    failures += runner.process(item, plan(i), current)
                    failures += runner.drain(max_pending=8)
                    plans.pop(i, None)
            finally:
                failures += runner.drain(0)
                runner.writer = None
    except Exception as exc:
        if cfg.world_size > 1 and not _use_gloo(cfg.world_size):
            # tell rank 0, which would otherwise wait for this rank until the barrier timeout
            from dissam.utils import atomic_write_bytes

            msg = str(exc) if isinstance(exc, DisSamError) else f"{type(exc).__name__}: {exc}"
            atomic_write_bytes(
                shard_dir / f"rank{cfg.rank}.json", json.dumps({"rank": cfg.rank, "fatal": msg}).encode()
            )
        raise
    report = {
        "rank": cfg.rank,
        "items": [f"{it.split}/{it.stem}" for it in mine],
        "stats": runner.stats,
        "failures": failures,
    }
    reports = _gather(report, cfg, shard_dir)
    out = {
        "methods": methods,
        "columns": cols,
        "splits": splits,
        "stats": runner.stats,
        "failures": failures,
        "skipped": skipped,
        "table": None,
        "reports": reports,
    }
    if reports is None:
        return out
    all_failures = [f for r in reports for f in r["failures"]]
    out["failures"] = all_failures
    _write_json(run_dir / "failures.json", all_failures)
    if cfg.evaluate:
        out["table"] = evaluate_run(cfg, splits, cols, metrics, all_failures, by_split)
    return out


_SETTINGS = ("data", "sam", "refiner", "hq_sam", "isnet", "size", "jitter_seed")


def _source_id(value) -> Any:
    if isinstance(value, str) and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def check_settings(cfg: BenchmarkConfig, methods: Sequence[str] = METHODS, write: bool = True) -> dict:
    """Guard the resumable run against mixing models: ``RUN_DIR/settings.json`` records the data
    root, the weights, the size and the jitter seed of the first run; a later run that changes one of
    them (a setting the run does not use is not a change) raises DisSamError instead of silently reusing maps made
    with other settings. ``write=False`` only checks (the runner records the settings just before its
    first new prediction, so a run that fails to load its weights records nothing). Returns the
    merged settings."""
    path = Path(cfg.run_dir) / "settings.json"
    now = {k: _source_id(getattr(cfg, k)) for k in _SETTINGS}
    if not any(m in ("dis-sam", "isnet") for m in methods):
        now["size"] = None  # only the refiner and IS-Net depend on it
    if not cfg.jitters:
        now["jitter_seed"] = None
    old = json.loads(path.read_text()) if path.is_file() else {}
    changed = [
        f"{k}: {old[k]!r} -> {now[k]!r}"
        for k in _SETTINGS
        if old.get(k) is not None and now[k] is not None and old[k] != now[k]
    ]
    if changed:
        raise DisSamError(
            f"{cfg.run_dir} holds predictions made with other settings ({'; '.join(changed)}); "
            "use a new --run-dir (or delete the predictions/ folders you want recomputed and settings.json)"
        )
    merged = {k: now[k] if now[k] is not None else old.get(k) for k in _SETTINGS}
    if write and merged != old:
        _write_json(path, merged)
    return merged


def _write_json(path: Path, obj) -> None:
    from dissam.utils import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def evaluate_run(
    cfg: BenchmarkConfig,
    splits: Sequence[str],
    cols: Sequence[str],
    metrics: Sequence[str],
    failures: Sequence[dict] = (),
    by_split: dict[str, list[Item]] | None = None,
) -> dict:
    """Evaluate ``RUN_DIR/predictions/<column>/<split>`` against ``DATA/<split>/gt`` and write
    ``RUN_DIR/table.{md,csv,json}`` and ``RUN_DIR/per_image/<column>/<split>.csv``.

    A (column, split) with a failed image is left out (shown as "-") and named in ``incomplete``.
    "DIS-TE(1-4)" (mean of the four test splits' aggregates) is added for columns that have all four.
    """
    from dissam.evaluate import (
        TEST_MEAN,
        TEST_SPLITS,
        evaluate_folders,
        format_table,
        mean_over_splits,
        per_image_csv,
    )
    from dissam.utils import atomic_write_bytes, library_versions

    run_dir = Path(cfg.run_dir)
    failed = {(f["method"], f["split"]) for f in failures}
    results: dict[str, dict[str, dict]] = {c: {} for c in cols}
    incomplete, warnings = [], []
    for col in cols:
        for split in splits:
            if (col, split) in failed:
                incomplete.append(f"{col} / {split}")
                continue
            gt_dir = Path(cfg.data) / split / "gt"
            pred_dir = run_dir / "predictions" / col / split
            try:
                ev = evaluate_folders(
                    pred_dir,
                    gt_dir,
                    workers=cfg.workers,
                    metrics=metrics,
                    progress=cfg.progress,
                    skeleton_cache=cfg.skeleton_cache,
                )
            except DatasetError as exc:
                incomplete.append(f"{col} / {split}: {exc}")
                continue
            results[col][split] = ev["aggregate"]
            warnings += [f"[{col} / {split}] {w}" for w in ev["warnings"]]
            atomic_write_bytes(
                run_dir / "per_image" / col / f"{split}.csv",
                per_image_csv(ev["per_image"], ev["aggregate"]).encode(),
            )
            _write_json(run_dir / "per_image" / col / f"{split}.json", ev["per_image"])
    out_splits = list(splits)
    if all(s in splits for s in TEST_SPLITS):
        for col in cols:
            if all(s in results[col] for s in TEST_SPLITS):
                results[col][TEST_MEAN] = mean_over_splits(results[col], TEST_SPLITS)
        out_splits.insert(max(out_splits.index(s) for s in TEST_SPLITS) + 1, TEST_MEAN)
    markdown, csv_text = format_table(results, out_splits, cols)
    table = {
        "results": results,
        "splits": out_splits,
        "methods": list(cols),
        "metrics": list(metrics),
        "n_images": {s: len(by_split[s]) for s in splits} if by_split else None,
        "incomplete": incomplete,
        "warnings": warnings,
        "versions": library_versions(),
        "protocol": {
            "sam_box": "whole-GT box (spec §2.6): GT >= 128, 8-connected components >= 0.4% of the area",
            "sam_mask": f"mask/<stem>.png when present, else SAM selection={SAM_SELECTION!r} on the SAM box",
            "hq_sam_mask": f"HQ-SAM selection={HQ_SELECTION!r} on the SAM box",
            "refiner_input": f"faithful (box map from the resized GT), size {cfg.size}",
            "saved_map": "d1 -> bilinear to original size -> per-image min-max -> x255 -> uint8 (truncation)",
            "jitter": {"pcts": list(cfg.jitters), "seed": cfg.jitter_seed},
        },
        "config": asdict(cfg),
    }
    atomic_write_bytes(run_dir / "table.md", markdown.encode())
    atomic_write_bytes(run_dir / "table.csv", csv_text.encode())
    _write_json(run_dir / "table.json", table)
    table["markdown"] = markdown
    return table
