"""Pascal VOC 2012 and Pascal Context (``VOCdevkit/``) -> ``pascal_voc_d2`` and ``pascal_ctx_d2``,
the conversions of ``datasets/prepare_pascal_voc_sem_seg.py`` and
``datasets/prepare_pascal_ctx_sem_seg.py``."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
from PIL import Image

from ..released import PASCAL_CONTEXT_59_LABEL_NAMES, released_metadata
from ..vocabulary import split_synonyms
from .common import SPLIT_DIRS, InputError, make_split_dirs, parser, read_ids, require, run, run_script

__all__ = ["convert_voc_sem_seg", "convert_ctx_sem_seg", "voc_sem_seg_main", "ctx_sem_seg_main"]

logger = logging.getLogger(__name__)


def convert_voc_sem_seg(root: str, labels: str = "SegmentationClass") -> dict[str, int]:
    """Pascal VOC 2012 -> ``pascal_voc_d2`` (images and 20 / 21-class label maps).

    Input: ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}``
    (SegmentationClassAug can be used by passing ``labels="SegmentationClassAug"``, on the command
    line ``--labels SegmentationClassAug``).
    Output: ``pascal_voc_d2/images/{training,validation}/*.jpg``,
    ``annotations_pascal21/...`` (0 = background, 1..20, 255 = border/ignore) and
    ``annotations_pascal20/...`` (0..19 = VOC label - 1, background and borders 255).
    Returns the number of images written per split folder.
    """
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


def _key(name: str) -> str:
    return name.replace(" ", "").lower()


def _log_renamed(labels: dict[int, str]) -> None:
    """Log the ``labels.txt`` names that are not synonyms of the release's class at the same
    position (the release's renamings, or a labels.txt of another order)."""
    shipped = released_metadata("openvocab_pascal_ctx459_sem_seg_val")["stuff_classes"]
    differ = [f"{i}: {labels[i]!r} -> {shipped[i - 1]!r}" for i in sorted(labels)
              if _key(labels[i]) not in {_key(s) for s in split_synonyms(shipped[i - 1])}]
    if differ:
        logger.info("%d labels.txt names differ from the release's class at the same position: %s",
                    len(differ), "; ".join(differ[:10]) + (" ..." if len(differ) > 10 else ""))


def convert_ctx_sem_seg(root: str) -> dict[str, int]:
    """Pascal Context -> ``pascal_ctx_d2`` (59- and 459-class label maps).

    Input: ``VOCdevkit/VOC2010/JPEGImages``, the Pascal Context full annotations
    ``VOCdevkit/VOC2010/trainval/*.mat`` (``LabelMap``: 0 = unlabelled, 1..459), their class list
    ``VOCdevkit/VOC2010/labels.txt`` ("id: name") and the split lists
    ``VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt``.
    Output: ``pascal_ctx_d2/images/{training,validation}/*.jpg``,
    ``annotations_ctx459/...`` (uint16 TIFF, LabelMap - 1, unlabelled = 65535) and
    ``annotations_ctx59/...`` (PNG, the 59 benchmark classes, everything else 255).
    Returns the number of images written per split folder.

    Class order: the 459 classes keep the order of ``labels.txt``, which is the order of the
    release's 459-class list; the release renamed a few classes, so a ``labels.txt`` name that is
    not among the synonyms of the release's class at the same position is only logged. The 59
    benchmark classes are found in ``labels.txt`` by their benchmark names
    (``frozenseg.data.released.PASCAL_CONTEXT_59_LABEL_NAMES``, spaces ignored) and numbered in
    the release's 59-class order.
    """
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


def _voc_command(argv) -> None:
    ap = parser(convert_voc_sem_seg.__doc__)
    ap.add_argument("--labels", default="SegmentationClass")
    args = ap.parse_args(argv)
    convert_voc_sem_seg(args.root, args.labels)


def voc_sem_seg_main(argv=None) -> None:
    """``datasets/prepare_pascal_voc_sem_seg.py [--root R] [--labels FOLDER]``:
    :func:`convert_voc_sem_seg`."""
    run(_voc_command, argv)


def ctx_sem_seg_main(argv=None) -> None:
    """``datasets/prepare_pascal_ctx_sem_seg.py [--root R]``: :func:`convert_ctx_sem_seg`."""
    run_script(convert_ctx_sem_seg, argv)
