"""Small synthetic datasets in the real raw layouts, written deterministically from a seed.

Layouts (``MAKERS``; each ``make_<layout>(root, seed, num_train, num_val)`` writes under ``root``;
:func:`make_layouts` writes several):

* ``shapes``: ``synthetic_shapes/{train,val}/`` - coloured geometric objects (things: circle,
  square, triangle, star) on textured backgrounds (stuff: sky, grass, sand, water), with COCO
  panoptic PNGs + json, semantic PNGs and a COCO instances json. Registered as
  ``synthetic_shapes_{train,val}_panoptic`` / ``_sem_seg``; small enough for CPU training.
  ``frozenseg.engine.ensure_synthetic_datasets`` generates it on first use
  (:data:`SHAPES_NUM_TRAIN` / :data:`SHAPES_NUM_VAL` images, seed 0).
* ``coco``: ``coco/`` with COCO 2017 panoptic (json + PNGs), instances json and images
  (semantic maps come from ``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py``).
* ``ade``: ``ADEChallengeData2016/`` as downloaded (images, ``annotations`` with 0 = other and
  1..150, ``annotations_instance`` with R = instance class 1..100, G = instance index).
* ``cityscapes``: ``cityscapes/`` leftImg8bit + gtFine labelIds, instanceIds, labelTrainIds and
  panoptic json/PNGs.
* ``voc``: ``VOCdevkit/VOC2012`` JPEGImages, palette SegmentationClass, ImageSets/Segmentation.
* ``pcontext``: ``VOCdevkit/VOC2010`` JPEGImages + Pascal Context ``trainval/*.mat`` LabelMaps,
  ``labels.txt`` and split lists.
* ``mapillary``: ``mapillary_vistas/`` panoptic (json, PNGs) + semantic labels.
* ``bdd``: ``bdd100k/`` 10k images with the panoptic bitmasks as downloaded.
* ``ade_full``: ``ADE20K_2021_17_01/`` as downloaded (``index_ade20k.pkl``, images and
  ``_seg.png`` object maps) with a fixed design: see :data:`ADE_FULL_DESIGN`.
* ``semantic``: the semantic-only registered layouts with ready label maps (BDD 10k, COCO-Stuff
  detectron2 maps, Mapillary labels) - a semantic-only set for loader tests.

Every scene is a random composition, but the same seed gives the same files. The command line is
``tools/make_synthetic_dataset.py``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image, ImageDraw

from .released import PASCAL_CONTEXT_59_LABEL_NAMES, released_categories
from .vocabulary import builtin_vocabulary_path, read_vocabulary_entries

__all__ = [
    "MAKERS",
    "SHAPES_NUM_TRAIN",
    "SHAPES_NUM_VAL",
    "SceneContent",
    "make_scene",
    "make_layouts",
    "make_shapes",
    "make_coco",
    "make_ade",
    "make_ade_full",
    "make_cityscapes",
    "make_voc",
    "make_pcontext",
    "make_semantic",
    "make_mapillary",
    "make_bdd",
]

logger = logging.getLogger(__name__)

#: Size of the shapes dataset generated on first use (seed 0).
SHAPES_NUM_TRAIN = 240
SHAPES_NUM_VAL = 60

SHAPES = ("circle", "square", "triangle", "star")
STUFF_TEXTURES = {  # base colour of each shapes-dataset stuff class
    5: (110, 170, 235),  # sky
    6: (60, 150, 50),  # grass
    7: (215, 195, 140),  # sand
    8: (30, 80, 160),  # water
}


def _shape_mask(kind: str, h: int, w: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        n, radii = {"square": (4, [r]), "triangle": (3, [r]), "star": (10, [r, r * 0.45])}[kind]
        pts = []
        for k in range(n):
            a = angle + 2 * math.pi * k / n
            rr = radii[k % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=1)
    return np.array(img, dtype=bool)


@dataclass(frozen=True)
class SceneContent:
    """What the scenes of a dataset are made of.

    ``stuff_ids`` are drawn as 1 to 3 horizontal bands (wavy edges), then 1 to ``max_things``
    objects of ``thing_ids`` are painted over them. ``shape_of(category_id)`` names the shape of a
    thing ("circle", "square", "triangle", "star"; default: a random one) and
    ``stuff_color(category_id)`` the RGB base colour of a stuff band (default: a random one).
    """

    stuff_ids: Sequence[int]
    thing_ids: Sequence[int]
    max_things: int = 4
    shape_of: Callable[[int], str] | None = None
    stuff_color: Callable[[int], tuple[int, int, int]] | None = None


def make_scene(rng: np.random.Generator, h: int, w: int, content: SceneContent):
    """Compose one ``h`` x ``w`` image of ``content``, drawing from ``rng``. Returns ``(image
    uint8 (H, W, 3), segments)``; segments are dicts with ``mask`` (bool (H, W), disjoint),
    ``category_id`` and ``isthing``, in painting order."""
    stuff_ids, thing_ids = content.stuff_ids, content.thing_ids
    shape_of, stuff_color = content.shape_of, content.stuff_color
    image = np.zeros((h, w, 3), np.float32)
    segments = []
    n_bands = int(rng.integers(1, min(3, len(stuff_ids)) + 1)) if stuff_ids else 0
    owner = np.full((h, w), -1, np.int64)
    if n_bands:
        cuts = sorted(rng.choice(np.arange(h // 5, 4 * h // 5), n_bands - 1, replace=False).tolist())
        bounds = [0] + cuts + [h]
        cats = rng.choice(stuff_ids, n_bands, replace=False)
        yy = np.arange(h)[:, None]
        wave = (np.sin(np.arange(w) / w * 2 * math.pi * rng.uniform(0.5, 2)) * h * 0.04)[None, :]
        for b in range(n_bands):
            lo = bounds[b] + (wave if b else 0 * wave)
            hi = bounds[b + 1] + (wave if b + 1 < n_bands else 0 * wave)
            band = (yy >= lo) & (yy < hi) & (owner < 0)
            c = int(cats[b])
            base = np.array(stuff_color(c) if stuff_color else rng.integers(40, 220, 3), np.float32)
            tex = rng.normal(0, 12, (h, w, 1)) + 10 * np.sin(np.arange(w)[None, :, None] / rng.uniform(3, 9))
            image[band] = np.clip(base + tex[band], 0, 255)
            owner[band] = len(segments)
            segments.append({"mask": band, "category_id": c, "isthing": False})
    for _ in range(int(rng.integers(1, content.max_things + 1)) if thing_ids else 0):
        c = int(rng.choice(thing_ids))
        kind = shape_of(c) if shape_of else SHAPES[int(rng.integers(len(SHAPES)))]
        r = rng.uniform(0.08, 0.22) * min(h, w)
        m = _shape_mask(kind, h, w, rng.uniform(r, w - r), rng.uniform(r, h - r), r,
                        rng.uniform(0, 2 * math.pi))
        if m.sum() < 30:
            continue
        color = rng.integers(0, 256, 3).astype(np.float32)
        image[m] = np.clip(color + rng.normal(0, 6, (int(m.sum()), 3)), 0, 255)
        owner[m] = len(segments)
        segments.append({"mask": m, "category_id": c, "isthing": True})
    # make masks disjoint (later segments cover earlier ones); drop fully covered segments
    out = []
    for k, s in enumerate(segments):
        m = owner == k
        if m.sum() >= 10:
            out.append({**s, "mask": m})
    return image.astype(np.uint8), out


def _bbox(m: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(m)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _rle(m: np.ndarray) -> dict:
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


@dataclass(frozen=True)
class _CocoStyleLayout:
    """Where :func:`_write_coco_style` writes: the images (``image_ext``), the panoptic PNGs and
    json, and optionally an instances json and semantic label maps."""

    images: str
    panoptic: str
    panoptic_json: str
    instances_json: str | None = None
    sem_seg: str | None = None
    image_ext: str = ".jpg"


def _write_coco_style(layout: _CocoStyleLayout, categories: list[dict], scenes, *,
                      label_of: Callable[[int], int] | None = None, ignore: int = 255) -> None:
    """Write ``scenes`` (``(name, image, segments)`` of :func:`make_scene`) in ``layout``: images,
    panoptic PNGs/json, the instances json of the thing ``categories`` and semantic maps (class
    ``label_of(category_id)``, ``ignore`` elsewhere) where the layout has them."""
    out_dir_images, pan_dir, sem_dir = layout.images, layout.panoptic, layout.sem_seg
    image_ext = layout.image_ext
    os.makedirs(out_dir_images, exist_ok=True)
    os.makedirs(pan_dir, exist_ok=True)
    if sem_dir:
        os.makedirs(sem_dir, exist_ok=True)
    images, pan_anns, inst_anns = [], [], []
    for img_id, (name, image, segs) in enumerate(scenes, start=1):
        h, w = image.shape[:2]
        Image.fromarray(image).save(os.path.join(out_dir_images, name + image_ext),
                                    **({"quality": 95} if image_ext == ".jpg" else {}))
        pan = np.zeros((h, w), np.uint32)
        sem = np.full((h, w), ignore, np.uint8)
        infos = []
        for k, s in enumerate(segs, start=1):
            sid = s["category_id"] * 1000 + k
            pan[s["mask"]] = sid
            if label_of is not None:
                sem[s["mask"]] = label_of(s["category_id"])
            infos.append({"id": int(sid), "category_id": int(s["category_id"]), "iscrowd": 0,
                          "area": int(s["mask"].sum()), "bbox": _bbox(s["mask"])})
            if s["isthing"]:
                inst_anns.append({"id": len(inst_anns) + 1, "image_id": img_id,
                                  "category_id": int(s["category_id"]), "iscrowd": 0,
                                  "area": int(s["mask"].sum()), "bbox": _bbox(s["mask"]),
                                  "segmentation": _rle(s["mask"])})
        Image.fromarray(id2rgb(pan)).save(os.path.join(pan_dir, name + ".png"))
        if sem_dir:
            Image.fromarray(sem).save(os.path.join(sem_dir, name + ".png"))
        images.append({"id": img_id, "file_name": name + image_ext, "height": h, "width": w})
        pan_anns.append({"image_id": img_id, "file_name": name + ".png", "segments_info": infos})
    os.makedirs(os.path.dirname(layout.panoptic_json), exist_ok=True)
    with open(layout.panoptic_json, "w") as f:
        json.dump({"images": images, "annotations": pan_anns, "categories": categories}, f)
    if layout.instances_json:
        things = [c for c in categories if c.get("isthing")]
        with open(layout.instances_json, "w") as f:
            json.dump({"images": images, "annotations": inst_anns, "categories": things}, f)


def _read_vocab(name: str):
    return read_vocabulary_entries(builtin_vocabulary_path(name))


def make_shapes(root: str, seed: int, num_train: int, num_val: int, size: int = 160) -> str:
    """The shapes dataset: ``synthetic_shapes/{train,val}``."""
    entries = _read_vocab("synthetic_shapes.txt")
    cats = [{"id": i, "name": n[0], "isthing": int(i <= 4)} for i, n in entries]
    content = SceneContent((5, 6, 7, 8), (1, 2, 3, 4), shape_of=lambda c: SHAPES[c - 1],
                           stuff_color=lambda c: STUFF_TEXTURES[c])
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "synthetic_shapes")
    for split, n in (("train", num_train), ("val", num_val)):
        scenes = []
        for k in range(n):
            h = int(rng.integers(size * 3 // 4, size + 1))
            w = int(rng.integers(size * 3 // 4, size * 5 // 4 + 1))
            scenes.append((f"{split}_{k:05d}",) + make_scene(rng, h, w, content))
        d = os.path.join(out, split)
        layout = _CocoStyleLayout(
            images=os.path.join(d, "images"), panoptic=os.path.join(d, "panoptic"),
            panoptic_json=os.path.join(d, "panoptic.json"), instances_json=os.path.join(d, "instances.json"),
            sem_seg=os.path.join(d, "panoptic_semseg"), image_ext=".png")
        _write_coco_style(layout, cats, scenes, label_of=lambda c: c - 1)
    logger.info("Wrote the shapes dataset (%d train, %d val) to %s", num_train, num_val, out)
    return out


def make_coco(root: str, seed: int, num_train: int, num_val: int, size: int = 96) -> str:
    """COCO 2017 panoptic + instances layout (raw; no semantic maps)."""
    cats = [dict(c, supercategory="synthetic")
            for c in released_categories("openvocab_coco_2017_val_panoptic_with_sem_seg")]
    content = SceneContent(tuple(c["id"] for c in cats if not c["isthing"]),
                           tuple(c["id"] for c in cats if c["isthing"]))
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "coco")
    for split, n in (("train", num_train), ("val", num_val)):
        scenes = [(f"{k + 1:012d}",) + make_scene(rng, size, size + 16 * (k % 3), content)
                  for k in range(n)]
        layout = _CocoStyleLayout(
            images=os.path.join(out, f"{split}2017"), panoptic=os.path.join(out, f"panoptic_{split}2017"),
            panoptic_json=os.path.join(out, "annotations", f"panoptic_{split}2017.json"),
            instances_json=os.path.join(out, "annotations", f"instances_{split}2017.json"))
        _write_coco_style(layout, cats, scenes)
    logger.info("Wrote a synthetic COCO panoptic/instances dataset to %s", out)
    return out


def make_ade(root: str, seed: int, num_train: int, num_val: int, size: int = 96) -> str:
    """ADEChallengeData2016 as downloaded, plus ``annotations_instance``."""
    # raw instance class k (1..100) is the k-th class of the release's ADE20K instance split,
    # whose dataset ids are the 0-based ADE-150 ids
    instance_to_150 = [c["id"] for c in released_categories("openvocab_ade20k_instance_val")]
    thing150 = set(instance_to_150)
    to_inst = {c: k + 1 for k, c in enumerate(instance_to_150)}
    content = SceneContent(tuple(c for c in range(150) if c not in thing150), tuple(sorted(thing150)))
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "ADEChallengeData2016")
    for split, ade, n in (("train", "training", num_train), ("val", "validation", num_val)):
        for sub in ("images", "annotations", "annotations_instance"):
            os.makedirs(os.path.join(out, sub, ade), exist_ok=True)
        for k in range(n):
            image, segs = make_scene(rng, size, size + 8 * (k % 4), content)
            name = f"ADE_{split}_{k + 1:08d}"
            sem = np.zeros(image.shape[:2], np.uint8)  # 0 = "other" (unlabelled)
            inst = np.zeros(image.shape[:2] + (3,), np.uint8)
            if k % 2 == 0 and segs:  # leave some "other" pixels in half of the images
                segs[0]["mask"][: image.shape[0] // 8] = False
            ninst = 0
            for s in segs:
                sem[s["mask"]] = s["category_id"] + 1
                if s["isthing"]:
                    ninst += 1
                    inst[s["mask"], 0] = to_inst[s["category_id"]]
                    inst[s["mask"], 1] = ninst
            Image.fromarray(image).save(os.path.join(out, "images", ade, name + ".jpg"), quality=95)
            Image.fromarray(sem).save(os.path.join(out, "annotations", ade, name + ".png"))
            Image.fromarray(inst).save(os.path.join(out, "annotations_instance", ade, name + ".png"))
    logger.info("Wrote a synthetic ADE20K (as downloaded) to %s", out)
    return out


#: The synthetic ADE20K-full release: object names (object id = position + 1; the ids in between
#: are fillers ``object <id>``) and, per image, ``(file name, scene, height, width, object ids in
#: vertical bands)`` with 0 = unlabelled. The names are WordNet names as in the real index: wall,
#: building, sky, person, tree, car and road match the released 847 classes of the same display
#: name (trainIds 0, 1, 2, 11, 3, 14, 4); "pot" and "pot, flowerpot" share a first name with two
#: released classes ("pot" 188, "pot,flowerpot" 130); "zeppelin" matches none. Road has id 300
#: (R channel used).
ADE_FULL_NAMES = {1: "wall", 2: "building, edifice", 3: "sky",
                  4: "person, individual, someone, somebody, mortal, soul", 5: "tree",
                  6: "car, auto, automobile, machine, motorcar", 7: "pot", 8: "pot, flowerpot",
                  9: "zeppelin", 300: "road, route"}
ADE_FULL_DESIGN = (
    ("training", "ADE_train_00000001", "urban/street", 48, 64, (1, 2, 3, 7)),
    ("training", "ADE_train_00000002", "home/kitchen", 40, 56, (1, 4, 5, 300)),
    ("training", "ADE_frame_00000001", "urban/street", 600, 720, (1, 2, 6, 4)),
    ("validation", "ADE_val_00000001", "urban/street", 56, 48, (1, 2, 3, 4, 8)),
    ("validation", "ADE_val_00000002", "urban/highway", 48, 64, (6, 5, 0, 300, 9)),
)


def ade_full_bands(h: int, w: int, objects) -> np.ndarray:
    """Object id per pixel ``(H, W)`` int32: ``objects`` in equal vertical bands, left to right."""
    edges = np.linspace(0, w, len(objects) + 1).round().astype(int)
    out = np.zeros((h, w), np.int32)
    for k, obj in enumerate(objects):
        out[:, edges[k]:edges[k + 1]] = obj
    return out


def make_ade_full(root: str, seed: int, num_train: int = 0, num_val: int = 0) -> str:
    """ADE20K_2021_17_01 as downloaded, with the fixed content of :data:`ADE_FULL_DESIGN`
    (``num_train``/``num_val`` are ignored; ``seed`` only changes the pixel noise)."""
    import pickle

    rng = np.random.default_rng(seed)
    out = os.path.join(root, "ADE20K_2021_17_01")
    num_objects = max(ADE_FULL_NAMES)
    objectnames = [ADE_FULL_NAMES.get(i, f"object {i}") for i in range(1, num_objects + 1)]
    colours = rng.integers(0, 256, (num_objects + 1, 3))
    index: dict = {"filename": [], "folder": [], "scene": [], "objectnames": objectnames}
    for split, name, scene, h, w, objects in ADE_FULL_DESIGN:
        folder = f"ADE20K_2021_17_01/images/ADE/{split}/{scene}"
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        obj = ade_full_bands(h, w, objects)
        image = np.clip(colours[obj] + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
        seg = np.stack([(obj // 256) * 10, obj % 256, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, folder, name + ".jpg"), quality=95)
        Image.fromarray(seg).save(os.path.join(root, folder, name + "_seg.png"))
        index["filename"].append(name + ".jpg")
        index["folder"].append(folder)
        index["scene"].append(scene)
    with open(os.path.join(out, "index_ade20k.pkl"), "wb") as f:
        pickle.dump(index, f)
    logger.info("Wrote a synthetic ADE20K 2021_17_01 release to %s", out)
    return out


def make_cityscapes(root: str, seed: int, num_train: int, num_val: int, size: int = 64) -> str:
    """Cityscapes layout: images, gtFine ``labelIds`` / ``instanceIds`` (as downloaded; the
    Cityscapes evaluators read them), ``labelTrainIds`` and ``cityscapes_panoptic_{split}`` + json
    (what cityscapesScripts' createTrainIdLabelImgs / createPanopticImgs write)."""
    cats = [dict(c, color=[0, 0, 0]) for c in released_categories("openvocab_cityscapes_fine_panoptic_val")]
    train_id = {c["id"]: k for k, c in enumerate(cats)}
    content = SceneContent(tuple(c["id"] for c in cats if not c["isthing"]),
                           tuple(c["id"] for c in cats if c["isthing"]))
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "cityscapes")
    for split, n in (("train", num_train), ("val", num_val)):
        city = "synthcity"
        img_dir = os.path.join(out, "leftImg8bit", split, city)
        gt_dir = os.path.join(out, "gtFine", split, city)
        pan_dir = os.path.join(out, "gtFine", f"cityscapes_panoptic_{split}")
        for d in (img_dir, gt_dir, pan_dir):
            os.makedirs(d, exist_ok=True)
        images, anns = [], []
        for k in range(n):
            image, segs = make_scene(rng, size, size * 2, content)
            base = f"{city}_{k:06d}_000019"
            Image.fromarray(image).save(os.path.join(img_dir, base + "_leftImg8bit.png"))
            sem = np.full(image.shape[:2], 255, np.uint8)
            label_ids = np.zeros(image.shape[:2], np.uint8)  # 0 = "unlabeled"
            pan = np.zeros(image.shape[:2], np.uint32)
            infos = []
            for j, s in enumerate(segs):
                sem[s["mask"]] = train_id[s["category_id"]]
                label_ids[s["mask"]] = s["category_id"]
                sid = s["category_id"] * 1000 + j if s["isthing"] else s["category_id"]
                pan[s["mask"]] = sid
                infos.append({"id": int(sid), "category_id": s["category_id"], "iscrowd": 0,
                              "area": int(s["mask"].sum()), "bbox": _bbox(s["mask"])})
            Image.fromarray(sem).save(os.path.join(gt_dir, base + "_gtFine_labelTrainIds.png"))
            Image.fromarray(label_ids).save(os.path.join(gt_dir, base + "_gtFine_labelIds.png"))
            # instanceIds as downloaded: label id * 1000 + instance for things, label id for stuff
            Image.fromarray(pan.astype(np.uint16)).save(os.path.join(gt_dir, base + "_gtFine_instanceIds.png"))
            Image.fromarray(id2rgb(pan)).save(os.path.join(pan_dir, base + "_gtFine_panoptic.png"))
            images.append({"id": base, "file_name": base + "_leftImg8bit.png",
                           "height": size, "width": size * 2})
            anns.append({"image_id": base, "file_name": base + "_gtFine_panoptic.png",
                         "segments_info": infos})
        with open(os.path.join(out, "gtFine", f"cityscapes_panoptic_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    logger.info("Wrote a synthetic Cityscapes panoptic dataset to %s", out)
    return out


def _voc_palette() -> list[int]:
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def make_voc(root: str, seed: int, num_train: int, num_val: int, size: int = 64) -> str:
    """Pascal VOC 2012 as downloaded (JPEGImages, palette SegmentationClass, split lists)."""
    content = SceneContent((0,), tuple(range(1, 21)), max_things=3)
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for split, n in (("train", num_train), ("val", num_val)):
        names = []
        for k in range(n):
            image, segs = make_scene(rng, size, size + 8, content)
            lab = np.zeros(image.shape[:2], np.uint8)
            for s in segs:
                lab[s["mask"]] = s["category_id"]
                if s["isthing"]:  # VOC marks object borders as 255
                    m = s["mask"]
                    edge = m ^ np.pad(m, 1)[2:, 1:-1] | m ^ np.pad(m, 1)[1:-1, 2:]
                    lab[edge & m] = 255
            name = f"2012_{split}{k:05d}"
            names.append(name)
            Image.fromarray(image).save(os.path.join(out, "JPEGImages", name + ".jpg"), quality=95)
            p = Image.fromarray(lab, mode="P")
            p.putpalette(_voc_palette())
            p.save(os.path.join(out, "SegmentationClass", name + ".png"))
        with open(os.path.join(out, "ImageSets", "Segmentation", f"{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    logger.info("Wrote a synthetic Pascal VOC 2012 to %s", out)
    return out


def make_pcontext(root: str, seed: int, num_train: int, num_val: int, size: int = 64) -> str:
    """Pascal Context raw layout: VOC2010 JPEGImages, trainval/*.mat, labels.txt, split lists.

    ``labels.txt`` lists 459 classes ("id: name"); the 59 benchmark classes are among them.
    """
    from scipy.io import savemat

    # labels.txt: the release's 459 display names in its order, except where the release renamed
    # a 59-benchmark class that labels.txt names differently (lamp -> light, wood piece -> wood)
    names = [c["name"] for c in released_categories("openvocab_pascal_ctx459_sem_seg_val")]
    names[names.index("lamp")], names[names.index("wood piece")] = "light", "wood"
    bench = {n.replace(" ", "") for n in PASCAL_CONTEXT_59_LABEL_NAMES}
    order = [i for i, n in enumerate(names) if n.replace(" ", "") in bench]
    order += [i for i in range(459) if i not in set(order)][:20]
    # draw from the 59 benchmark classes and 20 others, so both label sets get pixels
    pool = tuple(sorted(i + 1 for i in order))
    content = SceneContent(pool, pool, max_things=3)
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "VOCdevkit", "VOC2010")
    for sub in ("JPEGImages", "trainval", "ImageSets/SegmentationContext"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("".join(f"{i + 1}: {n}\n" for i, n in enumerate(names)))
    for split, n in (("train", num_train), ("val", num_val)):
        ids = []
        for k in range(n):
            image, segs = make_scene(rng, size, size + 8, content)
            lab = np.zeros(image.shape[:2], np.uint16)  # 0 = unlabelled
            for s in segs:
                lab[s["mask"]] = s["category_id"]
            name = f"2010_{split}{k:05d}"
            ids.append(name)
            Image.fromarray(image).save(os.path.join(out, "JPEGImages", name + ".jpg"), quality=95)
            savemat(os.path.join(out, "trainval", name + ".mat"), {"LabelMap": lab})
        with open(os.path.join(out, "ImageSets", "SegmentationContext", f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    logger.info("Wrote a synthetic Pascal Context to %s", out)
    return out


@dataclass(frozen=True)
class _SemanticLayout:
    """A semantic-only layout of :func:`make_semantic`: image and label-map folders (templates of
    ``{root}``, ``{split}`` = train/val and ``{ade}`` = training/validation), the number of
    classes, the ignore label and the file-name prefix (``<prefix>NNNNN.jpg`` / ``.png``)."""

    images: str
    labels: str
    num_classes: int
    ignore: int
    prefix: str = "img"


_SEMANTIC_LAYOUTS = (
    _SemanticLayout("{root}/bdd100k/images/10k/{split}", "{root}/bdd100k/labels/sem_seg/masks/{split}", 19, 255),
    _SemanticLayout("{root}/coco/{split}2017", "{root}/coco/stuffthingmaps_detectron2/{split}2017", 171, 255,
                    prefix="stuff"),
    _SemanticLayout("{root}/mapillary_vistas/{ade}/images", "{root}/mapillary_vistas/{ade}/labels", 65, 65),
)


def make_semantic(root: str, seed: int, num_train: int, num_val: int, size: int = 48) -> list[str]:
    """Ready-to-load semantic-only layouts (BDD 10k, COCO-Stuff maps, Mapillary labels)."""
    rng = np.random.default_rng(seed)
    written = []
    for split, ade, n in (("train", "training", num_train), ("val", "validation", num_val)):
        for layout in _SEMANTIC_LAYOUTS:
            img_dir = layout.images.format(root=root, split=split, ade=ade)
            gt_dir = layout.labels.format(root=root, split=split, ade=ade)
            os.makedirs(img_dir, exist_ok=True)
            os.makedirs(gt_dir, exist_ok=True)
            content = SceneContent(tuple(range(layout.num_classes)), (), max_things=0)
            for k in range(n):
                image, segs = make_scene(rng, size, size + 8, content)
                lab = np.full(image.shape[:2], layout.ignore, np.uint8)
                for s in segs:
                    lab[s["mask"]] = s["category_id"]
                Image.fromarray(image).save(os.path.join(img_dir, f"{layout.prefix}{k:05d}.jpg"))
                Image.fromarray(lab).save(os.path.join(gt_dir, f"{layout.prefix}{k:05d}.png"))
            written.append(gt_dir)
    logger.info("Wrote semantic-only synthetic layouts under %s", root)
    return written


def make_mapillary(root: str, seed: int, num_train: int, num_val: int, size: int = 64) -> str:
    """Mapillary Vistas v1.2 panoptic layout (json category ids 1..65, labels 0..64, 65 void)."""
    cats = released_categories("openvocab_mapillary_vistas_panoptic_val")
    content = SceneContent(tuple(c["id"] for c in cats if not c["isthing"]),
                           tuple(c["id"] for c in cats if c["isthing"]))
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "mapillary_vistas")
    for ade, n in (("training", num_train), ("validation", num_val)):
        scenes = [(f"mv_{ade}_{k:04d}",) + make_scene(rng, size, size + 16, content)
                  for k in range(n)]
        d = os.path.join(out, ade)
        layout = _CocoStyleLayout(
            images=os.path.join(d, "images"), panoptic=os.path.join(d, "panoptic"),
            panoptic_json=os.path.join(d, "panoptic", "panoptic_2018.json"), sem_seg=os.path.join(d, "labels"))
        _write_coco_style(layout, cats, scenes, label_of=lambda c: c - 1, ignore=65)
    logger.info("Wrote a synthetic Mapillary Vistas panoptic dataset to %s", out)
    return out


def make_bdd(root: str, seed: int, num_train: int, num_val: int, size: int = 64) -> str:
    """BDD100K 10k images with panoptic labels as downloaded: RGBA bitmasks (R = category 1..40,
    G = attribute bits, B * 256 + A = instance id; ``datasets/prepare_bdd_panoptic.py`` converts
    them). Each image's first thing instance carries the crowd bit; stuff regions carry instance
    ids too, as in the release."""
    content = SceneContent(tuple(range(1, 31)), tuple(range(31, 41)))
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "bdd100k")
    for split, n in (("train", num_train), ("val", num_val)):
        img_dir = os.path.join(out, "images", "10k", split)
        mask_dir = os.path.join(out, "labels", "pan_seg", "bitmasks", split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(mask_dir, exist_ok=True)
        for k in range(n):
            image, segs = make_scene(rng, size, size + 16, content)
            bitmask = np.zeros(image.shape[:2] + (4,), np.uint8)
            first_thing = next((j for j, s in enumerate(segs) if s["isthing"]), None)
            for j, s in enumerate(segs, start=1):
                bitmask[s["mask"], 0] = s["category_id"]
                bitmask[s["mask"], 1] = 2 if j - 1 == first_thing else 0
                bitmask[s["mask"], 2], bitmask[s["mask"], 3] = divmod(300 + j, 256)
            name = f"bddpan{split}{k:04d}"
            Image.fromarray(image).save(os.path.join(img_dir, name + ".jpg"), quality=95)
            Image.fromarray(bitmask).save(os.path.join(mask_dir, name + ".png"))
    logger.info("Wrote a synthetic BDD100K panoptic release (bitmasks) to %s", out)
    return out


MAKERS = {"shapes": make_shapes, "coco": make_coco, "ade": make_ade, "ade_full": make_ade_full,
          "cityscapes": make_cityscapes, "voc": make_voc, "pcontext": make_pcontext,
          "semantic": make_semantic, "mapillary": make_mapillary, "bdd": make_bdd}


def make_layouts(root: str, layouts: Sequence[str] | None = None, *, seed: int = 0, num_train: int = 8,
                 num_val: int = 4) -> None:
    """Write ``layouts`` (names of :data:`MAKERS`; default: all of them, sorted) under ``root``,
    the k-th with seed ``seed + k``, each with ``num_train`` / ``num_val`` images per split."""
    unknown = sorted(set(layouts or ()) - set(MAKERS))
    if unknown:
        raise ValueError(f"Unknown synthetic layouts {unknown}; choose among {sorted(MAKERS)}.")
    for k, name in enumerate(sorted(MAKERS) if layouts is None else layouts):
        MAKERS[name](root, seed + k, num_train, num_val)
