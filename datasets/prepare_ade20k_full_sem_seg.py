#!/usr/bin/env python
"""ADE20K-full (the ADE20K 2021_17_01 release) -> the 847-class semantic benchmark.

Input, as downloaded: ``ADE20K_2021_17_01/index_ade20k.pkl`` (a pickled dict with ``filename``,
``folder`` and ``objectnames``) and, for every image listed there,
``<folder>/<name>.jpg`` with its object label map ``<folder>/<name>_seg.png``, where a pixel's
object class is ``R // 10 * 256 + G`` (0 = unlabelled, k = ``objectnames[k - 1]``).

Output under ``ADE20K_2021_17_01/``:

* ``images_detectron2/{training,validation}/<name>.jpg`` and
  ``annotations_detectron2/{training,validation}/<name>.tif`` (uint16: class 0..K-1, 65535 for
  unlabelled pixels and for objects outside the vocabulary). Images whose shorter side exceeds
  512 px are resized so that it is 512 (image bilinear, labels nearest), as in MaskFormer's
  benchmark definition. Images named ``ADE_val_*`` are validation, all others training.
* ``ade20k_847_classes.txt``: the vocabulary (``trainId:name,synonym,...``; the synonyms are the
  comma-separated WordNet names of ``objectnames``) and ``ade20k_847_classes.json``: for every
  trainId its ADE20K object id, name and training-image count (provenance).

Class selection follows MaskFormer's definition of ADE20K-full (Cheng et al., 2021): the object
classes that occur in at least one training and at least one validation label map. They are
ordered by the number of training images that contain them (descending; ties by object id). The
order does not change mIoU. On the official release the rule is expected to give 847 classes; a
different count is reported. ``--classes FILE`` uses a given list instead (vocabulary format
whose ids are ADE20K object ids, in trainId order), e.g. to reproduce a paper's exact list.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import Counter

import numpy as np
from PIL import Image

from _prepare_common import InputError, parser, require, run, write_json

logger = logging.getLogger("prepare")

#: Name of the release folder under the datasets root
RELEASE = "ADE20K_2021_17_01"
#: Shorter image side of the benchmark (px); larger images are resized down to it
MAX_SHORT_SIDE = 512
#: Label value of unlabelled pixels and of objects outside the vocabulary
IGNORE = 65535
#: Number of classes of the published benchmark
EXPECTED_CLASSES = 847


def decode_object_classes(seg_rgb: np.ndarray) -> np.ndarray:
    """ADE20K object class per pixel from a ``_seg.png`` array ``(H, W, 3+)`` uint8:
    ``R // 10 * 256 + G`` as int32 ``(H, W)`` (0 = unlabelled)."""
    if seg_rgb.ndim != 3 or seg_rgb.shape[2] < 3:
        raise InputError(f"An ADE20K _seg.png must be an RGB image, got an array of shape {seg_rgb.shape}.")
    return (seg_rgb[..., 0].astype(np.int32) // 10) * 256 + seg_rgb[..., 1].astype(np.int32)


def benchmark_size(h: int, w: int) -> tuple[int, int]:
    """``(h, w)`` after resizing the shorter side to :data:`MAX_SHORT_SIDE` when it is larger."""
    if min(h, w) <= MAX_SHORT_SIDE:
        return h, w
    if h <= w:
        return MAX_SHORT_SIDE, round(w / h * MAX_SHORT_SIDE)
    return round(h / w * MAX_SHORT_SIDE), MAX_SHORT_SIDE


def _read_index(base: str) -> dict:
    path = require(os.path.join(base, "index_ade20k.pkl"), "the ADE20K 2021 index (index_ade20k.pkl)")
    with open(path, "rb") as f:  # the dataset's own index file; pickle is its published format
        index = pickle.load(f)
    if not isinstance(index, dict) or not {"filename", "folder", "objectnames"} <= set(index):
        raise InputError(f"{path} must be a dict with 'filename', 'folder' and 'objectnames'.")
    if len(index["filename"]) != len(index["folder"]):
        raise InputError(f"{path}: 'filename' and 'folder' have different lengths.")
    return index


def _image_path(root: str, base: str, folder: str, filename: str) -> str:
    """The image file: ``folder`` is relative to the datasets root (it starts with the release
    name) or to the release folder."""
    for parent in (root, base):
        p = os.path.join(parent, str(folder), str(filename))
        if os.path.exists(p):
            return p
    raise InputError(f"Image {filename} listed in index_ade20k.pkl is missing under {base} (folder {folder}).")


def _split(filename: str) -> str:
    return "validation" if str(filename).split("_")[1:2] == ["val"] else "training"


def _synonyms(objectname: str) -> list[str]:
    names: list[str] = []
    for n in str(objectname).split(","):
        n = " ".join(n.split())
        if n and n not in names:
            names.append(n)
    return names


def select_classes(presence: dict[str, Counter]) -> list[int]:
    """Object ids present in both splits, by descending training-image count, then id.

    ``presence[split][object_id]`` is the number of images of ``split`` whose label map contains
    the object (``split`` in ``training``, ``validation``)."""
    both = [c for c in presence["training"] if presence["validation"][c] > 0]
    return sorted(both, key=lambda c: (-presence["training"][c], c))


def _classes_from_file(path: str, num_objects: int) -> list[int]:
    from frozenseg.data.vocabulary import read_vocabulary_entries

    ids = [i for i, _ in read_vocabulary_entries(require(path, "the --classes vocabulary file"))]
    bad = [i for i in ids if not 1 <= i <= num_objects]
    if bad:
        raise InputError(f"{path}: ids {bad[:5]} are not ADE20K object ids (1..{num_objects}).")
    return ids


def convert(root: str, classes_file: str | None = None) -> dict[str, int]:
    from frozenseg.data.vocabulary import write_vocabulary_file

    base = require(os.path.join(root, RELEASE), "the ADE20K 2021_17_01 release")
    index = _read_index(base)
    objectnames = [str(n) for n in index["objectnames"]]
    items = [(_image_path(root, base, d, f), _split(f)) for d, f in zip(index["folder"], index["filename"])]
    if not items:
        raise InputError(f"{base}/index_ade20k.pkl lists no images.")

    presence: dict[str, Counter] = {"training": Counter(), "validation": Counter()}
    for img_path, split in items:
        seg_path = require(img_path[: -len(".jpg")] + "_seg.png", "an ADE20K object label map")
        classes = np.unique(decode_object_classes(np.asarray(Image.open(seg_path).convert("RGB"))))
        if classes.max() > len(objectnames):
            raise InputError(f"{seg_path}: object class {classes.max()} is beyond the "
                             f"{len(objectnames)} objectnames of the index.")
        presence[split].update(int(c) for c in classes if c > 0)

    if classes_file:
        selected = _classes_from_file(classes_file, len(objectnames))
    else:
        selected = select_classes(presence)
        if len(selected) != EXPECTED_CLASSES:
            logger.warning("The selection rule gave %d classes (the benchmark has %d); pass --classes "
                           "to use a fixed list.", len(selected), EXPECTED_CLASSES)
    if not selected:
        raise InputError("No object class occurs in both the training and the validation label maps.")
    lut = np.full(len(objectnames) + 1, IGNORE, np.uint16)
    lut[selected] = np.arange(len(selected), dtype=np.uint16)

    written: Counter = Counter()
    for img_path, split in items:
        name = os.path.splitext(os.path.basename(img_path))[0]
        image = Image.open(img_path).convert("RGB")
        labels = lut[decode_object_classes(np.asarray(Image.open(img_path[: -len(".jpg")] + "_seg.png").convert("RGB")))]
        if labels.shape != (image.height, image.width):
            raise InputError(f"{img_path}: the image and its _seg.png differ in size.")
        h, w = benchmark_size(image.height, image.width)
        if (h, w) != (image.height, image.width):
            image = image.resize((w, h), Image.BILINEAR)
            labels = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
        for sub, obj, ext in (("images_detectron2", image, ".jpg"),
                              ("annotations_detectron2", Image.fromarray(labels), ".tif")):
            d = os.path.join(base, sub, split)
            os.makedirs(d, exist_ok=True)
            obj.save(os.path.join(d, name + ext))
        written[split] += 1

    names = [_synonyms(objectnames[c - 1]) for c in selected]
    write_vocabulary_file(os.path.join(base, "ade20k_847_classes.txt"), names,
                          header=f"ADE20K-full: {len(selected)} classes, written by "
                                 "datasets/prepare_ade20k_full_sem_seg.py")
    write_json(os.path.join(base, "ade20k_847_classes.json"),
               [{"trainId": k, "ade_object_id": c, "name": objectnames[c - 1],
                 "train_images": presence["training"][c]} for k, c in enumerate(selected)])
    for split, n in sorted(written.items()):
        logger.info("Wrote %d %s images and label maps under %s", n, split, base)
    logger.info("Wrote the %d-class vocabulary to %s", len(selected), os.path.join(base, "ade20k_847_classes.txt"))
    return dict(written)


def main(argv=None) -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--classes", default=None,
                    help="vocabulary file of ADE20K object ids, in trainId order (default: the selection rule)")
    args = ap.parse_args(argv)
    convert(args.root, args.classes)


if __name__ == "__main__":
    run(main)
