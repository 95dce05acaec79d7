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
