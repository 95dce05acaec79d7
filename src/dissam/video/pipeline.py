"""Hair-fine video from one prompt: track (stage 1) -> refine every frame (stage 2) -> write.

For a clip of ``N`` frames prompted on frame ``K``:

1. frames ``K, K+1, ..., N-1`` are tracked forward, then ``K-1, ..., 0`` backward (frames before
   ``K`` are first decoded to PNG files in the output folder, so the backward pass reads them in
   reverse without holding them in memory; the files are removed at the end);
2. each frame's coarse mask gives its box (the mask's tight box, so the refiner input is exactly
   the paper's ``[R, G, B, coarse mask, box map]``), and frames are refined ``batch_size`` at a time;
3. for frame ``i`` the folder gets ``coarse/i.png`` (stage 1), ``alpha/i.png`` (8-bit soft map)
   and, last, ``masks/i.png`` (binary); all written atomically, so ``masks/i.png`` existing means
   frame ``i`` is complete;
4. when every frame is done, ``STEM_alpha.mp4`` and ``STEM_cutout.webm`` are encoded by streaming the
   source frames and the ``alpha/`` PNGs.

**Resume**: run the same command again. Frames whose ``masks/i.png`` exists are skipped; the
tracker is re-started on the last written frame of each pass with that frame's coarse mask as a
mask prompt, then continues with the first missing frame. No frame is computed or written twice
(the tracker's memory of frames before the restart is lost, so the frames after it can differ
slightly from an uninterrupted run).

A frame whose coarse mask is empty (object lost or occluded) gets an empty mask and is not refined.

Memory: one decoded frame plus at most ``batch_size`` frames awaiting refinement; the tracker's
bounded state (:class:`dissam.video.trackers.SamVideoTracker`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dissam.boxes import box_from_mask, validate_boxes, widen_box
from dissam.errors import BoxError, DisSamError, NoMatchError
from dissam.io import read_image, read_mask, write_png
from dissam.transforms import clean_inputs, postprocess
from dissam.utils import atomic_write_bytes
from dissam.video.io import iter_frames, probe, write_video

log = logging.getLogger(__name__)

PNG = "{:06d}.png"


@dataclass
class VideoResult:
    """``frames`` in the clip, ``computed`` this run, ``skipped`` (already written), the output
    ``folder``, and the two videos (``None`` when ``write_videos=False``)."""

    frames: int
    computed: int
    skipped: int
    folder: Path
    alpha_video: Path | None
    cutout_video: Path | None


def frame_box(mask: np.ndarray) -> np.ndarray | None:
    """Refiner box of a coarse mask: its tight XYXY box (``(x1, y1)`` inclusive), widened to at least
    2 px per axis; ``None`` for an empty mask."""
    box = box_from_mask(mask)
    return None if box is None else widen_box(box, mask.shape[:2])


@torch.inference_mode()
def refine_frames(predictor, frames: list[np.ndarray], coarse: list[np.ndarray],
                  boxes: list[np.ndarray]) -> np.ndarray:
    """Stage 2 for a batch of frames of one clip: ``len(frames)`` soft maps ``N x H x W`` float32.

    Each frame is its own image: the refiner input of frame ``i`` is
    ``clean_inputs(frames[i], coarse[i], boxes[i])``, and the ``N`` inputs run as one batch."""
    h, w = frames[0].shape[:2]
    x = torch.cat([clean_inputs(f, c[None], b[None], predictor.size) for f, c, b in zip(frames, coarse, boxes)])
    d1 = predictor.refiner_runner(x)  # the predictor's backend (torch through Refiner.forward_d1, or ONNX)
    return postprocess(d1, (h, w)).cpu().numpy()


class _FrameCache:
    """Frames before the prompt frame, kept on disk for the backward pass."""

    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, i: int, frame: np.ndarray) -> None:
        write_png(self.folder / PNG.format(i), frame)

    def get(self, i: int) -> np.ndarray:
        return read_image(self.folder / PNG.format(i))

    def has(self, i: int) -> bool:
        return (self.folder / PNG.format(i)).is_file()


class VideoJob:
    """One clip, one prompt, one output folder (see the module docstring for the layout)."""

    def __init__(self, video: str | os.PathLike, out: str | os.PathLike, predictor, tracker, *,
                 box=None, text: str | None = None, frame: int = 0, batch_size: int = 4,
                 score_threshold: float = 0.5, write_videos: bool = True, progress: bool = True,
                 on_frame: Callable[[int], None] | None = None):
        if (box is None) == (text is None):
            raise DisSamError("give exactly one prompt: a box or a text phrase")
        self.video = Path(video)
        self.out = Path(out)
        self.predictor = predictor
        self.tracker = tracker
        self.text = text
        self.text_threshold = float(score_threshold)  # --text: minimum SAM 3 score on the prompt frame
        self.batch_size = max(1, int(batch_size))
        self.write_videos = write_videos
        self.progress = progress
        self.on_frame = on_frame  # called after each frame is written (tests use it to simulate a crash)
        self.info = probe(self.video)
        n = self.info.frames
        self.frame = int(frame)
        if not 0 <= self.frame < n:
            raise DisSamError(f"--frame {frame} is outside the clip (frames 0..{n - 1})")
        self.box = None
        if box is not None:
            try:
                self.box = validate_boxes(box, (self.info.height, self.info.width))[0]
            except BoxError as exc:
                raise BoxError(f"{exc} (frame {self.frame} of {self.video.name})") from None
        self.stem = self.video.stem
        for sub in ("masks", "alpha", "coarse"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self._check_manifest()

    # ------------------------------------------------------------------ bookkeeping
    def _check_manifest(self) -> None:
        """The folder belongs to one clip and prompt: refuse to resume into a different job."""
        meta = {"video": self.video.name, "frames": self.info.frames, "frame": self.frame,
                "box": None if self.box is None else [float(v) for v in self.box], "text": self.text,
                "stage1": getattr(self.tracker, "name", "?")}
        path = self.out / "job.json"
        if path.is_file():
            old = json.loads(path.read_text())
            if {k: old.get(k) for k in meta} != meta:
                raise DisSamError(f"{self.out} holds the output of another job ({old}); use a new -o folder")
        else:
            atomic_write_bytes(path, json.dumps(meta, indent=1).encode())

    def done(self, i: int) -> bool:
        return (self.out / "masks" / PNG.format(i)).is_file()

    def _first_missing(self, order: list[int]) -> int | None:
        for pos, i in enumerate(order):
            if not self.done(i):
                return pos
        return None

    # ------------------------------------------------------------------ running
    def run(self) -> VideoResult:
        from tqdm import tqdm

        n, k = self.info.frames, self.frame
        already = sum(self.done(i) for i in range(n))
        self._bar = tqdm(total=n, initial=already, desc=f"video {self.video.name}", unit="frame",
                         disable=not self.progress)
        self.computed = 0
        cache = _FrameCache(self.out / ".frames_before_prompt")
        try:
            forward = list(range(k, n))
            backward = list(range(k - 1, -1, -1))
            self._pass(forward, iter_frames(self.video, start=k), reverse=False)
            if self._first_missing(backward) is not None:
                self._fill_cache(cache, k)
                self._pass(backward, ((i, cache.get(i)) for i in backward), reverse=True)
        finally:
            self._bar.close()
        shutil.rmtree(cache.folder, ignore_errors=True)
        missing = [i for i in range(n) if not self.done(i)]
        if missing:
            raise DisSamError(f"frames {missing[:5]}... were not written")
        alpha = cut = None
        if self.write_videos:
            alpha, cut = self.out / f"{self.stem}_alpha.mp4", self.out / f"{self.stem}_cutout.webm"
            if self.computed or not (alpha.is_file() and cut.is_file()):  # up to date after a finished run
                alpha, cut = self._encode()
        return VideoResult(n, self.computed, n - self.computed, self.out, alpha, cut)

    def _fill_cache(self, cache: _FrameCache, k: int) -> None:
        """Frames ``0..k-1`` on disk (those an interrupted earlier run already stored are kept)."""
        if all(cache.has(i) for i in range(k)):
            return
        for i, f in iter_frames(self.video, start=0, stop=k):
            if not cache.has(i):
                cache.put(i, f)

    def _prompt(self, frame: np.ndarray) -> dict:
        """The first prompt of the job: the user's box, or the best SAM 3 instance of the text."""
        if self.box is not None:
            return {"box": self.box}
        stage = self.predictor.get_text_stage()
        stage.set_image(frame)
        found = stage.find(self.text, score_threshold=self.text_threshold, max_instances=1)
        if len(found) == 0:
            raise NoMatchError(f"the text prompt {self.text!r} matched nothing on frame {self.frame} "
                               f"(score >= {self.text_threshold:g}); try another --frame or a lower --score-threshold")
        return {"box": found.boxes[0]}

    def _pass(self, order: list[int], frames: Iterator[tuple[int, np.ndarray]], reverse: bool) -> None:
        """Track and refine the frames of ``order`` (consecutive indices, forward or backward);
        ``frames`` yields ``(index, frame)`` in that order."""
        start = self._first_missing(order)
        if start is None:
            return
        pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        started = False
        for i, frame in frames:
            pos = abs(i - order[0])
            if pos < start - 1:
                continue
            if pos == start - 1:
                # resume: re-seed the tracker on the last written frame of this pass with its coarse mask
                self.tracker.start(frame, i, mask=self._coarse(i), reverse=reverse)
                started = True
                continue
            if not started:
                if reverse:  # the backward pass starts from the prompt frame's coarse mask
                    k = self.frame
                    self.tracker.start(self._frame_at(k), k, mask=self._coarse(k), reverse=True)
                    coarse = self.tracker.step(frame, i)
                else:
                    coarse = self.tracker.start(frame, i, reverse=False, **self._prompt(frame))
                started = True
            else:
                coarse = self.tracker.step(frame, i)
            pending.append((i, frame, np.asarray(coarse, dtype=bool)))
            if len(pending) >= self.batch_size:
                self._flush(pending)
                pending = []
        if pending:
            self._flush(pending)

    def _coarse(self, i: int) -> np.ndarray:
        return read_mask(self.out / "coarse" / PNG.format(i)) > 127

    def _frame_at(self, i: int) -> np.ndarray:
        for _, f in iter_frames(self.video, start=i, stop=i + 1):
            return f
        raise DisSamError(f"frame {i} of {self.video} cannot be read")

    def _flush(self, pending: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Refine a batch and write its frames in order (coarse, alpha, then the mask last)."""
        h, w = pending[0][1].shape[:2]
        boxes = [frame_box(c) for _, _, c in pending]
        live = [j for j, b in enumerate(boxes) if b is not None]
        soft = np.zeros((len(pending), h, w), np.float32)
        if live:
            soft[live] = refine_frames(self.predictor, [pending[j][1] for j in live],
                                       [pending[j][2] for j in live], [boxes[j] for j in live])
        binary = self.predictor.binarize(soft)
        for j, (i, _, coarse) in enumerate(pending):
            write_png(self.out / "coarse" / PNG.format(i), coarse.astype(np.uint8) * 255)
            write_png(self.out / "alpha" / PNG.format(i), (soft[j] * 255).round().clip(0, 255).astype(np.uint8))
            write_png(self.out / "masks" / PNG.format(i), binary[j].astype(np.uint8) * 255)
            self.computed += 1
            self._bar.update(1)
            if self.on_frame is not None:
                self.on_frame(i)

    def _encode(self) -> tuple[Path, Path]:
        """The alpha and cut-out videos, streamed from the source clip and the ``alpha/`` PNGs."""
        alpha_path = self.out / f"{self.stem}_alpha.mp4"
        cut_path = self.out / f"{self.stem}_cutout.webm"
        fps = self.info.fps

        def alphas():
            for i in range(self.info.frames):
                yield read_mask(self.out / "alpha" / PNG.format(i))

        def cutouts():
            for (_, frame), a in zip(iter_frames(self.video), alphas()):
                yield np.dstack([frame, a])

        write_video(alpha_path, alphas(), fps, "alpha")
        write_video(cut_path, cutouts(), fps, "cutout")
        return alpha_path, cut_path


def segment_video(video, out, predictor, tracker, *, box=None, text: str | None = None, frame: int = 0,
                  batch_size: int = 4, write_videos: bool = True, progress: bool = True,
                  score_threshold: float = 0.5) -> VideoResult:
    """Segment one object through ``video`` into ``out`` (resumable); see :class:`VideoJob`.

    Args:
        video: a clip PyAV can read (``.mp4``, ``.mov``, ``.webm``, ...).
        out: output folder (``masks/``, ``alpha/``, ``coarse/`` PNG sequences and the two videos).
        predictor: a :class:`~dissam.predictor.DisSamPredictor` (its refiner, size, threshold and
            dtype are used; with ``text``, its SAM 3 text stage).
        tracker: a :class:`~dissam.video.trackers.Tracker` (stage 1 for video).
        box: XYXY pixels on frame ``frame``, ``(x1, y1)`` inclusive; or
        text: a phrase; SAM 3's best instance on frame ``frame`` gives the box.
    """
    job = VideoJob(video, out, predictor, tracker, box=box, text=text, frame=frame, batch_size=batch_size,
                   score_threshold=score_threshold, write_videos=write_videos, progress=progress)
    return job.run()
