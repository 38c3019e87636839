#!/usr/bin/env python
"""ADE20K instance annotations as COCO instance json (100 thing classes).

Input: ``ADEChallengeData2016/images`` and ``annotations_instance`` (R = instance class 1..100,
G = instance index); classes map to ADE-150 ids as in ``prepare_ade20k_pan_seg.py``.
Output: ``ADEChallengeData2016/ade20k_instance_{train,val}.json`` (RLE masks; category ids are the
0-based ADE-150 ids of the 100 thing classes).
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from _prepare_common import InputError, parser, require, run
from prepare_ade20k_pan_seg import categories, instance_mapping

logger = logging.getLogger("prepare")


def convert(root: str) -> dict[str, int]:
    base = require(os.path.join(root, "ADEChallengeData2016"), "the ADE20K scene-parsing release")
    inst_to_150 = instance_mapping(base)
    cats = [c for c in categories() if c["isthing"]]
    written = {}
    for split, ade in (("train", "training"), ("val", "validation")):
        img_dir = require(os.path.join(base, "images", ade), f"ADE20K {ade} images")
        ins_dir = require(os.path.join(base, "annotations_instance", ade),
                          f"ADE20K {ade} instance annotations (annotations_instance)")
        images, anns = [], []
        for img_id, f in enumerate(sorted(x for x in os.listdir(img_dir) if x.endswith(".jpg")), 1):
            stem = f[:-4]
            ins = np.array(Image.open(require(os.path.join(ins_dir, stem + ".png"), "an instance map")))
            if ins.ndim != 3:
                raise InputError(f"{os.path.join(ins_dir, stem + '.png')} is not an RGB instance map.")
            h, w = ins.shape[:2]
            images.append({"id": img_id, "file_name": f, "height": h, "width": w})
            cls, idx = ins[..., 0].astype(np.int64), ins[..., 1].astype(np.int64)
            for ic, ii in sorted({(int(a), int(b)) for a, b in zip(cls[cls > 0], idx[cls > 0])}):
                if ic > len(inst_to_150):
                    raise InputError(f"{stem}: instance class {ic} is outside 1..{len(inst_to_150)}.")
                m = ((cls == ic) & (idx == ii)).astype(np.uint8)
                rle = mask_util.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": inst_to_150[ic - 1],
                             "iscrowd": 0, "area": int(m.sum()),
                             "bbox": [float(v) for v in mask_util.toBbox(rle)], "segmentation": rle})
        if not images:
            raise InputError(f"No images in {img_dir}.")
        jf = os.path.join(base, f"ade20k_instance_{split}.json")
        with open(jf, "w") as fh:
            json.dump({"images": images, "annotations": anns, "categories": cats}, fh)
        written[jf] = len(anns)
        logger.info("Wrote %d instances of %d images to %s", len(anns), len(images), jf)
    return written


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    convert(args.root)


if __name__ == "__main__":
    run(main)
