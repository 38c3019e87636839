"""Dataset mappers (targets, ignore regions, sizes) and data loaders built from a config (the
training stream's order is tested in test_training_stream.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from frozenseg.config import get_cfg
from frozenseg.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from frozenseg.data.build import InferenceSampler
from frozenseg.data.dataset_mappers import (
    COCOInstanceLSJDatasetMapper,
    COCOPanopticLSJDatasetMapper,
    MaskFormerInstanceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    TestDatasetMapper,
    build_dataset_mapper,
    category_area_crop_box,
    read_label_map,
    shortest_edge_size,
)

from ..conftest import REPO_ROOT


def _check_targets(out, ignore=255):
    img, inst, sem = out["image"], out["instances"], out.get("sem_seg")
    assert img.dtype == torch.uint8 and img.ndim == 3 and img.shape[0] == 3
    H, W = img.shape[-2:]
    assert inst.image_size == (H, W)
    assert inst.gt_classes.dtype == torch.int64 and inst.gt_masks.dtype == torch.bool
    assert inst.gt_masks.shape[1:] == (H, W)
    assert inst.gt_masks.flatten(1).any(1).all()  # no empty targets
    if sem is not None:
        assert sem.dtype == torch.int64 and sem.shape == (H, W)
        for c, m in zip(inst.gt_classes, inst.gt_masks):
            assert torch.all(sem[m] == c)


def test_lsj_panoptic_mapper(synth_root):
    torch.manual_seed(0)
    d = DatasetCatalog.get("synthetic_shapes_train_panoptic")[0]
    m = COCOPanopticLSJDatasetMapper(True, image_size=96, min_scale=0.3, max_scale=0.5)
    out = m(d)
    _check_targets(out)
    assert out["image"].shape[-2:] == (96, 96)
    # the image is smaller than the crop: padding is ignore in sem_seg and 128 in the image
    pad = (out["image"] == 128).all(0)
    assert pad.any() and torch.all(out["sem_seg"][pad] == 255)
    assert "pan_seg_file_name" not in out and "segments_info" not in out


def test_lsj_instance_mapper_and_maskformer_instance(synth_root):
    d = DatasetCatalog.get("openvocab_coco_2017_val")[0]
    out = COCOInstanceLSJDatasetMapper(True, image_size=64, min_scale=1.0, max_scale=1.0, random_flip="none")(d)
    _check_targets(out)
    assert len(out["instances"]) >= 1
    assert set(out["instances"].gt_classes.tolist()) <= {a["category_id"] for a in d["annotations"]}
    out = MaskFormerInstanceDatasetMapper(True, min_size_train=(48,), max_size_train=100, size_divisibility=32)(d)
    _check_targets(out)
    assert out["image"].shape[-2] % 32 == 0 and out["image"].shape[-1] % 32 == 0


def test_maskformer_semantic_mapper_crop_and_ignore(synth_root):
    d = DatasetCatalog.get("openvocab_ade20k_sem_seg_val")[0]
    m = MaskFormerSemanticDatasetMapper(True, min_size_train=(64,), max_size_train=200, crop_enabled=True,
                                        crop_size=(40, 40), single_category_max_area=0.75, color_aug=True,
                                        seed=0)
    out = m(d)
    _check_targets(out)
    assert out["image"].shape[-2:] == (40, 40)
    assert 255 in read_label_map(d["sem_seg_file_name"]).unique().tolist()  # "other" pixels exist
    assert 255 not in out["instances"].gt_classes.tolist()


def test_maskformer_panoptic_mapper(synth_root):
    d = DatasetCatalog.get("openvocab_ade20k_panoptic_val")[0]
    out = MaskFormerPanopticDatasetMapper(True, min_size_train=(80,), max_size_train=200, size_divisibility=64)(d)
    _check_targets(out)
    H, W = out["image"].shape[-2:]
    assert H % 64 == 0 and W % 64 == 0


def test_category_area_crop_constraint():
    sem = torch.zeros(100, 100, dtype=torch.int64)
    sem[:, 90:] = 1
    top, left, h, w = category_area_crop_box(sem, (50, 50), 0.9, 255, np.random.default_rng(0), tries=100)
    patch = sem[top:top + h, left:left + w]
    assert (h, w) == (50, 50) and patch.unique().numel() == 2


@pytest.mark.parametrize("h,w,short,mx", [(480, 640, 800, 1333), (100, 1000, 800, 1333), (333, 500, 512, 2048)])
def test_shortest_edge_size_matches_detectron2(h, w, short, mx):
    scale = short / min(h, w)
    nh, nw = h * scale, w * scale
    if max(nh, nw) > mx:
        s = mx / max(nh, nw)
        nh, nw = nh * s, nw * s
    assert shortest_edge_size(h, w, short, mx) == (int(nh + 0.5), int(nw + 0.5))


def test_test_mapper(synth_root):
    d = DatasetCatalog.get("openvocab_cityscapes_fine_panoptic_val")[0]
    out = TestDatasetMapper(32, 48)(d)
    assert out["image"].shape[-2:] == (24, 48) and (out["height"], out["width"]) == (64, 128)
    assert out["pan_seg_file_name"] == d["pan_seg_file_name"]


def test_inference_sampler_shards():
    shards = [list(InferenceSampler(10, rank=r, world_size=3)) for r in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def _cfg(dataset, mapper="coco_panoptic_lsj"):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.INPUT.DATASET_MAPPER_NAME = mapper
    cfg.INPUT.IMAGE_SIZE = 64
    cfg.INPUT.MIN_SIZE_TRAIN = (48,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 0
    return cfg


@pytest.mark.parametrize("dataset,mapper", [
    ("synthetic_shapes_train_panoptic", "coco_panoptic_lsj"),
    ("synthetic_shapes_train_sem_seg", "mask_former_semantic"),
    ("openvocab_ade20k_instance_train", "coco_instance_lsj"),
])
def test_train_loader_from_config(synth_root, dataset, mapper):
    cfg = _cfg(dataset, mapper)
    batches = list(itertools.islice(iter(build_detection_train_loader(cfg)), 4))  # infinite: > 3 images
    assert all(len(b) == 2 for b in batches)
    for b in batches:
        for x in b:
            _check_targets(x)


def test_train_loader_workers_and_no_grouping(synth_root):
    cfg = _cfg("synthetic_shapes_train_panoptic")
    cfg.DATALOADER.NUM_WORKERS = 2
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    loader = build_detection_train_loader(cfg)
    batches = list(itertools.islice(iter(loader), 3))
    assert all(len(b) == 2 and b[0]["image"].shape == (3, 64, 64) for b in batches)


def test_test_loader_order(synth_root):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.DATALOADER.NUM_WORKERS = 32, 64, 0
    dicts = DatasetCatalog.get("openvocab_coco_2017_val_panoptic_with_sem_seg")
    got = [b[0]["file_name"] for b in build_detection_test_loader(cfg, "openvocab_coco_2017_val_panoptic_with_sem_seg")]
    assert got == [d["file_name"] for d in dicts]
    assert isinstance(build_dataset_mapper(cfg, is_train=False), TestDatasetMapper)


class _ScriptedRng:
    """A stand-in for ``np.random.Generator`` that returns scripted draws, in order."""

    def __init__(self, integers, uniforms=()):
        self._ints, self._floats = list(integers), list(uniforms)

    def integers(self, low, high=None):
        value = self._ints.pop(0)
        lo, hi = (0, low) if high is None else (low, high)
        assert lo <= value < hi
        return value

    def uniform(self, low, high):
        value = self._floats.pop(0)
        assert low <= value <= high
        return value


def _solid(rgb, h=2, w=3):
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).contiguous()


def test_color_aug_ssd_steps_on_hand_made_pixels():
    """The release's SSD colour steps (docs/models/ovseg.md §3.A), each on a solid image: brightness adds
    and truncates, contrast multiplies and clips, hue shifts OpenCV's 2-degree hue units
    cyclically, saturation scales HSV saturation; the draw order decides contrast's position."""
    from frozenseg.data.dataset_mappers.maskformer import ColorAugSSD

    aug = ColorAugSSD("RGB")
    # brightness +10.7 (-> 110, 60, 210 after truncation), contrast first, contrast x1.5 (clipped)
    out = aug(_solid((100, 50, 200)), _ScriptedRng([1, 1, 1, 0, 0], [10.7, 1.5]))
    assert out.dtype == torch.uint8 and torch.equal(out, _solid((165, 90, 255)))
    # hue +18 units (36 degrees) on pure red: (255, 153, 0); contrast last, not taken
    out = aug(_solid((255, 0, 0)), _ScriptedRng([0, 0, 0, 1, 18, 0]))
    assert torch.equal(out, _solid((255, 153, 0)))
    # saturation x0.5: S = 255 * (200 - 50) / 200 = 191 -> 95 (truncated); the value (max
    # channel, 200) is kept and the min channel becomes 200 * (1 - 95 / 255) = 125.5
    out = aug(_solid((200, 100, 50)), _ScriptedRng([0, 0, 1, 0, 0], [0.5]))
    assert out[0, 0, 0].item() == 200 and abs(out[2, 0, 0].item() - 125.5) <= 1
    # BGR images: the same colour steps on the swapped channels
    bgr = ColorAugSSD("BGR")(_solid((0, 0, 255)), _ScriptedRng([0, 0, 0, 1, 18, 0]))
    assert torch.equal(bgr, _solid((0, 153, 255)))


def test_ovseg_training_mapper_pads_and_reproduces_from_the_global_rng(synth_root):
    """mask_former_semantic with the OVSeg shapes config: resize, 128 crop, SSD colour, flip,
    padding to 128 with image 128 and label 255 (docs/models/ovseg.md §3.A); without its own seed the
    mapper draws from the global RNGs, so the training stream's per-sample reseeding (used for
    exact resume) reproduces every sample."""
    from frozenseg.utils.rng import seed_all_rng

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs" / "synthetic" / "ovseg_tiny_shapes.yaml"))
    cfg.INPUT.MIN_SIZE_TRAIN = (96,)
    mapper = build_dataset_mapper(cfg, is_train=True)
    assert isinstance(mapper, MaskFormerSemanticDatasetMapper) and mapper.color_aug is not None
    d = DatasetCatalog.get("synthetic_shapes_train_sem_seg")[0]
    outs = []
    for _ in range(2):
        seed_all_rng(3)
        outs.append(mapper(d))
    a, b = outs
    _check_targets(a)
    assert a["image"].shape[-2:] == (128, 128) and torch.equal(a["image"], b["image"])
    assert torch.equal(a["sem_seg"], b["sem_seg"])
    pad = a["sem_seg"] == 255  # the resized image has a 96 px side: the rest is padding
    assert pad.any() and (a["image"][:, pad] == 128).all()
