"""Resolving file paths given in configs, and the project's cache folder."""

from __future__ import annotations

import os
from pathlib import Path

#: The directory that contains the ``frozenseg`` package: the repository checkout in an editable
#: install, ``site-packages`` in a wheel install. Files shipped inside the package (for example
#: ``frozenseg/data/vocabularies/lvis_v1_synonyms.txt``) are found relative to it either way.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path:
    """Expand ``~`` and ``$VARS``; a relative path that does not exist from the working directory
    is looked up from :data:`PACKAGE_PARENT`, so a config may name a shipped file as
    ``frozenseg/data/vocabularies/<file>`` from any directory and in any kind of install."""
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    if not p.is_absolute() and not p.exists() and (PACKAGE_PARENT / p).exists():
        return PACKAGE_PARENT / p
    return p


#: Environment variable naming the project's cache folder (released weights, text embeddings).
CACHE_ENV = "FROZENSEG_CACHE"


def cache_root() -> str:
    """The project's cache folder, as the environment says now: ``$FROZENSEG_CACHE``, else
    ``$XDG_CACHE_HOME/frozenseg``, else ``~/.cache/frozenseg``."""
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.path.expandvars(os.path.expanduser(os.environ[CACHE_ENV])))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.abspath(os.path.join(os.path.expanduser(base), "frozenseg"))
