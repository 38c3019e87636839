"""Shared test fixtures: paths to the repository and to the released reference material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FROZENSEG_SHARED_DIR", REPO_ROOT.parent / "shared"))
RELEASED_CONFIGS = SHARED / "reference" / "released_configs"
OFFICIAL_STATE_DICTS = SHARED / "reference" / "official_state_dict"

# Tests never download: open_clip / huggingface must stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for the tests of a module (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): tiny models run several times faster on a
    busy 2-core CI box (no OpenMP spinning); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def require_shared(path: Path) -> Path:
    """Skip the calling test when the shared reference material is not next to the repository."""
    if not path.exists():
        pytest.skip(f"reference material not found at {path}")
    return path
