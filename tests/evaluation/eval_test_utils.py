"""Builders of tiny hand-made datasets (ground-truth files + model outputs) for evaluator tests."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image

from frozenseg.structures.instances import Instances


def one_hot_scores(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(K, H, W) scores whose argmax is ``labels``."""
    t = torch.as_tensor(labels, dtype=torch.long)
    return torch.nn.functional.one_hot(t, num_classes).permute(2, 0, 1).float()


def write_label_png(path: str, labels: np.ndarray) -> str:
    Image.fromarray(labels.astype(np.uint8)).save(path)
    return path


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic encoding, written independently of the code under test."""
    rgb = np.zeros(ids.shape + (3,), dtype=np.uint8)
    ids = ids.astype(np.int64).copy()
    for c in range(3):
        rgb[..., c] = ids % 256
        ids //= 256
    return rgb


def rect(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[rows, cols] = True
    return m


def rle(mask: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("utf-8")
    return r


def make_instances(masks: list[np.ndarray], classes: list[int], scores: list[float], hw=(8, 8)) -> Instances:
    if masks:
        pred_masks = torch.as_tensor(np.stack(masks))
    else:
        pred_masks = torch.zeros((0,) + tuple(hw), dtype=torch.bool)
    return Instances(
        tuple(hw),
        pred_masks=pred_masks,
        scores=torch.tensor(scores, dtype=torch.float32),
        pred_classes=torch.tensor(classes, dtype=torch.long),
    )


def write_coco_json(path: str, images: list[dict], categories: list[dict], anns: list[tuple[int, int, np.ndarray]],
                    lvis: bool = False) -> str:
    """COCO (or LVIS) instances JSON; ``anns`` are (image_id, category_id, mask)."""
    annotations = []
    for i, (image_id, cat_id, mask) in enumerate(anns):
        r = rle(mask)
        annotations.append(
            {
                "id": i + 1,
                "image_id": image_id,
                "category_id": cat_id,
                "segmentation": r,
                "area": float(mask.sum()),
                "bbox": [float(x) for x in mask_util.toBbox(r)],
                "iscrowd": 0,
            }
        )
    images = [dict(im) for im in images]
    if lvis:
        for im in images:
            im.setdefault("neg_category_ids", [])
            im.setdefault("not_exhaustive_category_ids", [])
    with open(path, "w") as f:
        json.dump({"images": images, "categories": categories, "annotations": annotations}, f)
    return path


# ---------------------------------------------------------------------------------------------
# A two-image panoptic dataset (8x8): "person" (thing, dataset id 7) and "grass" (stuff, id 20).
# ---------------------------------------------------------------------------------------------
PAN_H = PAN_W = 8
PERSON, GRASS = 7, 20


def panoptic_gt_segments() -> dict[str, list[tuple[int, int, np.ndarray]]]:
    """Per image: list of (segment id, dataset category id, mask)."""
    h, w = PAN_H, PAN_W
    person_a = rect(h, w, slice(0, 4), slice(0, 4))
    img1 = [(1, PERSON, person_a), (2, GRASS, ~person_a)]
    person_b = rect(h, w, slice(0, 2), slice(0, 8))
    person_c = rect(h, w, slice(6, 8), slice(0, 8))
    img2 = [(1, PERSON, person_b), (2, PERSON, person_c), (3, GRASS, ~(person_b | person_c))]
    return {"img1": img1, "img2": img2}


def build_panoptic_dataset(root: str) -> SimpleNamespace:
    """Write panoptic PNG+JSON, semantic PNGs and a COCO instances JSON; return metadata+inputs."""
    pan_dir = os.path.join(root, "panoptic")
    sem_dir = os.path.join(root, "sem")
    os.makedirs(pan_dir, exist_ok=True)
    os.makedirs(sem_dir, exist_ok=True)
    contiguous = {PERSON: 0, GRASS: 1}
    images, annotations, inputs, instance_anns = [], [], [], []
    for idx, (name, segments) in enumerate(sorted(panoptic_gt_segments().items())):
        image_id = idx + 1
        ids = np.zeros((PAN_H, PAN_W), dtype=np.int64)
        sem = np.full((PAN_H, PAN_W), 255, dtype=np.uint8)
        infos = []
        for seg_id, cat, mask in segments:
            ids[mask] = seg_id
            sem[mask] = contiguous[cat]
            infos.append({"id": seg_id, "category_id": cat, "iscrowd": 0, "area": int(mask.sum())})
            if cat == PERSON:
                instance_anns.append((image_id, cat, mask))
        Image.fromarray(id2rgb(ids)).save(os.path.join(pan_dir, name + ".png"))
        sem_path = write_label_png(os.path.join(sem_dir, name + ".png"), sem)
        images.append({"id": image_id, "file_name": name + ".jpg", "height": PAN_H, "width": PAN_W})
        annotations.append({"image_id": image_id, "file_name": name + ".png", "segments_info": infos})
        inputs.append(
            {
                "file_name": os.path.join(root, "images", name + ".jpg"),
                "image_id": image_id,
                "height": PAN_H,
                "width": PAN_W,
                "sem_seg_file_name": sem_path,
                "pan_seg_file_name": os.path.join(pan_dir, name + ".png"),
                # Detectron2 dataset dicts carry contiguous ids in segments_info.
                "segments_info": [dict(s, category_id=contiguous[s["category_id"]]) for s in infos],
            }
        )
    categories = [
        {"id": PERSON, "name": "person", "isthing": 1},
        {"id": GRASS, "name": "grass", "isthing": 0},
    ]
    pan_json = os.path.join(root, "panoptic.json")
    with open(pan_json, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    inst_json = write_coco_json(
        os.path.join(root, "instances.json"), images, [{"id": PERSON, "name": "person"}], instance_anns
    )
    metadata = SimpleNamespace(
        name="tiny_panoptic",
        evaluator_type="ade20k_panoptic_seg",
        stuff_classes=["person", "grass"],
        thing_classes=["person", "grass"],
        thing_dataset_id_to_contiguous_id={PERSON: 0},
        stuff_dataset_id_to_contiguous_id={PERSON: 0, GRASS: 1},
        ignore_label=255,
        panoptic_json=pan_json,
        panoptic_root=pan_dir,
        json_file=inst_json,
        seen_classes=[True, False],
    )
    return SimpleNamespace(metadata=metadata, inputs=inputs)


def perfect_outputs(dataset: SimpleNamespace) -> list[dict]:
    """Model outputs that reproduce the ground truth of :func:`build_panoptic_dataset` exactly."""
    outputs = []
    segs = panoptic_gt_segments()
    for inp in dataset.inputs:
        name = os.path.splitext(os.path.basename(inp["file_name"]))[0]
        segments = segs[name]
        ids = torch.zeros((PAN_H, PAN_W), dtype=torch.int32)
        sem = np.zeros((PAN_H, PAN_W), dtype=np.int64)
        infos, masks, classes = [], [], []
        for seg_id, cat, mask in segments:
            c = 0 if cat == PERSON else 1
            ids[torch.from_numpy(mask)] = seg_id
            sem[mask] = c
            infos.append({"id": seg_id, "category_id": c, "isthing": cat == PERSON})
            if cat == PERSON:
                masks.append(mask)
                classes.append(0)
        outputs.append(
            {
                "sem_seg": one_hot_scores(sem, 2),
                "panoptic_seg": (ids, infos),
                "instances": make_instances(masks, classes, [0.9] * len(masks)),
                "proposals": torch.as_tensor(np.stack([m for _, _, m in segments])),
            }
        )
    return outputs
