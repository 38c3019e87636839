"""Helpers shared by the ``prepare_*.py`` scripts (argument parsing, checks, reporting)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("prepare")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # make `frozenseg` importable when run from a checkout
    sys.path.insert(0, _REPO)


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"),
                    help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    return ap


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


class InputError(RuntimeError):
    """The raw dataset is missing or malformed."""


def require(path: str, what: str) -> str:
    """Return ``path`` or raise naming what is missing."""
    if not os.path.exists(path):
        raise InputError(f"Expected {what} at {path}, which does not exist.")
    return path


def run(main) -> None:
    """Run ``main()``; input errors end with a one-line message and exit status 1."""
    setup_logging()
    try:
        main()
    except InputError as e:
        logger.error("%s", e)
        sys.exit(1)
