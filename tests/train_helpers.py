"""In-test data for the training tests: small images with thin structures and coarse masks that
lose them (the item format of ``dissam.data.dataset.DisDataset``)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def make_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb uint8 (S,S,3), gt uint8 (S,S), coarse uint8 (S,S))``: a dark blob with 1-px wires on a
    light, noisy background; the coarse mask is the GT eroded (wires vanish) and blurred."""
    gt = np.zeros((size, size), bool)
    cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
    r = rng.integers(max(2, size // 10), max(3, size // 6))
    yy, xx = np.mgrid[:size, :size]
    gt |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    for _ in range(rng.integers(2, 5)):
        ang = rng.uniform(0, np.pi)
        length = rng.integers(size // 4, size // 2)
        t = np.linspace(0, length, 4 * length)
        ys = np.clip(np.round(cy + np.sin(ang) * t * rng.choice([-1, 1])).astype(int), 0, size - 1)
        xs = np.clip(np.round(cx + np.cos(ang) * t * rng.choice([-1, 1])).astype(int), 0, size - 1)
        gt[ys, xs] = True
    bg = rng.uniform(170, 230, 3)
    fg = rng.uniform(20, 80, 3)
    rgb = np.where(gt[..., None], fg, bg) + rng.normal(0, 8, (size, size, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    coarse = ndimage.binary_erosion(gt, iterations=max(1, size // 32))
    coarse = ndimage.gaussian_filter(coarse.astype(np.float32), size / 48) > 0.3
    return rgb, (gt * 255).astype(np.uint8), (coarse * 255).astype(np.uint8)


class ThinDataset(torch.utils.data.Dataset):
    """``n`` generated samples; items ``{"image": (5,S,S) float32 [RGB-0.5, mask, box], "label":
    (1,S,S) float32, "name", "orig_hw", "index"}``; the four-way flip depends only on
    ``(seed, epoch, index)``."""

    def __init__(self, n: int, size: int = 64, seed: int = 0, augment: bool = False):
        rng = np.random.default_rng(seed)
        self.samples = [make_sample(rng, size) for _ in range(n)]
        self.size, self.seed, self.augment, self.epoch = size, seed, augment, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def gt_u8(self, index: int) -> np.ndarray:
        return self.samples[index][1]

    def coarse_u8(self, index: int) -> np.ndarray:
        return self.samples[index][2]

    def __getitem__(self, index: int) -> dict:
        rgb, gt, coarse = self.samples[index]
        box = np.zeros_like(gt)
        ys, xs = np.nonzero(gt)
        box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
        image = np.concatenate(
            [rgb.transpose(2, 0, 1) / 255.0 - 0.5, coarse[None] / 255.0, box[None].astype(np.float64)]
        ).astype(np.float32)
        label = (gt[None] / 255.0).astype(np.float32)
        image, label = torch.from_numpy(image), torch.from_numpy(label)
        if self.augment:
            r = np.random.default_rng([self.seed, self.epoch, index]).random()
            dims = [2] if r <= 0.25 else [1] if r <= 0.5 else [1, 2] if r <= 0.75 else []
            if dims:
                image, label = image.flip(dims), label.flip(dims)
        return {"image": image, "label": label, "name": f"s{index:03d}", "orig_hw": (self.size, self.size), "index": index}


def write_split(root, ds: ThinDataset):
    """``ds``'s samples as a split folder ``root/{im,gt,mask}/s<i>.png`` (what ``discover_split`` reads)."""
    from dissam.io import write_png

    for i, (rgb, gt, coarse) in enumerate(ds.samples):
        write_png(root / "im" / f"s{i}.png", rgb)
        write_png(root / "gt" / f"s{i}.png", gt)
        write_png(root / "mask" / f"s{i}.png", coarse)
    return root


def tensors_close(a: dict, b: dict, atol: float) -> list[str]:
    """The keys of two state dicts whose floating-point tensors differ by more than ``atol``
    (other tensors must be equal)."""
    bad = []
    for k, v in a.items():
        w = b[k]
        if v.is_floating_point():
            if not torch.allclose(v, w, rtol=0, atol=atol):
                bad.append(f"{k}: max diff {float((v - w).abs().max()):.3g}")
        elif not torch.equal(v, w):
            bad.append(k)
    return bad
