#!/usr/bin/env python
"""COCO-Stuff-164k label maps -> contiguous 171-class maps.

Input: ``coco/stuffthingmaps_trainval2017/{train,val}2017/*.png`` (COCO-Stuff pixel value =
category id - 1, 255 = unlabelled). Output: ``coco/stuffthingmaps_detectron2/{train,val}2017/*.png``
with the 171 classes in the release's order (``openvocab_coco_2017_train_stuff_sem_seg``) and 255.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from _prepare_common import InputError, require, run_script

logger = logging.getLogger("prepare")


def convert(root: str) -> dict[str, int]:
    from frozenseg.data.released import released_metadata

    lut = np.full(256, 255, np.uint8)
    for i, k in released_metadata("openvocab_coco_2017_train_stuff_sem_seg")["stuff_dataset_id_to_contiguous_id"].items():
        lut[i - 1] = k
    written = {}
    for split in ("train", "val"):
        src = require(os.path.join(root, "coco", "stuffthingmaps_trainval2017", f"{split}2017"),
                      f"the COCO-Stuff {split} label maps")
        dst = os.path.join(root, "coco", "stuffthingmaps_detectron2", f"{split}2017")
        os.makedirs(dst, exist_ok=True)
        files = sorted(f for f in os.listdir(src) if f.endswith(".png"))
        if not files:
            raise InputError(f"No label PNGs in {src}.")
        for f in files:
            lab = np.array(Image.open(os.path.join(src, f)))
            if lab.ndim != 2:
                raise InputError(f"{os.path.join(src, f)} is not a single-channel label map.")
            Image.fromarray(lut[lab]).save(os.path.join(dst, f))
        written[dst] = len(files)
        logger.info("Wrote %d label maps to %s", len(files), dst)
    return written


if __name__ == "__main__":
    run_script(convert, __doc__)
