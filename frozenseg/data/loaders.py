"""Functions that read one dataset layout into standard dataset dicts (Detectron2's format).

Semantic: ``{"file_name", "sem_seg_file_name", "image_id"}``, optionally ``"sem_seg_num_classes"``
(K: the label map may hold only 0..K-1 and the ignore label; the semantic mapper and evaluator
check it when they read the file, :func:`frozenseg.utils.image_io.check_label_ids`).
Panoptic (COCO panoptic format): ``{"file_name", "image_id", "height", "width",
"pan_seg_file_name", "segments_info": [{"id", "category_id" (contiguous), "isthing", "iscrowd",
"area"}], "sem_seg_file_name" (optional)}``.
Instances (COCO json): ``{"file_name", "image_id", "height", "width", "annotations": [{"bbox",
"bbox_mode", "category_id" (contiguous), "segmentation", "iscrowd"}]}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Callable, Sequence

from ..utils.errors import UserInputError

__all__ = [
    "BoxMode",
    "DatasetNotFoundError",
    "check_exists",
    "load_sem_seg",
    "load_coco_panoptic_json",
    "load_coco_instances_json",
    "load_lvis_json",
]

logger = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class BoxMode:
    """Box encodings used in dataset dicts (Detectron2's integer values)."""

    XYXY_ABS = 0
    XYWH_ABS = 1


class DatasetNotFoundError(UserInputError, FileNotFoundError):
    """A dataset's files are not where the registration expects them."""


def check_exists(path: str, dataset_name: str, prepare: str) -> str:
    """Return ``path`` or raise a one-sentence error naming it and how to prepare it."""
    if not os.path.exists(path):
        raise DatasetNotFoundError(
            f"Dataset {dataset_name!r} expects {path}, which does not exist; to create it, "
            f"{prepare} (layouts under $DETECTRON2_DATASETS: datasets/README.md)."
        )
    return path


def _index_files(root: str, exts: tuple[str, ...] | None = None) -> dict[str, str]:
    """Map each file's path relative to ``root`` (no extension) to its full path, recursively."""
    out: dict[str, str] = {}
    for dirpath, _, files in os.walk(root, followlinks=True):
        for f in files:
            stem, ext = os.path.splitext(f)
            if exts is not None and ext.lower() not in exts:
                continue
            rel = os.path.relpath(os.path.join(dirpath, stem), root)
            out[rel] = os.path.join(dirpath, f)
    return out


def load_sem_seg(
    gt_root: str,
    image_root: str,
    *,
    gt_ext: str = "png",
    image_ext: str | Sequence[str] = "jpg",
    dataset_name: str = "",
    prepare: str = "",
    gt_suffix: str = "",
    image_suffix: str = "",
) -> list[dict]:
    """Pair images and label maps that share a relative path (recursively).

    ``gt_suffix`` / ``image_suffix`` are removed from the file stems before pairing (e.g.
    Cityscapes ``_gtFine_labelTrainIds`` and ``_leftImg8bit``). ``image_ext`` is one extension
    or several (e.g. :data:`IMAGE_EXTS`; compared without case). Label maps without an image
    are an error; images without a label map are skipped with a warning.
    """
    check_exists(image_root, dataset_name, prepare)
    check_exists(gt_root, dataset_name, prepare)
    gt_ext = "." + gt_ext.lstrip(".")
    exts = (image_ext,) if isinstance(image_ext, str) else tuple(image_ext)
    image_exts = tuple("." + e.lstrip(".").lower() for e in exts)

    def strip(d: dict[str, str], suffix: str) -> dict[str, str]:
        if not suffix:
            return d
        return {k[: -len(suffix)]: v for k, v in d.items() if k.endswith(suffix)}

    gts = strip(_index_files(gt_root, (gt_ext,)), gt_suffix)
    imgs = strip(_index_files(image_root, image_exts), image_suffix)
    missing = sorted(set(gts) - set(imgs))
    if missing:
        raise DatasetNotFoundError(
            f"Dataset {dataset_name!r}: {len(missing)} label maps in {gt_root} have no image in "
            f"{image_root} (first: {missing[0]}); to create it, {prepare}."
        )
    if len(imgs) > len(gts):
        logger.warning(
            "%s: %d images in %s have no label map; they are skipped.",
            dataset_name, len(imgs) - len(gts), image_root,
        )
    dicts = [
        {"file_name": imgs[k], "sem_seg_file_name": gts[k], "image_id": os.path.basename(k)}
        for k in sorted(gts)
    ]
    logger.info("Loaded %d images with semantic labels from %s", len(dicts), image_root)
    return dicts


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_coco_panoptic_json(
    json_file: str,
    image_dir: str,
    gt_dir: str,
    meta,
    *,
    sem_seg_dir: str | None = None,
    dataset_name: str = "",
    prepare: str = "",
    sem_seg_key: Callable[[dict], str] | None = None,
    image_suffix: str = "",
) -> list[dict]:
    """Read a COCO-panoptic-format json and its PNGs.

    Category ids are mapped to contiguous ids through ``meta.thing_dataset_id_to_contiguous_id``
    and ``meta.stuff_dataset_id_to_contiguous_id``. Images are found by file stem anywhere under
    ``image_dir`` (``image_suffix``, e.g. ``_leftImg8bit``, is removed first). ``sem_seg_key(ann)``
    gives the stem of the semantic label map in ``sem_seg_dir`` (default: the PNG's stem).
    """
    for p in (json_file, image_dir, gt_dir) + ((sem_seg_dir,) if sem_seg_dir else ()):
        check_exists(p, dataset_name, prepare)
    data = _load_json(json_file)
    images = {img["id"]: img for img in data.get("images", [])}
    idx: dict[str, str] = {}
    for k, v in _index_files(image_dir, IMAGE_EXTS).items():
        b = os.path.basename(k)
        idx[b[: -len(image_suffix)] if image_suffix and b.endswith(image_suffix) else b] = v
    sem_idx = (
        {os.path.basename(k): v for k, v in _index_files(sem_seg_dir, (".png", ".tif")).items()}
        if sem_seg_dir else {}
    )
    thing_map = meta.thing_dataset_id_to_contiguous_id
    stuff_map = meta.stuff_dataset_id_to_contiguous_id
    dicts = []
    for ann in data["annotations"]:
        img = images.get(ann["image_id"], {})
        image_name = img.get("file_name", ann["file_name"])
        key = os.path.splitext(os.path.basename(image_name))[0]
        if image_suffix and key.endswith(image_suffix):
            key = key[: -len(image_suffix)]
        image_file = idx.get(key) or idx.get(str(ann["image_id"]))
        if image_file is None:
            raise DatasetNotFoundError(
                f"Dataset {dataset_name!r}: image {image_name!r} of {json_file} is not under "
                f"{image_dir}; to create it, {prepare}."
            )
        segs = []
        for s in ann["segments_info"]:
            cid = s["category_id"]
            if cid in thing_map:
                contiguous, isthing = thing_map[cid], True
            elif cid in stuff_map:
                contiguous, isthing = stuff_map[cid], False
            else:
                raise ValueError(
                    f"{json_file}: category id {cid} is not a class of dataset {dataset_name!r}."
                )
            segs.append({**s, "category_id": contiguous, "isthing": isthing,
                         "iscrowd": int(s.get("iscrowd", 0))})
        d = {
            "file_name": image_file,
            "image_id": ann["image_id"],
            "pan_seg_file_name": os.path.join(gt_dir, ann["file_name"]),
            "segments_info": segs,
        }
        if "height" in img and "width" in img:
            d["height"], d["width"] = int(img["height"]), int(img["width"])
        if sem_seg_dir:
            k = sem_seg_key(ann) if sem_seg_key else os.path.splitext(ann["file_name"])[0]
            if k not in sem_idx:
                raise DatasetNotFoundError(
                    f"Dataset {dataset_name!r}: no semantic label map {k!r} in {sem_seg_dir}; "
                    f"to create it, {prepare}."
                )
            d["sem_seg_file_name"] = sem_idx[k]
        dicts.append(d)
    logger.info("Loaded %d panoptic images from %s", len(dicts), json_file)
    return dicts


def _coco_api(json_file: str):
    from pycocotools.coco import COCO

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # pycocotools reports through print()
        api = COCO(json_file)
    for line in buf.getvalue().splitlines():
        logger.debug("pycocotools: %s", line)
    return api


def load_coco_instances_json(
    json_file: str, image_root: str, meta, dataset_name: str = "", prepare: str = ""
) -> list[dict]:
    """Read a COCO instances json; category ids become contiguous via ``meta``.

    When ``meta`` has no ``thing_dataset_id_to_contiguous_id`` yet, it is set from the json's
    categories (sorted by id), together with ``thing_classes``.
    """
    check_exists(json_file, dataset_name, prepare)
    check_exists(image_root, dataset_name, prepare)
    api = _coco_api(json_file)
    cat_ids = sorted(api.getCatIds())
    if meta.get("thing_dataset_id_to_contiguous_id") is None:
        cats = api.loadCats(cat_ids)
        meta.set(thing_classes=[c["name"] for c in cats],
                 thing_dataset_id_to_contiguous_id={c: i for i, c in enumerate(cat_ids)})
    id_map = meta.thing_dataset_id_to_contiguous_id
    dicts = []
    for img_id in sorted(api.imgs):
        img = api.imgs[img_id]
        if "file_name" in img:
            fname = img["file_name"]
        else:  # LVIS: the image is named by the last part of its COCO url
            fname = img["coco_url"].split("/")[-1]
        record = {
            "file_name": os.path.join(image_root, fname),
            "image_id": img_id,
            "height": int(img["height"]),
            "width": int(img["width"]),
        }
        for k in ("not_exhaustive_category_ids", "neg_category_ids"):
            if k in img:
                record[k] = [id_map[c] for c in img[k] if c in id_map]
        objs = []
        for a in api.imgToAnns.get(img_id, []):
            if a["category_id"] not in id_map:
                raise ValueError(
                    f"{json_file}: category id {a['category_id']} is not a class of {dataset_name!r}."
                )
            seg = a.get("segmentation")
            if isinstance(seg, list):
                seg = [p for p in seg if len(p) % 2 == 0 and len(p) >= 6]
                if not seg:
                    continue  # degenerate polygon
            objs.append({
                "bbox": list(a["bbox"]),
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": id_map[a["category_id"]],
                "segmentation": seg,
                "iscrowd": int(a.get("iscrowd", 0)),
            })
        record["annotations"] = objs
        dicts.append(record)
    logger.info("Loaded %d images with instances from %s", len(dicts), json_file)
    return dicts


def load_lvis_json(json_file: str, image_root: str, meta, dataset_name: str = "",
                   prepare: str = "") -> list[dict]:
    """Read an LVIS v1 json (COCO-like; images under ``image_root`` by their COCO url name).

    LVIS images come from COCO train2017 and val2017; ``image_root`` is the folder that holds
    both (files are looked up in ``train2017`` and ``val2017`` below it).
    """
    dicts = load_coco_instances_json(json_file, image_root, meta, dataset_name, prepare)
    for d in dicts:
        if not os.path.exists(d["file_name"]):
            name = os.path.basename(d["file_name"])
            for sub in ("train2017", "val2017"):
                cand = os.path.join(image_root, sub, name)
                if os.path.exists(cand):
                    d["file_name"] = cand
                    break
    return dicts
