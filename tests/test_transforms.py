"""More of dissam.transforms: the authors' flip dims on CHW, faithful vs clean channels, box-map edges."""

from __future__ import annotations

import numpy as np
import torch

from dissam.transforms import (
    CHANNELS,
    box_map_from_box,
    box_map_from_gt,
    clean_input,
    faithful_sample,
    flip4,
    resize_uint8,
)


def test_flip4_matches_authors_dims_on_chw():
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    y = torch.arange(3 * 4).reshape(1, 3, 4)
    for r, dims in ((0.25, [2]), (0.5, [1]), (0.75, [1, 2])):
        fx, fy = flip4(r, x, y)
        assert torch.equal(fx, torch.flip(x, dims=dims)) and torch.equal(fy, torch.flip(y, dims=dims))
    fx, fy = flip4(0.7500001, x, y)
    assert fx is x and fy is y


def test_faithful_and_clean_share_rgb_and_mask_channels():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    gt = np.zeros((45, 70), np.uint8)
    gt[10:30, 20:60] = 255
    mask = rng.random((45, 70)) > 0.5
    f = faithful_sample(img, gt, mask, 48)
    c = clean_input(img, mask, (20, 10, 59, 29), 48)
    assert CHANNELS == ("R", "G", "B", "sam_mask", "box")
    assert torch.equal(f["image"][:4], c[:4])
    # the faithful box map comes from the resized GT (half-open quirk), the clean one from the box
    assert torch.equal(f["box_u8"], box_map_from_gt(f["gt_u8"]))
    assert torch.equal(c[4:5], box_map_from_box((20, 10, 59, 29), (45, 70), 48).float() / 255)
    assert f["mask_u8"].max() == 255 and set(torch.unique(f["box_u8"]).tolist()) <= {0, 255}


def test_box_map_from_box_full_image_and_edges():
    full = box_map_from_box((0, 0, 69, 44), (45, 70), 32)
    assert int(full.sum()) == 255 * 32 * 32
    corner = box_map_from_box((69, 44, 69, 44), (45, 70), 32)[0]
    ys, xs = torch.nonzero(corner, as_tuple=True)
    assert ys.tolist() == [31] and xs.tolist() == [31]


def test_resize_uint8_batched_equals_single():
    x = torch.randint(0, 256, (3, 3, 17, 23), dtype=torch.uint8)
    b = resize_uint8(x, (9, 31))
    assert b.shape == (3, 3, 9, 31) and b.dtype == torch.uint8
    for i in range(3):
        assert torch.equal(b[i], resize_uint8(x[i], (9, 31)))


def _authors_box(gt: torch.Tensor) -> torch.Tensor:
    """The released __getitem__ box code, literally (docs/data.md), for comparison."""
    box = gt.clone()
    rows, cols = torch.where(box[0] > 0)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    box[0, top:bottom, left:right] = 255
    box[box != 255] = 0
    return box


def test_box_map_from_gt_equals_the_released_code_on_random_gts():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        h, w = torch.randint(1, 30, (2,), generator=g).tolist()
        gt = torch.zeros(1, h, w, dtype=torch.uint8)
        y0, x0 = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
        y1, x1 = int(torch.randint(y0, h, (1,), generator=g)), int(torch.randint(x0, w, (1,), generator=g))
        patch = torch.randint(0, 256, (y1 + 1 - y0, x1 + 1 - x0), generator=g, dtype=torch.uint8)
        if torch.rand(1, generator=g) < 0.5:
            patch = torch.where(patch > 100, 255, patch).to(torch.uint8)
        gt[0, y0 : y1 + 1, x0 : x1 + 1] = patch
        if not (gt > 0).any():
            continue
        assert torch.equal(box_map_from_gt(gt), _authors_box(gt))
