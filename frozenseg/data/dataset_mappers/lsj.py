"""COCO panoptic / instance training mappers with large-scale jitter (Mask2Former's
``coco_panoptic_lsj`` and ``coco_instance_lsj``): random horizontal flip, resize by a random
scale in [MIN_SCALE, MAX_SCALE] of IMAGE_SIZE, random crop / pad to IMAGE_SIZE x IMAGE_SIZE."""

from __future__ import annotations

import copy
import logging

from torchvision import tv_tensors
from torchvision.transforms import v2

from .common import (
    as_sample,
    instances_from_panoptic,
    map_instance_dict,
    plain,
    pop_panoptic,
    read_image,
    semantic_from_panoptic,
)

__all__ = ["build_lsj_transform", "COCOPanopticLSJDatasetMapper", "COCOInstanceLSJDatasetMapper"]

logger = logging.getLogger(__name__)


def build_lsj_transform(image_size: int, min_scale: float, max_scale: float,
                        random_flip: str = "horizontal") -> v2.Transform:
    """Flip, scale jitter and a fixed-size crop with padding (image 128, label maps 0)."""
    ops: list[v2.Transform] = []
    if random_flip == "horizontal":
        ops.append(v2.RandomHorizontalFlip())
    elif random_flip == "vertical":
        ops.append(v2.RandomVerticalFlip())
    ops += [
        v2.ScaleJitter((image_size, image_size), scale_range=(min_scale, max_scale), antialias=True),
        v2.RandomCrop((image_size, image_size), pad_if_needed=True,
                      fill={tv_tensors.Image: 128, tv_tensors.Mask: 0}),
    ]
    return v2.Compose(ops)


class _LSJBase:
    def __init__(self, is_train: bool = True, *, image_size: int = 1024, min_scale: float = 0.1,
                 max_scale: float = 2.0, random_flip: str = "horizontal", image_format: str = "RGB",
                 ignore_label: int = 255):
        self.is_train = is_train
        self.transform = build_lsj_transform(image_size, min_scale, max_scale, random_flip)
        self.image_format = image_format
        self.ignore_label = ignore_label
        logger.info("%s: %s", type(self).__name__, self.transform)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return cls(is_train, image_size=cfg.INPUT.IMAGE_SIZE, min_scale=cfg.INPUT.MIN_SCALE,
                   max_scale=cfg.INPUT.MAX_SCALE, random_flip=cfg.INPUT.RANDOM_FLIP,
                   image_format=cfg.INPUT.FORMAT, ignore_label=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)


class COCOPanopticLSJDatasetMapper(_LSJBase):
    """Panoptic dataset dict -> ``image``, ``instances`` (one per non-crowd segment) and
    ``sem_seg`` (void / crowd / padding pixels = ignore label)."""

    def __call__(self, dataset_dict: dict) -> dict:
        d = copy.copy(dataset_dict)
        image = read_image(d["file_name"], self.image_format)
        pan, segments = pop_panoptic(d, tuple(image.shape[-2:]))
        out = self.transform(as_sample(image, pan=pan))  # padding -> id 0 = void
        image, pan = plain(out["image"]), plain(out["pan"])
        d["image"] = image
        d["instances"] = instances_from_panoptic(pan, segments)
        d["sem_seg"] = semantic_from_panoptic(pan, segments, self.ignore_label)
        return d


class COCOInstanceLSJDatasetMapper(_LSJBase):
    """Instance dataset dict (COCO polygons / RLE) -> ``image`` and ``instances``."""

    def __call__(self, dataset_dict: dict) -> dict:
        return map_instance_dict(dataset_dict, self.image_format, self.transform)
