"""ADE20K-150 (``ADEChallengeData2016/``): reduced semantic labels, panoptic annotations and
instance annotations, the conversions of ``datasets/prepare_ade20k_{sem,pan,ins}_seg.py``.

The instance classes (R = instance-benchmark class 1..100, G = instance index per image, in
``annotations_instance``) map to the 150 classes through ``ade20k_instance_catid_mapping.txt``
when present (columns: instance class, ADE-150 class, ...; one header line), otherwise through the
release's ADE20K instance split (instance class k is its k-th class, whose dataset id is the
ADE-150 id).
"""

from __future__ import annotations

import logging
import os

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image
from pycocotools import mask as mask_util

from ..released import released_categories
from .common import SPLIT_DIRS, InputError, require, run_script, segment_info, write_json, write_panoptic_json

__all__ = [
    "instance_mapping",
    "image_files",
    "instance_masks",
    "categories",
    "convert_sem_seg",
    "convert_pan_seg",
    "convert_ins_seg",
    "sem_seg_main",
    "pan_seg_main",
    "ins_seg_main",
]

logger = logging.getLogger(__name__)


def instance_mapping(base: str) -> list[int]:
    """Index k-1 -> ADE-150 id (0-based) of instance class k."""
    path = os.path.join(base, "ade20k_instance_catid_mapping.txt")
    if os.path.exists(path):
        rows = [line.split() for line in open(path).read().splitlines()[1:] if line.strip()]
        mapping = {int(r[0]): int(r[1]) - 1 for r in rows}
        return [mapping[k] for k in sorted(mapping)]
    return [c["id"] for c in released_categories("openvocab_ade20k_instance_val")]


def image_files(img_dir: str) -> list[str]:
    """The ``.jpg`` file names in ``img_dir``, sorted (at least one)."""
    files = sorted(x for x in os.listdir(img_dir) if x.endswith(".jpg"))
    if not files:
        raise InputError(f"No images in {img_dir}.")
    return files


def instance_masks(ins: np.ndarray, inst_to_150: list[int], stem: str):
    """Yield (ADE-150 id, boolean mask) of every instance of an RGB instance map (R = instance
    class 1..N, G = instance index), by (class, index); ``stem`` names the image in errors."""
    cls, idx = ins[..., 0].astype(np.int64), ins[..., 1].astype(np.int64)
    for ic, ii in sorted({(int(a), int(b)) for a, b in zip(cls[cls > 0], idx[cls > 0])}):
        if ic > len(inst_to_150):
            raise InputError(f"{stem}: instance class {ic} is outside 1..{len(inst_to_150)}.")
        yield inst_to_150[ic - 1], (cls == ic) & (idx == ii)


def categories() -> list[dict]:
    """The 150 categories (ids 0..149) with the release's display names and thing flags."""
    return released_categories("openvocab_ade20k_panoptic_val")


def convert_sem_seg(root: str) -> dict[str, int]:
    """ADE20K-150 semantic labels -> ``annotations_detectron2`` (reduced labels).

    Input: ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (0 = other, 1..150).
    Output: ``ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png`` with labels
    0..149 and 255 for "other" (label - 1, wrapping 0 to 255). Returns the number of label maps
    written per output folder.
    """
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


def convert_pan_seg(root: str) -> dict[str, int]:
    """ADE20K-150 panoptic annotations (COCO panoptic format) from the instance annotations.

    Input: ``ADEChallengeData2016/annotations`` (semantic, 0 = other, 1..150) and
    ``annotations_instance`` (see the module docstring for the instance classes).
    Output: ``ade20k_panoptic_{train,val}/*.png`` and ``ade20k_panoptic_{train,val}.json`` with
    categories 0..149 (the reduced label ids, display names of the release) and ``isthing`` for the
    release's 100 thing classes; stuff segments are the semantic regions of the 50 stuff classes;
    thing-class pixels that belong to no instance are void. Also writes ``annotations_detectron2``
    (:func:`convert_sem_seg`) when it is missing. Returns the number of images per json written.
    """
    base = require(os.path.join(root, "ADEChallengeData2016"), "the ADE20K scene-parsing release")
    inst_to_150 = instance_mapping(base)
    cats = categories()
    thing_ids = {c["id"] for c in cats if c["isthing"]}
    if not os.path.isdir(os.path.join(base, "annotations_detectron2")):
        convert_sem_seg(root)
    written = {}
    for split, ade in SPLIT_DIRS:
        img_dir = require(os.path.join(base, "images", ade), f"ADE20K {ade} images")
        sem_dir = require(os.path.join(base, "annotations", ade), f"ADE20K {ade} annotations")
        ins_dir = require(os.path.join(base, "annotations_instance", ade),
                          f"ADE20K {ade} instance annotations (annotations_instance)")
        out_dir = os.path.join(base, f"ade20k_panoptic_{split}")
        os.makedirs(out_dir, exist_ok=True)
        images, anns = [], []
        for f in image_files(img_dir):
            stem = f[:-4]
            sem = np.array(Image.open(require(os.path.join(sem_dir, stem + ".png"), "a label map"))).astype(np.int64) - 1
            ins = np.array(Image.open(require(os.path.join(ins_dir, stem + ".png"), "an instance map")))
            if ins.ndim != 3 or ins.shape[:2] != sem.shape:
                raise InputError(f"{os.path.join(ins_dir, stem + '.png')} is not an RGB map of the image's size.")
            h, w = sem.shape
            pan = np.zeros((h, w), np.uint32)
            infos = []
            next_id = 1
            for c in np.unique(sem):  # stuff from the semantic map
                if c < 0 or c in thing_ids:
                    continue
                m = sem == c
                pan[m] = next_id
                infos.append(segment_info(next_id, int(c), m))
                next_id += 1
            for cat, m in instance_masks(ins, inst_to_150, stem):
                pan[m] = next_id
                infos.append(segment_info(next_id, cat, m))
                next_id += 1
            Image.fromarray(id2rgb(pan)).save(os.path.join(out_dir, stem + ".png"))
            images.append({"id": stem, "file_name": f, "height": h, "width": w})
            anns.append({"image_id": stem, "file_name": stem + ".png", "segments_info": infos})
        jf = os.path.join(base, f"ade20k_panoptic_{split}.json")
        written[jf] = write_panoptic_json(jf, images, anns, cats, out_dir)
    return written


def convert_ins_seg(root: str) -> dict[str, int]:
    """ADE20K instance annotations as COCO instance json (100 thing classes).

    Input: ``ADEChallengeData2016/images`` and ``annotations_instance`` (see the module docstring
    for the instance classes). Output: ``ADEChallengeData2016/ade20k_instance_{train,val}.json``
    (RLE masks; category ids are the 0-based ADE-150 ids of the 100 thing classes). Returns the
    number of instances per json written.
    """
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


def sem_seg_main(argv=None) -> None:
    """``datasets/prepare_ade20k_sem_seg.py [--root R]``: :func:`convert_sem_seg`."""
    run_script(convert_sem_seg, argv)


def pan_seg_main(argv=None) -> None:
    """``datasets/prepare_ade20k_pan_seg.py [--root R]``: :func:`convert_pan_seg`."""
    run_script(convert_pan_seg, argv)


def ins_seg_main(argv=None) -> None:
    """``datasets/prepare_ade20k_ins_seg.py [--root R]``: :func:`convert_ins_seg`."""
    run_script(convert_ins_seg, argv)
