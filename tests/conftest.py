from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def isnet_manifest() -> dict:
    return json.loads((FIXTURES / "isnet" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def tiny_sam_path(tmp_path_factory) -> Path:
    """The fixtures' tiny SAM (official key names) saved as a plain state dict, like sam_vit_*.pth."""
    import torch

    from dissam.testing import sam_fixture_state_dict

    rows = json.loads((FIXTURES / "sam" / "manifest.json").read_text())
    path = tmp_path_factory.mktemp("tiny_sam") / "sam_tiny.pth"
    torch.save(sam_fixture_state_dict(rows), path)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one intra-op thread is faster, and far faster on a busy 2-core machine (use
    with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_refiner():
    """A deterministic compact 5-channel refiner (eval mode)."""
    import torch

    from dissam.models.isnet import build_refiner

    torch.manual_seed(1234)
    return build_refiner("dis-sam-compact").eval()


@pytest.fixture(scope="session")
def image(fixtures_dir):
    """The SAM fixture's image: ``H x W x 3`` uint8 RGB (a test module may define its own ``image``)."""
    import numpy as np
    from PIL import Image

    return np.array(Image.open(fixtures_dir / "sam" / "image.png").convert("RGB"))


@pytest.fixture(scope="session")
def boxes(fixtures_dir):
    """The SAM fixture's boxes: ``N x 4`` float XYXY pixels of :func:`image`."""
    import numpy as np

    return np.array(json.loads((fixtures_dir / "sam" / "meta.json").read_text())["boxes_xyxy"], dtype=float)


@pytest.fixture(scope="session")
def ray_session():
    """A local 2-CPU Ray shared by every Ray engine test (starting Ray costs seconds); skipped without
    the ``ray`` extra."""
    pytest.importorskip("ray.data")
    from ray_helpers import start_ray

    ray = start_ray()
    yield ray
    ray.shutdown()
