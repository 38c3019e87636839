"""BDD100K panoptic bitmasks -> COCO panoptic format (``bdd10k_40_panoptic_{train,val}``), the
conversion of ``datasets/prepare_bdd_panoptic.py``.

Input, as downloaded: ``bdd100k/images/10k/{train,val}/*.jpg`` and
``bdd100k/labels/pan_seg/bitmasks/{train,val}/*.png``, BDD100K's RGBA bitmask format: R = category
id (0 = unlabelled, 1..40: the release's ``bdd10k_40_panoptic_val`` classes), G = attribute
bits (bit 0 ignore, bit 1 crowd, bit 2 occluded, bit 3 truncated), B * 256 + A = instance id.
Output: ``bdd100k/labels/pan_seg/panoptic_{train,val}/*.png`` (segment id = R + 256 G + 65536 B)
and ``panoptic_{train,val}.json`` with the 40 categories. Every thing instance (category, instance
id) is a segment, with ``iscrowd`` from its crowd bit; all pixels of a stuff category form one
segment; unlabelled pixels and pixels with the ignore bit are void (0).
"""

from __future__ import annotations

import logging
import os

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image

from ..released import released_categories
from .common import InputError, require, run_script, segment_info, write_panoptic_json

__all__ = ["categories", "bitmask_segments", "convert", "main"]

logger = logging.getLogger(__name__)

#: Attribute bits of the G channel
IGNORE_BIT, CROWD_BIT = 1, 2


def categories() -> list[dict]:
    """The 40 categories (ids 1..40) with the release's names and thing flags (31..40)."""
    return released_categories("bdd10k_40_panoptic_val")


def bitmask_segments(bitmask: np.ndarray, thing_ids: set[int], num_categories: int, where: str):
    """Panoptic ids ``(H, W)`` uint32 and ``segments_info`` of a BDD100K RGBA bitmask
    ``(H, W, 4)`` uint8; ``where`` names the file in errors."""
    if bitmask.ndim != 3 or bitmask.shape[2] != 4:
        raise InputError(f"{where} is not an RGBA bitmask (shape {bitmask.shape}).")
    cat = bitmask[..., 0].astype(np.int64)
    attr = bitmask[..., 1]
    inst = bitmask[..., 2].astype(np.int64) * 256 + bitmask[..., 3]
    if cat.max() > num_categories:
        raise InputError(f"{where}: category {cat.max()} is outside 0..{num_categories}.")
    valid = (cat > 0) & ((attr & IGNORE_BIT) == 0)
    is_thing = np.isin(cat, list(thing_ids))
    key = np.where(is_thing, cat * 65536 + inst, cat * 65536)  # stuff: one segment per category
    pan = np.zeros(cat.shape, np.uint32)
    infos = []
    for sid, k in enumerate(np.unique(key[valid]), start=1):
        m = valid & (key == k)
        c = int(k // 65536)
        crowd = int(c in thing_ids and bool(np.any(attr[m] & CROWD_BIT)))
        pan[m] = sid
        infos.append(segment_info(sid, c, m, iscrowd=crowd))
    return pan, infos


def convert(root: str) -> dict[str, int]:
    """BDD100K panoptic bitmasks -> COCO panoptic format (``bdd10k_40_panoptic_{train,val}``).

    Reads ``root/bdd100k`` and writes the panoptic PNGs and jsons (the module docstring); returns
    the number of images per json written.
    """
    base = require(os.path.join(root, "bdd100k"), "the BDD100K release")
    cats = categories()
    thing_ids = {c["id"] for c in cats if c["isthing"]}
    written = {}
    for split in ("train", "val"):
        src = require(os.path.join(base, "labels", "pan_seg", "bitmasks", split),
                      f"the BDD100K {split} panoptic bitmasks")
        img_dir = require(os.path.join(base, "images", "10k", split), f"the BDD100K 10k {split} images")
        out_dir = os.path.join(base, "labels", "pan_seg", f"panoptic_{split}")
        os.makedirs(out_dir, exist_ok=True)
        images, anns = [], []
        for f in sorted(x for x in os.listdir(src) if x.endswith(".png")):
            stem = f[:-4]
            require(os.path.join(img_dir, stem + ".jpg"), "the image of a bitmask")
            path = os.path.join(src, f)
            pan, infos = bitmask_segments(np.array(Image.open(path)), thing_ids, len(cats), path)
            Image.fromarray(id2rgb(pan)).save(os.path.join(out_dir, f))
            images.append({"id": stem, "file_name": stem + ".jpg", "height": pan.shape[0], "width": pan.shape[1]})
            anns.append({"image_id": stem, "file_name": f, "segments_info": infos})
        if not images:
            raise InputError(f"No bitmask PNGs in {src}.")
        jf = os.path.join(base, "labels", "pan_seg", f"panoptic_{split}.json")
        written[jf] = write_panoptic_json(jf, images, anns, cats, out_dir)
    return written


def main(argv=None) -> None:
    """``datasets/prepare_bdd_panoptic.py [--root R]``: :func:`convert`."""
    run_script(convert, argv)
