#!/usr/bin/env python
"""Pascal VOC 2012 -> ``pascal_voc_d2`` (images and 20 / 21-class label maps).

Input: ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}``
(SegmentationClassAug can be used by passing ``--labels SegmentationClassAug``).
Output: ``pascal_voc_d2/images/{training,validation}/*.jpg``,
``annotations_pascal21/...`` (0 = background, 1..20, 255 = border/ignore) and
``annotations_pascal20/...`` (0..19 = VOC label - 1, background and borders 255).
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
from PIL import Image

from _prepare_common import SPLIT_DIRS, InputError, make_split_dirs, parser, read_ids, require, run

logger = logging.getLogger("prepare")


def convert(root: str, labels: str = "SegmentationClass") -> dict[str, int]:
    voc = require(os.path.join(root, "VOCdevkit", "VOC2012"), "the Pascal VOC 2012 release")
    out = os.path.join(root, "pascal_voc_d2")
    written = {}
    for split, d2 in SPLIT_DIRS:
        ids = read_ids(os.path.join(voc, "ImageSets", "Segmentation", f"{split}.txt"), f"the VOC {split} list")
        dirs = make_split_dirs(out, ("images", "annotations_pascal21", "annotations_pascal20"), d2)
        for i in ids:
            lab = np.array(Image.open(require(os.path.join(voc, labels, i + ".png"), "a VOC label map")))
            if lab.ndim != 2 or not np.all((lab <= 20) | (lab == 255)):
                raise InputError(f"{i}.png: expected a palette label map with values 0..20 and 255.")
            shutil.copyfile(require(os.path.join(voc, "JPEGImages", i + ".jpg"), "a VOC image"),
                            os.path.join(dirs["images"], i + ".jpg"))
            Image.fromarray(lab.astype(np.uint8)).save(os.path.join(dirs["annotations_pascal21"], i + ".png"))
            l20 = lab.astype(np.int32) - 1
            l20[(lab == 0) | (lab == 255)] = 255
            Image.fromarray(l20.astype(np.uint8)).save(os.path.join(dirs["annotations_pascal20"], i + ".png"))
        written[d2] = len(ids)
        logger.info("Wrote %d images and 20/21-class label maps to %s (%s)", len(ids), out, d2)
    return written


def main(argv=None) -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--labels", default="SegmentationClass")
    args = ap.parse_args(argv)
    convert(args.root, args.labels)


if __name__ == "__main__":
    run(main)
