#!/usr/bin/env python
"""ADE20K instance annotations as COCO instance json (100 thing classes).

Input: ``ADEChallengeData2016/images`` and ``annotations_instance`` (R = instance class 1..100,
G = instance index); classes map to ADE-150 ids as in ``prepare_ade20k_pan_seg.py``.
Output: ``ADEChallengeData2016/ade20k_instance_{train,val}.json`` (RLE masks; category ids are the
0-based ADE-150 ids of the 100 thing classes).
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from _prepare_common import SPLIT_DIRS, InputError, require, run_script, write_json
from prepare_ade20k_pan_seg import categories, image_files, instance_mapping, instance_masks

logger = logging.getLogger("prepare")


def convert(root: str) -> dict[str, int]:
    base = require(os.path.join(root, "ADEChallengeData2016"), "the ADE20K scene-parsing release")
    inst_to_150 = instance_mapping(base)
    cats = [c for c in categories() if c["isthing"]]
    written = {}
    for split, ade in SPLIT_DIRS:
        img_dir = require(os.path.join(base, "images", ade), f"ADE20K {ade} images")
        ins_dir = require(os.path.join(base, "annotations_instance", ade),
                          f"ADE20K {ade} instance annotations (annotations_instance)")
        images, anns = [], []
        for img_id, f in enumerate(image_files(img_dir), 1):
            stem = f[:-4]
            ins = np.array(Image.open(require(os.path.join(ins_dir, stem + ".png"), "an instance map")))
            if ins.ndim != 3:
                raise InputError(f"{os.path.join(ins_dir, stem + '.png')} is not an RGB instance map.")
            h, w = ins.shape[:2]
            images.append({"id": img_id, "file_name": f, "height": h, "width": w})
            for cat, mask in instance_masks(ins, inst_to_150, stem):
                m = mask.astype(np.uint8)
                rle = mask_util.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                             "iscrowd": 0, "area": int(m.sum()),
                             "bbox": [float(v) for v in mask_util.toBbox(rle)], "segmentation": rle})
        jf = os.path.join(base, f"ade20k_instance_{split}.json")
        write_json(jf, {"images": images, "annotations": anns, "categories": cats})
        written[jf] = len(anns)
        logger.info("Wrote %d instances of %d images to %s", len(anns), len(images), jf)
    return written


if __name__ == "__main__":
    run_script(convert, __doc__)
