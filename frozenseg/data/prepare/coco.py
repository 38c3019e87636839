"""COCO (``coco/``): semantic label maps from the panoptic annotations and contiguous COCO-Stuff
label maps, the conversions of ``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py``
and ``datasets/prepare_coco_stuff_sem_seg.py``."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
from panopticapi.utils import rgb2id
from PIL import Image

from ..released import released_metadata
from .common import InputError, require, run_script

__all__ = [
    "convert_panoptic_to_sem_seg",
    "convert_stuff_sem_seg",
    "panoptic_to_sem_seg_main",
    "stuff_sem_seg_main",
]

logger = logging.getLogger(__name__)


def convert_panoptic_to_sem_seg(root: str, splits=("train", "val")) -> dict[str, int]:
    """COCO panoptic -> semantic label maps (133 classes).

    Input: ``coco/annotations/panoptic_{train,val}2017.json`` and ``coco/panoptic_{train,val}2017/``.
    Output: ``coco/panoptic_semseg_{train,val}2017/*.png``: per pixel the contiguous class id
    (0..132, the release's order, things first), 255 for void and crowd pixels. Returns the number
    of label maps written per output folder.
    """
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


def convert_stuff_sem_seg(root: str) -> dict[str, int]:
    """COCO-Stuff-164k label maps -> contiguous 171-class maps.

    Input: ``coco/stuffthingmaps_trainval2017/{train,val}2017/*.png`` (COCO-Stuff pixel value =
    category id - 1, 255 = unlabelled). Output: ``coco/stuffthingmaps_detectron2/{train,val}2017/*.png``
    with the 171 classes in the release's order (``openvocab_coco_2017_train_stuff_sem_seg``) and
    255. Returns the number of label maps written per output folder.
    """
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


def panoptic_to_sem_seg_main(argv=None) -> None:
    """``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py [--root R]``:
    :func:`convert_panoptic_to_sem_seg`."""
    run_script(convert_panoptic_to_sem_seg, argv)


def stuff_sem_seg_main(argv=None) -> None:
    """``datasets/prepare_coco_stuff_sem_seg.py [--root R]``: :func:`convert_stuff_sem_seg`."""
    run_script(convert_stuff_sem_seg, argv)
