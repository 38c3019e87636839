"""Shared test fixtures: paths to the repository and to the released reference material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FROZENSEG_SHARED_DIR", REPO_ROOT.parent / "shared"))
RELEASED_CONFIGS = SHARED / "reference" / "released_configs"
OFFICIAL_STATE_DICTS = SHARED / "reference" / "official_state_dict"

# Tests never download: open_clip / huggingface must stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def require_shared(path: Path) -> Path:
    """Skip the calling test when the shared reference material is not next to the repository."""
    if not path.exists():
        pytest.skip(f"reference material not found at {path}")
    return path
