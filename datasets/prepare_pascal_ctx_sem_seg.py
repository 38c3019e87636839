#!/usr/bin/env python
"""Pascal Context -> ``pascal_ctx_d2`` (59- and 459-class label maps).

Input: ``VOCdevkit/VOC2010/JPEGImages``, the Pascal Context full annotations
``VOCdevkit/VOC2010/trainval/*.mat`` (``LabelMap``: 0 = unlabelled, 1..459), their class list
``VOCdevkit/VOC2010/labels.txt`` ("id: name") and the split lists
``VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt``.
Output: ``pascal_ctx_d2/images/{training,validation}/*.jpg``,
``annotations_ctx459/...`` (uint16 TIFF, LabelMap - 1, unlabelled = 65535),
``annotations_ctx59/...`` (PNG, the 59 benchmark classes in the order of
``frozenseg/data/vocabularies/pascal_context_59.txt``, everything else 255) and
``pascal_ctx_d2/pc459_classes.txt`` (the 459 names from labels.txt, vocabulary format; the
classes shared with the 59-class benchmark also get that vocabulary's editorial synonyms).
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
from PIL import Image

from _prepare_common import SPLIT_DIRS, InputError, make_split_dirs, read_ids, require, run_script

logger = logging.getLogger("prepare")


def _synonyms59() -> list[list[str]]:
    """Names with synonyms of the 59 benchmark classes (``pascal_context_59.txt``)."""
    from frozenseg.data.vocabulary import builtin_vocabulary_path, read_vocabulary_entries

    return [n for _, n in read_vocabulary_entries(builtin_vocabulary_path("pascal_context_59.txt"))]


def names459(labels: dict[int, str], synonyms59: list[list[str]]) -> list[list[str]]:
    """Vocabulary entries of the 459 classes: each ``labels.txt`` name (commas as spaces), followed
    by the editorial synonyms of the 59-class vocabulary for the classes both lists share
    (matched with spaces ignored, so ``pottedplant`` gets ``potted plant``)."""
    by_key = {n[0].replace(" ", ""): n for n in synonyms59}
    out = []
    for i in range(1, 460):
        name = " ".join(labels[i].replace(",", " ").split())
        extra = by_key.get(name.replace(" ", ""), [])
        out.append([name] + [n for n in extra if n != name])
    return out


def convert(root: str) -> dict[str, int]:
    from scipy.io import loadmat

    from frozenseg.data.vocabulary import write_vocabulary_file

    voc = require(os.path.join(root, "VOCdevkit", "VOC2010"), "the Pascal VOC 2010 release")
    labels = {}
    for line in open(require(os.path.join(voc, "labels.txt"), "the Pascal Context labels.txt")):
        if line.strip():
            i, _, name = line.partition(":")
            labels[int(i)] = name.strip()
    if sorted(labels) != list(range(1, 460)):
        raise InputError(f"{voc}/labels.txt must list ids 1..459, found {len(labels)} entries.")
    by_name = {n.replace(" ", ""): i for i, n in labels.items()}
    lut59 = np.full(460, 255, np.uint8)
    synonyms59 = _synonyms59()
    for k, (n, *_) in enumerate(synonyms59):
        key = n.replace(" ", "")
        if key not in by_name:
            raise InputError(f"Class {n!r} of Pascal Context 59 is not in labels.txt.")
        lut59[by_name[key]] = k
    out = os.path.join(root, "pascal_ctx_d2")
    write_vocabulary_file(os.path.join(out, "pc459_classes.txt"), names459(labels, synonyms59), ids=range(459))
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
