"""Every released evaluation config, end to end on the synthetic raw datasets: the dataset of
``DATASETS.TEST`` is registered, loads after the real prepare scripts, has a vocabulary of the
right size, and ``build_evaluator`` picks the evaluators of the published metrics; outputs made
from the ground truth itself score 100 on each of those metrics."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from frozenseg.config import get_cfg
from frozenseg.data import DatasetCatalog, MetadataCatalog, dataset_vocabulary
from frozenseg.data.dataset_mappers import read_label_map, read_panoptic_ids
from frozenseg.evaluation import build_evaluator
from frozenseg.structures import Instances

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASED = sorted(glob.glob(os.path.join(REPO, "configs", "coco", "frozenseg", "*.yaml")))

# config -> {result task: published metric keys} (spec section 8)
PUBLISHED = {
    "convnext_large_eval_a847": {"sem_seg": ["mIoU"]},
    "convnext_large_eval_ade20k": {"sem_seg": ["mIoU"], "panoptic_seg": ["PQ"], "segm": ["AP"]},
    "convnext_large_eval_bdd_panop": {"panoptic_seg": ["PQ"]},
    "convnext_large_eval_bdd_sem": {"sem_seg": ["mIoU"]},
    # cityscapesScripts' names: "IoU" is the class mIoU, "AP" its instance AP
    "convnext_large_eval_cityscapes": {"sem_seg": ["IoU"], "panoptic_seg": ["PQ"], "segm": ["AP"]},
    "convnext_large_eval_coco": {"sem_seg": ["mIoU"], "panoptic_seg": ["PQ"], "segm": ["AP"]},
    "convnext_large_eval_lvis": {"segm": ["AP", "APr"]},
    "convnext_large_eval_mapillary_vistas": {"sem_seg": ["mIoU"], "panoptic_seg": ["PQ"]},
    "convnext_large_eval_pas21": {"sem_seg": ["mIoU"]},
    "convnext_large_eval_pc459": {"sem_seg": ["mIoU"]},
    "r50x64_eval_ade20k": {"sem_seg": ["mIoU"]},
}


def _one_hot(labels: np.ndarray, k: int) -> torch.Tensor:
    """``(K, H, W)`` scores whose argmax is ``labels`` (labels outside ``[0, K)`` become 0)."""
    labels = np.where((labels >= 0) & (labels < k), labels, 0)
    return torch.nn.functional.one_hot(torch.as_tensor(labels), k).permute(2, 0, 1).float()


def _annotation_mask(ann: dict, h: int, w: int) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        seg = mask_util.merge(mask_util.frPyObjects(seg, h, w))
    elif isinstance(seg.get("counts"), list):
        seg = mask_util.frPyObjects(seg, h, w)
    return mask_util.decode(seg).astype(bool)


def oracle_output(d: dict, meta, tasks: dict) -> dict:
    """The model output that reproduces the ground truth of dataset dict ``d``."""
    out: dict = {}
    masks, classes = [], []
    if "pan_seg_file_name" in d:
        ids = read_panoptic_ids(d["pan_seg_file_name"])
        h, w = ids.shape
        infos = [{"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]}
                 for s in d["segments_info"]]
        out["panoptic_seg"] = (ids, infos)
        for s in d["segments_info"]:
            if s["isthing"] and not s.get("iscrowd", 0):
                masks.append((ids == s["id"]).numpy())
                classes.append(s["category_id"])
        sem = np.full((h, w), -1, np.int64)
        for s in d["segments_info"]:
            sem[(ids == s["id"]).numpy()] = s["category_id"]
        out["sem_seg"] = _one_hot(sem, len(meta.stuff_classes))
    if "sem_seg_file_name" in d:
        out["sem_seg"] = _one_hot(read_label_map(d["sem_seg_file_name"]).numpy(), len(meta.stuff_classes))
    if "annotations" in d:
        h, w = d["height"], d["width"]
    for ann in d.get("annotations", []):
        if not ann.get("iscrowd", 0):
            masks.append(_annotation_mask(ann, h, w))
            classes.append(ann["category_id"])
    if "segm" in tasks:
        out["instances"] = Instances(
            (h, w), pred_masks=torch.as_tensor(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.bool),
            scores=torch.ones(len(masks)), pred_classes=torch.as_tensor(classes, dtype=torch.long))
    return out


def test_every_released_config_is_listed():
    assert sorted(os.path.splitext(os.path.basename(p))[0] for p in RELEASED) == sorted(PUBLISHED)


@pytest.mark.parametrize("config", RELEASED, ids=lambda p: os.path.splitext(os.path.basename(p))[0])
def test_released_benchmark_end_to_end(synth_root, tmp_path, config):
    cfg = get_cfg()
    cfg.merge_from_file(config)
    published = PUBLISHED[os.path.splitext(os.path.basename(config))[0]]
    for name in cfg.DATASETS.TEST:
        dicts = DatasetCatalog.get(name)
        meta = MetadataCatalog.get(name)
        classes = meta.thing_classes if meta.dataset_kind in ("instances", "lvis") else meta.stuff_classes
        assert len(dataset_vocabulary(name, cfg)) == len(classes) > 0
        evaluator = build_evaluator(cfg, name, str(tmp_path / name))
        evaluator.reset()
        for d in dicts:
            inp = {k: v for k, v in d.items() if k not in ("annotations", "segments_info")}
            evaluator.process([inp], [oracle_output(d, meta, published)])
        results = evaluator.evaluate()
        assert set(published) <= set(results), (name, sorted(results))
        for task, keys in published.items():
            for key in keys:
                assert results[task][key] == pytest.approx(100.0), (name, task, key, results[task])
