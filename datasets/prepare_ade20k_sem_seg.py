#!/usr/bin/env python
"""ADE20K-150 semantic labels -> ``annotations_detectron2`` (reduced labels).

Input: ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (0 = other, 1..150).
Output: ``ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png`` with labels
0..149 and 255 for "other" (label - 1, wrapping 0 to 255).
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from _prepare_common import InputError, require, run_script

logger = logging.getLogger("prepare")


def convert(root: str) -> dict[str, int]:
    base = require(os.path.join(root, "ADEChallengeData2016"), "the ADE20K scene-parsing release")
    written = {}
    for split in ("training", "validation"):
        src = require(os.path.join(base, "annotations", split), f"ADE20K {split} annotations")
        dst = os.path.join(base, "annotations_detectron2", split)
        os.makedirs(dst, exist_ok=True)
        n = 0
        for f in sorted(os.listdir(src)):
            if not f.endswith(".png"):
                continue
            lab = np.array(Image.open(os.path.join(src, f)))
            if lab.ndim != 2 or lab.max() > 150:
                raise InputError(f"{os.path.join(src, f)} is not an ADE20K-150 label map (0..150).")
            Image.fromarray((lab.astype(np.int32) - 1).astype(np.uint8)).save(os.path.join(dst, f))
            n += 1
        if n == 0:
            raise InputError(f"No label PNGs in {src}.")
        written[dst] = n
        logger.info("Wrote %d label maps to %s", n, dst)
    return written


if __name__ == "__main__":
    run_script(convert, __doc__)
