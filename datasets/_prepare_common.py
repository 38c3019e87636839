"""Helpers shared by the ``prepare_*.py`` scripts (argument parsing, checks, reading and writing,
reporting)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np

logger = logging.getLogger("prepare")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # make `frozenseg` importable when run from a checkout
    sys.path.insert(0, _REPO)


#: (split, Detectron2-layout folder) of the train and val splits
SPLIT_DIRS = (("train", "training"), ("val", "validation"))


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"),
                    help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    return ap


def parse_root(doc: str, argv=None) -> str:
    """``--root`` from ``argv``, for a script whose only option it is; ``doc`` is the script's
    docstring, whose first line describes it in ``--help``."""
    return parser(doc.splitlines()[0]).parse_args(argv).root


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
    with open(path, "w") as fh:
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


def run_script(convert, doc: str, argv=None) -> None:
    """The command line of a script whose only option is ``--root``: ``convert(root)`` under
    :func:`run` (``doc`` is the script's docstring)."""
    run(lambda: convert(parse_root(doc, argv)))


def run(main) -> None:
    """Run ``main()``; input errors end with a one-line message and exit status 1."""
    setup_logging()
    try:
        main()
    except InputError as e:
        logger.error("%s", e)
        sys.exit(1)
