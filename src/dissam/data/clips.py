"""Generated moving-object clips for measuring video segmentation (no real footage needed).

A thin-structured object from :mod:`dissam.data.synthetic` (tree, fence, wheel, insect, ...) is
rendered once with its exact soft coverage and slides over a fixed background along a straight path
with a sinusoidal wobble. Displacements are whole pixels, so the ground truth of frame ``t+1`` is
exactly the ground truth of frame ``t`` shifted by the known ``(dx, dy)``: motion compensation for the
temporal-stability metrics (:mod:`dissam.video.stability`) is exact. Each frame gets its own sensor
noise (the only appearance change), which is what makes per-frame stage 1 and refiner outputs
flicker on a static object.

Frames are generated on demand (an iterator), never all held in memory. Determinism: clip ``seed``
uses ``numpy.random.default_rng(seed)`` for its layout and ``default_rng(seed * 1_000_003 + t + 1)``
for the noise of frame ``t``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dissam.data.synthetic import KINDS, background, coverage_to_u8, object_texture, render_object
from dissam.io import write_png
from dissam.video.io import write_test_clip


@dataclass
class MovingClip:
    """A clip description: ``frames`` of ``size`` ``(H, W)``; the object (``kind``, ``obj_hw``)
    has its top-left corner at ``offsets[t] = (x, y)`` in frame ``t``."""

    frames: int
    size: tuple[int, int]
    kind: str
    seed: int
    obj_hw: tuple[int, int]
    offsets: np.ndarray  # (frames, 2) int64 (x, y)
    noise: float

    def motion(self, t: int) -> tuple[int, int]:
        """``(dx, dy)`` from frame ``t`` to frame ``t + 1``."""
        d = self.offsets[t + 1] - self.offsets[t]
        return int(d[0]), int(d[1])


def moving_clip(frames: int = 24, size: tuple[int, int] = (240, 320), kind: str = "tree", seed: int = 0,
                travel: float = 0.35, noise: float = 3.0) -> MovingClip:
    """Describe a clip: the object (about 55 % of the frame per side) crosses ``travel`` of the
    frame width, with a vertical wobble of a few pixels."""
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}; choose one of {sorted(KINDS)}")
    if frames < 2:
        raise ValueError("a clip needs at least 2 frames")
    rng = np.random.default_rng(seed)
    h, w = size
    oh, ow = int(h * 0.55), int(w * 0.5)
    x0 = int(rng.integers(2, max(3, int(w * 0.08))))
    x1 = min(w - ow - 2, x0 + int(travel * w))
    y_mid = (h - oh) // 2
    t = np.arange(frames)
    xs = np.rint(x0 + (x1 - x0) * t / (frames - 1))
    ys = np.rint(y_mid + 0.04 * h * np.sin(2 * np.pi * t / max(8, frames)))
    offsets = np.stack([xs, np.clip(ys, 1, h - oh - 1)], axis=1).astype(np.int64)
    return MovingClip(frames, (h, w), kind, seed, (oh, ow), offsets, float(noise))


def clip_frames(clip: MovingClip) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, gt)`` per frame: ``H x W x 3`` uint8 RGB and ``H x W`` uint8 soft ground truth."""
    rng = np.random.default_rng(clip.seed)
    h, w = clip.size
    oh, ow = clip.obj_hw
    bg = background(h, w, rng, use_photos=True)
    cov = render_object(clip.kind, oh, ow, rng)
    tex = object_texture(oh, ow, rng)
    gt_obj = coverage_to_u8(cov)
    a = cov[..., None]
    for t in range(clip.frames):
        x, y = (int(v) for v in clip.offsets[t])
        img = bg.copy()
        reg = img[y : y + oh, x : x + ow]
        reg *= 1 - a
        reg += tex * a
        noise_rng = np.random.default_rng(clip.seed * 1_000_003 + t + 1)
        img += noise_rng.normal(0, clip.noise, img.shape).astype(np.float32)
        gt = np.zeros((h, w), np.uint8)
        gt[y : y + oh, x : x + ow] = gt_obj
        yield np.clip(np.rint(img), 0, 255).astype(np.uint8), gt


def write_clip(path, clip: MovingClip, fps: float = 10.0, gt_folder=None) -> int:
    """Encode the clip's frames to ``path`` (near-lossless H.264) and, if ``gt_folder`` is given,
    its ground truths as ``gt_folder/000000.png ...``. Returns the frame count."""
    from pathlib import Path

    def frames():
        for t, (img, gt) in enumerate(clip_frames(clip)):
            if gt_folder is not None:
                write_png(Path(gt_folder) / f"{t:06d}.png", gt)
            yield img

    return write_test_clip(path, frames(), fps)
