"""ADE20K-full (the ADE20K 2021_17_01 release) -> the 847-class semantic benchmark, the
conversion of ``datasets/prepare_ade20k_full_sem_seg.py``.

Input, as downloaded: ``ADE20K_2021_17_01/index_ade20k.pkl`` (a pickled dict with ``filename``,
``folder`` and ``objectnames``) and, for every image listed there,
``<folder>/<name>.jpg`` with its object label map ``<folder>/<name>_seg.png``, where a pixel's
object class is ``R // 10 * 256 + G`` (0 = unlabelled, k = ``objectnames[k - 1]``).

Output under ``ADE20K_2021_17_01/``:

* ``images_detectron2/{training,validation}/<name>.jpg`` and
  ``annotations_detectron2/{training,validation}/<name>.tif`` (uint16: class 0..846, 65535 for
  unlabelled pixels and for objects outside the vocabulary). Images whose shorter side exceeds
  512 px are resized so that it is 512 (image bilinear, labels nearest), as in MaskFormer's
  benchmark definition. Images named ``ADE_val_*`` are validation, all others training.
* ``ade20k_847_classes.txt``: the vocabulary the label maps follow (by default the shipped
  847-class list of the release, ``trainId:name,synonym,...``), and ``ade20k_847_classes.json``:
  for every trainId the ADE20K object id mapped to it, its name and training-image count.

Classes: the 847 classes, their order and their names are the release's
(``frozenseg.data.released``, dataset ``openvocab_ade20k_full_sem_seg_val``). Each ADE20K object
is matched to a class by name (this project's rule, :func:`match_objects`): the object's first
WordNet name must equal the class's display name; where several objects and classes share a
first name ("pot" and "pot, flowerpot"), pairs are taken in order of how many of the object's
names are synonyms of the class. Classes that no object matches are reported; the official
release is expected to match all 847, which cannot be checked without it. ``--classes FILE``
uses a given list instead (vocabulary format whose ids are ADE20K object ids, in trainId order,
e.g. written from MaskFormer's object-id table); the dataset then needs
``DATASETS.VOCABULARY_FILES "openvocab_ade20k_full_sem_seg_val:<root>/ADE20K_2021_17_01/ade20k_847_classes.txt"``
(the loader refuses label maps written for another vocabulary than the one in use).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import Counter

import numpy as np
from PIL import Image

from ..released import released_metadata
from ..vocabulary import read_vocabulary_entries, write_vocabulary_file
from .common import InputError, parser, require, run, write_json

__all__ = ["decode_object_classes", "benchmark_size", "match_objects", "convert", "main"]

logger = logging.getLogger(__name__)

#: Name of the release folder under the datasets root
RELEASE = "ADE20K_2021_17_01"
#: Shorter image side of the benchmark (px); larger images are resized down to it
MAX_SHORT_SIDE = 512
#: Label value of unlabelled pixels and of objects outside the vocabulary
IGNORE = 65535
#: The released dataset whose 847 classes the label maps follow
RELEASED_DATASET = "openvocab_ade20k_full_sem_seg_val"
#: Shipped classes without a matching object listed in the log
_MAX_LISTED = 10


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


def _names(text: str) -> list[str]:
    """Comma-separated names, each with single spaces and lower case."""
    return [" ".join(n.split()).lower() for n in str(text).split(",") if n.strip()]


def match_objects(objectnames: list[str], classes: list[str], train_images: Counter) -> dict[int, int]:
    """ADE20K object id (1-based position in ``objectnames``) -> class index, by name.

    A pair (object, class) qualifies when the object's first name equals the class's first
    synonym (case and repeated spaces ignored). Pairs are taken greedily, each object and each
    class at most once, in order of: names of the object that are synonyms of the class (more
    first), the share of the pair's names that agree (Jaccard), the object's training-image
    count (``train_images``), then class index and object id. ``classes`` are ``"name,syn,..."``.
    """
    class_names = [_names(c) for c in classes]
    by_first: dict[str, list[int]] = {}
    for k, names in enumerate(class_names):
        by_first.setdefault(names[0], []).append(k)
    pairs = []
    for obj, text in enumerate(objectnames, start=1):
        names = _names(text)
        for k in by_first.get(names[0], []) if names else []:
            common = len(set(names) & set(class_names[k]))
            union = len(set(names) | set(class_names[k]))
            pairs.append((-common, -common / union, -train_images[obj], k, obj))
    used_objects: set[int] = set()
    out: dict[int, int] = {}
    for *_, k, obj in sorted(pairs):
        if obj not in used_objects and k not in out.values():
            out[obj] = k
            used_objects.add(obj)
    return out


def _classes_from_file(path: str, num_objects: int) -> tuple[list[int], list[list[str]]]:
    entries = read_vocabulary_entries(require(path, "the --classes vocabulary file"))
    bad = [i for i, _ in entries if not 1 <= i <= num_objects]
    if bad:
        raise InputError(f"{path}: ids {bad[:5]} are not ADE20K object ids (1..{num_objects}).")
    return [i for i, _ in entries], [n for _, n in entries]


def _shipped_mapping(objectnames: list[str], presence: Counter) -> tuple[list[int | None], list[str]]:
    """Per shipped class (trainId order): the matched ADE object id or None; and the classes."""
    classes = released_metadata(RELEASED_DATASET)["stuff_classes"]
    to_class = match_objects(objectnames, classes, presence)
    by_class: list[int | None] = [None] * len(classes)
    for obj, k in to_class.items():
        by_class[k] = obj
    missing = [classes[k].split(",")[0] for k, o in enumerate(by_class) if o is None]
    if missing:
        more = len(missing) - _MAX_LISTED
        logger.warning(
            "%d of the %d classes match no object name of this release, so they get no pixels: %s%s. "
            "Pass --classes with the ADE20K object id of each class to map them exactly.",
            len(missing), len(classes), ", ".join(missing[:_MAX_LISTED]),
            f" and {more} more" if more > 0 else "")
    return by_class, classes


def convert(root: str, classes_file: str | None = None) -> dict[str, int]:
    """ADE20K-full (the ADE20K 2021_17_01 release) -> the 847-class semantic benchmark.

    Reads the release under ``root`` and writes the label maps, the vocabulary they follow and its
    provenance (layouts and class matching: the module docstring); ``classes_file`` is the
    ``--classes`` list (default: the release's 847 classes, matched to the objects by name).
    Returns the number of images written per split.
    """
    base = require(os.path.join(root, RELEASE), "the ADE20K 2021_17_01 release")
    index = _read_index(base)
    objectnames = [str(n) for n in index["objectnames"]]
    items = [(_image_path(root, base, d, f), _split(f)) for d, f in zip(index["folder"], index["filename"])]
    if not items:
        raise InputError(f"{base}/index_ade20k.pkl lists no images.")

    presence: Counter = Counter()  # object id -> training images that contain it
    for img_path, split in items:
        seg_path = require(img_path[: -len(".jpg")] + "_seg.png", "an ADE20K object label map")
        classes = np.unique(decode_object_classes(np.asarray(Image.open(seg_path).convert("RGB"))))
        if classes.max() > len(objectnames):
            raise InputError(f"{seg_path}: object class {classes.max()} is beyond the "
                             f"{len(objectnames)} objectnames of the index.")
        if split == "training":
            presence.update(int(c) for c in classes if c > 0)

    if classes_file:
        ids, names = _classes_from_file(classes_file, len(objectnames))
        objects: list[int | None] = list(ids)
    else:
        objects, class_strings = _shipped_mapping(objectnames, presence)
        names = class_strings
    lut = np.full(len(objectnames) + 1, IGNORE, np.uint16)
    for k, obj in enumerate(objects):
        if obj is not None:
            lut[obj] = k

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

    vocab_file = os.path.join(base, "ade20k_847_classes.txt")
    source = classes_file or f"the released list ({RELEASED_DATASET})"
    write_vocabulary_file(vocab_file, names,
                          header=f"ADE20K-full: {len(names)} classes from {source}, written by "
                                 "datasets/prepare_ade20k_full_sem_seg.py")
    write_json(os.path.join(base, "ade20k_847_classes.json"),
               [{"trainId": k, "ade_object_id": o, "name": objectnames[o - 1] if o else None,
                 "train_images": presence[o] if o else 0} for k, o in enumerate(objects)])
    for split, n in sorted(written.items()):
        logger.info("Wrote %d %s images and label maps under %s", n, split, base)
    logger.info("Label maps follow the %d classes of %s (written to %s)", len(names), source, vocab_file)
    if classes_file:
        logger.info("Evaluate with DATASETS.VOCABULARY_FILES \"openvocab_ade20k_full_sem_seg_val:%s\".", vocab_file)
    return dict(written)


def _command(argv) -> None:
    ap = parser(convert.__doc__)
    ap.add_argument("--classes", default=None,
                    help="vocabulary file of ADE20K object ids, in trainId order (default: the release's "
                         "847 classes, matched to the objects by name)")
    args = ap.parse_args(argv)
    convert(args.root, args.classes)


def main(argv=None) -> None:
    """``datasets/prepare_ade20k_full_sem_seg.py [--root R] [--classes FILE]``: :func:`convert`."""
    run(_command, argv)
