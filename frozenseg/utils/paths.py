"""Resolving file paths given in configs."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository checkout that contains the ``frozenseg`` package (where ``configs/`` lives).
REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path:
    """Expand ``~`` and ``$VARS``; a relative path that does not exist from the working directory
    is looked up from the repository root, so configs such as ``configs/clip_models/*.json``
    work from any directory."""
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p
