"""What the dataset converters share: the command line (``--root``, logging, input errors that end
in one sentence and exit status 1), input checks, and writing COCO-style json."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable

import numpy as np

from ...utils.file_io import atomic_write
from ...utils.errors import UserInputError

__all__ = [
    "SPLIT_DIRS",
    "InputError",
    "parser",
    "parse_root",
    "require",
    "read_ids",
    "make_split_dirs",
    "write_json",
    "segment_info",
    "write_panoptic_json",
    "run",
    "run_script",
]

logger = logging.getLogger(__name__)

#: (split, Detectron2-layout folder) of the train and val splits
SPLIT_DIRS = (("train", "training"), ("val", "validation"))


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with ``--root``, described by the first line of the docstring ``doc``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"),
                    help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    return ap


def parse_root(doc: str, argv=None) -> str:
    """``--root`` from ``argv``, for a command whose only option it is; ``doc`` is the docstring
    whose first line describes it in ``--help``."""
    return parser(doc).parse_args(argv).root


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


class InputError(UserInputError, RuntimeError):
    """The raw dataset is missing or malformed."""


def require(path: str, what: str) -> str:
    """Return ``path`` or raise naming what is missing."""
    if not os.path.exists(path):
        raise InputError(f"Expected {what} at {path}, which does not exist.")
    return path


def read_ids(path: str, what: str) -> list[str]:
    """The whitespace-separated image ids listed in the file ``path`` (``what`` names it)."""
    with open(require(path, what)) as f:
        return f.read().split()


def make_split_dirs(out: str, names, split_dir: str) -> dict[str, str]:
    """``{name: out/name/split_dir}`` for each of ``names``, created."""
    dirs = {k: os.path.join(out, k, split_dir) for k in names}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    return dirs


def write_json(path: str, data) -> None:
    """Write ``data`` as JSON to ``path`` atomically (an interrupted run leaves no torn file)."""
    with atomic_write(path, "w") as fh:
        json.dump(data, fh)


def segment_info(sid: int, cat: int, mask: np.ndarray, iscrowd: int = 0) -> dict:
    """A COCO panoptic ``segments_info`` entry of the boolean ``mask`` ``(H, W)`` (bbox in
    pixels, ``[x, y, w, h]``)."""
    ys, xs = np.nonzero(mask)
    return {"id": int(sid), "category_id": int(cat), "iscrowd": int(iscrowd), "area": int(mask.sum()),
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]}


def write_panoptic_json(path: str, images: list[dict], annotations: list[dict], categories: list[dict],
                        png_dir: str) -> int:
    """Write a COCO panoptic json (its PNGs are in ``png_dir``), log it and return the number
    of images."""
    write_json(path, {"images": images, "annotations": annotations, "categories": categories})
    logger.info("Wrote %d panoptic annotations to %s and %s", len(images), path, png_dir)
    return len(images)


def run(command: Callable[[list[str] | None], object], argv=None) -> None:
    """Run ``command(argv)`` as a command line: log to standard error, and end an input error
    with its one-line message and exit status 1."""
    setup_logging()
    try:
        command(argv)
    except InputError as e:
        logger.error("%s", e)
        sys.exit(1)


def run_script(convert: Callable[[str], object], argv=None) -> None:
    """The command line of a converter whose only option is ``--root``: ``convert(root)`` under
    :func:`run`; the first line of ``convert``'s docstring describes it in ``--help``."""
    run(lambda args: convert(parse_root(convert.__doc__, args)), argv)
