#!/usr/bin/env python
"""COCO panoptic -> semantic label maps (133 classes).

Input: ``coco/annotations/panoptic_{train,val}2017.json`` and ``coco/panoptic_{train,val}2017/``.
Output: ``coco/panoptic_semseg_{train,val}2017/*.png``: per pixel the contiguous class id
(0..132, the release's order, things first), 255 for
void and crowd pixels.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
from panopticapi.utils import rgb2id
from PIL import Image

from _prepare_common import InputError, require, run_script

logger = logging.getLogger("prepare")


def convert(root: str, splits=("train", "val")) -> dict[str, int]:
    from frozenseg.data.released import released_metadata

    id_map = released_metadata("openvocab_coco_2017_val_panoptic_with_sem_seg")["stuff_dataset_id_to_contiguous_id"]
    written = {}
    for split in splits:
        jf = require(os.path.join(root, "coco", "annotations", f"panoptic_{split}2017.json"),
                     f"the COCO panoptic {split} json")
        pan_dir = require(os.path.join(root, "coco", f"panoptic_{split}2017"), f"the COCO panoptic {split} PNGs")
        out = os.path.join(root, "coco", f"panoptic_semseg_{split}2017")
        os.makedirs(out, exist_ok=True)
        with open(jf) as f:
            data = json.load(f)
        for ann in data["annotations"]:
            ids = rgb2id(np.array(Image.open(require(os.path.join(pan_dir, ann["file_name"]), "a panoptic PNG"))
                                  .convert("RGB")))
            sem = np.full(ids.shape, 255, np.uint8)
            for s in ann["segments_info"]:
                if s["category_id"] not in id_map:
                    raise InputError(f"{jf}: unknown category id {s['category_id']}.")
                if not s.get("iscrowd", 0):
                    sem[ids == s["id"]] = id_map[s["category_id"]]
            Image.fromarray(sem).save(os.path.join(out, ann["file_name"]))
        written[out] = len(data["annotations"])
        logger.info("Wrote %d semantic maps to %s", len(data["annotations"]), out)
    return written


if __name__ == "__main__":
    run_script(convert, __doc__)
