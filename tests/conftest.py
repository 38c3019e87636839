"""Shared test fixtures: paths to the repository and to the released reference material.

The reference material (released configs and state-dict layouts) lives in ``tests/reference``, a
copy of the project reference (``reference/released_configs``, ``reference/official_state_dict``),
so every test runs from a plain clone."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = REPO_ROOT / "tests" / "reference"
RELEASED_CONFIGS = REFERENCE / "released_configs"
OFFICIAL_STATE_DICTS = REFERENCE / "official_state_dict"

# Tests never download: open_clip / huggingface must stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The project's cache (weights by name, text embeddings) of a test run is its own, never the
# user's ~/.cache/frozenseg; subprocesses inherit it.
TEST_CACHE = tempfile.mkdtemp(prefix="frozenseg_test_cache_")
os.environ["FROZENSEG_CACHE"] = TEST_CACHE
atexit.register(shutil.rmtree, TEST_CACHE, ignore_errors=True)


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
    """A file of the reference material in ``tests/reference`` (fails, never skips, when absent)."""
    assert path.exists(), f"reference material {path} is missing from the repository"
    return path


@contextlib.contextmanager
def restored_loggers(names):
    """Within the block the named loggers may be reconfigured (``setup_logger``, the command
    lines); on exit their handlers (new ones closed), ``propagate`` and level are as before."""
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.propagate, lg.level)
    try:
        yield
    finally:
        for name, (handlers, propagate, level) in saved.items():
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                if h not in handlers:
                    lg.removeHandler(h)
                    h.close()
            for h in handlers:
                if h not in lg.handlers:
                    lg.addHandler(h)
            lg.propagate, lg.level = propagate, level
