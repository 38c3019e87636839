#!/usr/bin/env python
"""Pascal Context -> ``pascal_ctx_d2`` (59- and 459-class label maps).

Input: ``VOCdevkit/VOC2010/JPEGImages``, the Pascal Context full annotations
``VOCdevkit/VOC2010/trainval/*.mat`` (``LabelMap``: 0 = unlabelled, 1..459), their class list
``VOCdevkit/VOC2010/labels.txt`` ("id: name") and the split lists
``VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt``.
Output: ``pascal_ctx_d2/images/{training,validation}/*.jpg``,
``annotations_ctx459/...`` (uint16 TIFF, LabelMap - 1, unlabelled = 65535) and
``annotations_ctx59/...`` (PNG, the 59 benchmark classes, everything else 255).

Class order: the 459 classes keep the order of ``labels.txt``, which is the order of the
release's 459-class list; the release renamed a few classes, so a ``labels.txt`` name that is
not among the synonyms of the release's class at the same position is only logged. The 59
benchmark classes are found in ``labels.txt`` by their benchmark names
(``frozenseg.data.released.PASCAL_CONTEXT_59_LABEL_NAMES``, spaces ignored) and numbered in the release's 59-class order.
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
from PIL import Image

from _prepare_common import SPLIT_DIRS, InputError, make_split_dirs, read_ids, require, run_script

logger = logging.getLogger("prepare")

def _key(name: str) -> str:
    return name.replace(" ", "").lower()


def _log_renamed(labels: dict[int, str]) -> None:
    """Log the ``labels.txt`` names that are not synonyms of the release's class at the same
    position (the release's renamings, or a labels.txt of another order)."""
    from frozenseg.data.released import released_metadata
    from frozenseg.data.vocabulary import split_synonyms

    shipped = released_metadata("openvocab_pascal_ctx459_sem_seg_val")["stuff_classes"]
    differ = [f"{i}: {labels[i]!r} -> {shipped[i - 1]!r}" for i in sorted(labels)
              if _key(labels[i]) not in {_key(s) for s in split_synonyms(shipped[i - 1])}]
    if differ:
        logger.info("%d labels.txt names differ from the release's class at the same position: %s",
                    len(differ), "; ".join(differ[:10]) + (" ..." if len(differ) > 10 else ""))


def convert(root: str) -> dict[str, int]:
    from scipy.io import loadmat

    voc = require(os.path.join(root, "VOCdevkit", "VOC2010"), "the Pascal VOC 2010 release")
    labels = {}
    for line in open(require(os.path.join(voc, "labels.txt"), "the Pascal Context labels.txt")):
        if line.strip():
            i, _, name = line.partition(":")
            labels[int(i)] = name.strip()
    if sorted(labels) != list(range(1, 460)):
        raise InputError(f"{voc}/labels.txt must list ids 1..459, found {len(labels)} entries.")
    _log_renamed(labels)
    by_name = {_key(n): i for i, n in labels.items()}
    lut59 = np.full(460, 255, np.uint8)
    from frozenseg.data.released import PASCAL_CONTEXT_59_LABEL_NAMES

    for k, n in enumerate(PASCAL_CONTEXT_59_LABEL_NAMES):
        if _key(n) not in by_name:
            raise InputError(f"Class {n!r} of Pascal Context 59 is not in {voc}/labels.txt.")
        lut59[by_name[_key(n)]] = k
    out = os.path.join(root, "pascal_ctx_d2")
    written = {}
    for split, d2 in SPLIT_DIRS:
        ids = read_ids(os.path.join(voc, "ImageSets", "SegmentationContext", f"{split}.txt"),
                       f"the Pascal Context {split} list")
        dirs = make_split_dirs(out, ("images", "annotations_ctx59", "annotations_ctx459"), d2)
        for i in ids:
            lab = loadmat(require(os.path.join(voc, "trainval", i + ".mat"), "a Pascal Context .mat"))["LabelMap"]
            lab = lab.astype(np.int64)
            if lab.max() > 459 or lab.min() < 0:
                raise InputError(f"{i}.mat: LabelMap values outside 0..459.")
            shutil.copyfile(require(os.path.join(voc, "JPEGImages", i + ".jpg"), "a VOC 2010 image"),
                            os.path.join(dirs["images"], i + ".jpg"))
            Image.fromarray(lut59[lab]).save(os.path.join(dirs["annotations_ctx59"], i + ".png"))
            l459 = np.where(lab == 0, 65535, lab - 1).astype(np.uint16)
            Image.fromarray(l459).save(os.path.join(dirs["annotations_ctx459"], i + ".tif"))
        written[d2] = len(ids)
        logger.info("Wrote %d images with 59/459-class label maps to %s (%s)", len(ids), out, d2)
    return written


if __name__ == "__main__":
    run_script(convert, __doc__)
