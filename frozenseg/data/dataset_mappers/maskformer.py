"""MaskFormer-style training mappers (semantic, panoptic, instance): shortest-edge resize to a
size from MIN_SIZE_TRAIN (capped at MAX_SIZE_TRAIN), category-area-constrained random crop,
optional SSD colour augmentation (:class:`ColorAugSSD`), random flip, padding to
SIZE_DIVISIBILITY (image 128, label maps ignore). ``mask_former_semantic`` is the mapper of
MaskFormer / OVSeg semantic training (docs/models/ovseg.md §3.A), in the same order.

Randomness: a mapper built with a ``seed`` draws from its own generator; without one (the
training loader), every sample draws from a generator seeded from NumPy's global RNG, and the
flip from torch's, which the training stream reseeds per sample
(:class:`frozenseg.data.build.TrainingStream`): a resumed run maps its images exactly as an
uninterrupted one.
"""

from __future__ import annotations

import copy
import logging

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ...utils.image_io import check_label_ids
from .common import (
    as_sample,
    instances_from_panoptic,
    instances_from_sem_seg,
    map_instance_dict,
    pad_to_divisibility,
    plain,
    pop_panoptic,
    read_image,
    read_label_map,
    resize_shortest_edge,
    semantic_from_panoptic,
)

__all__ = [
    "ColorAugSSD",
    "category_area_crop_box",
    "MaskFormerSemanticDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerInstanceDatasetMapper",
]

logger = logging.getLogger(__name__)


def category_area_crop_box(sem: torch.Tensor | None, crop_hw: tuple[int, int],
                           single_category_max_area: float, ignore: int,
                           rng: np.random.Generator, tries: int = 10) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop in which no single category covers more than
    ``single_category_max_area`` of the labelled pixels (Detectron2's
    RandomCrop_CategoryAreaConstraint; the last try is used when none qualifies)."""
    H, W = (sem.shape if sem is not None else (0, 0))
    ch, cw = min(crop_hw[0], H), min(crop_hw[1], W)
    top = left = 0
    for _ in range(tries):
        top = int(rng.integers(0, H - ch + 1))
        left = int(rng.integers(0, W - cw + 1))
        if sem is None or single_category_max_area >= 1.0:
            break
        patch = sem[top: top + ch, left: left + cw]
        _, cnt = torch.unique(patch[patch != ignore], return_counts=True)
        if len(cnt) > 1 and cnt.max().item() < single_category_max_area * cnt.sum().item():
            break
    return top, left, ch, cw


class ColorAugSSD:
    """SSD's photometric distortion, as MaskFormer / OVSeg training applies it
    (``INPUT.COLOR_AUG_SSD``; Detectron2's PointRend ``ColorAugSSDTransform``, docs/models/ovseg.md §3.A).

    On the uint8 image, each step taken with probability 1/2: brightness (add a uniform value in
    [-``brightness_delta``, ``brightness_delta``]), then in a random one of the two orders either
    contrast, saturation, hue or saturation, hue, contrast. Contrast multiplies the pixel values,
    saturation the HSV saturation, by a uniform factor in the given range; hue shifts OpenCV's
    8-bit hue (0..179, 2 degrees per unit) by a uniform integer in [-``hue_delta``, ``hue_delta``],
    cyclically. Every value step is computed in float, clipped to [0, 255] and truncated to uint8.
    """

    def __init__(self, image_format: str = "RGB", brightness_delta: float = 32.0,
                 contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18):
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"ColorAugSSD needs an RGB or BGR image format, got {image_format!r}.")
        self.to_hsv, self.from_hsv = ((cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if image_format == "RGB"
                                      else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR))
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = tuple(float(v) for v in contrast_range)
        self.saturation_range = tuple(float(v) for v in saturation_range)
        self.hue_delta = int(hue_delta)

    @staticmethod
    def _scale(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _hsv_step(self, img: np.ndarray, rng: np.random.Generator, channel: int) -> np.ndarray:
        hsv = cv2.cvtColor(img, self.to_hsv)
        if channel == 1:
            hsv[:, :, 1] = self._scale(hsv[:, :, 1], alpha=rng.uniform(*self.saturation_range))
        else:
            shift = int(rng.integers(-self.hue_delta, self.hue_delta + 1))
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + shift) % 180
        return cv2.cvtColor(hsv, self.from_hsv)

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, H, W) uint8, the random steps drawn from ``rng``."""
        img = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        if rng.integers(2):
            img = self._scale(img, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = bool(rng.integers(2))
        if contrast_first and rng.integers(2):
            img = self._scale(img, alpha=rng.uniform(*self.contrast_range))
        for channel in (1, 0):  # saturation, then hue
            if rng.integers(2):
                img = self._hsv_step(img, rng, channel)
        if not contrast_first and rng.integers(2):
            img = self._scale(img, alpha=rng.uniform(*self.contrast_range))
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


class _MaskFormerBase:
    def __init__(self, is_train: bool = True, *, min_size_train=(800,), min_size_sampling="choice",
                 max_size_train: int = 1333, crop_enabled: bool = False, crop_size=(512, 512),
                 single_category_max_area: float = 1.0, color_aug: bool = False,
                 random_flip: str = "horizontal", size_divisibility: int = -1,
                 image_format: str = "RGB", ignore_label: int = 255, seed: int | None = None):
        self.is_train = is_train
        self.min_sizes = tuple(int(s) for s in min_size_train)
        self.sampling = min_size_sampling
        self.max_size = int(max_size_train)
        self.crop_size = tuple(int(s) for s in crop_size) if crop_enabled else None
        self.single_category_max_area = single_category_max_area
        self.color_aug = ColorAugSSD(image_format) if color_aug else None
        self.flip = {"horizontal": v2.RandomHorizontalFlip(), "vertical": v2.RandomVerticalFlip()}.get(random_flip)
        self.size_divisibility = size_divisibility
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.rng = np.random.default_rng(seed) if seed is not None else None

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return cls(
            is_train, min_size_train=cfg.INPUT.MIN_SIZE_TRAIN,
            min_size_sampling=cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING, max_size_train=cfg.INPUT.MAX_SIZE_TRAIN,
            crop_enabled=cfg.INPUT.CROP.ENABLED, crop_size=cfg.INPUT.CROP.SIZE,
            single_category_max_area=cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            color_aug=cfg.INPUT.COLOR_AUG_SSD, random_flip=cfg.INPUT.RANDOM_FLIP,
            size_divisibility=cfg.INPUT.SIZE_DIVISIBILITY, image_format=cfg.INPUT.FORMAT,
            ignore_label=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        )

    def _sample_rng(self) -> np.random.Generator:
        """The mapper's own generator (``seed`` given), else one seeded from NumPy's global RNG."""
        if self.rng is not None:
            return self.rng
        return np.random.default_rng(np.random.randint(2**63 - 1, dtype=np.int64))

    def _short_edge(self, rng: np.random.Generator) -> int:
        if self.sampling == "range":
            return int(rng.integers(self.min_sizes[0], self.min_sizes[-1] + 1))
        return int(rng.choice(self.min_sizes))

    def augment(self, sample: dict, sem_key: str | None) -> dict:
        """Resize, constrained crop, colour, flip, pad; ``sem_key`` names the map that drives
        the category-area constraint."""
        rng = self._sample_rng()
        sample = resize_shortest_edge(sample, self._short_edge(rng), self.max_size)
        if self.crop_size is not None:
            sem = plain(sample[sem_key]) if sem_key else None
            if sem is None:
                sem = torch.zeros(sample["image"].shape[-2:], dtype=torch.int64)
            top, left, h, w = category_area_crop_box(sem, self.crop_size, self.single_category_max_area,
                                                     self.ignore_label, rng)
            sample = {k: TF.crop(v, top, left, h, w) for k, v in sample.items()}
        if self.color_aug is not None:
            sample["image"] = tv_tensors.Image(self.color_aug(plain(sample["image"]), rng))
        if self.flip is not None:
            sample = self.flip(sample)
        return pad_to_divisibility(sample, self.size_divisibility,
                                   {"sem": self.ignore_label, "pan": 0, "masks": 0})


class MaskFormerSemanticDatasetMapper(_MaskFormerBase):
    """Semantic dataset dict -> ``image``, ``sem_seg`` and one instance per present class (a dict
    with ``sem_seg_num_classes`` K has its label map checked to hold only 0..K-1 and the ignore
    label, :func:`~frozenseg.utils.image_io.check_label_ids`)."""

    def __call__(self, dataset_dict: dict) -> dict:
        d = copy.copy(dataset_dict)
        image = read_image(d["file_name"], self.image_format)
        label_file = d.pop("sem_seg_file_name")
        sem = read_label_map(label_file, tuple(image.shape[-2:]))
        num_classes = d.pop("sem_seg_num_classes", None)
        if num_classes is not None:
            check_label_ids(sem.numpy(), label_file, int(num_classes), self.ignore_label)
        out = self.augment(as_sample(image, sem=sem), "sem")
        d["image"], d["sem_seg"] = plain(out["image"]), plain(out["sem"]).long()
        d["instances"] = instances_from_sem_seg(d["sem_seg"], self.ignore_label)
        return d


class MaskFormerPanopticDatasetMapper(_MaskFormerBase):
    """Panoptic dataset dict -> ``image``, ``sem_seg`` and one instance per non-crowd segment."""

    def __call__(self, dataset_dict: dict) -> dict:
        d = copy.copy(dataset_dict)
        image = read_image(d["file_name"], self.image_format)
        pan, segments = pop_panoptic(d, tuple(image.shape[-2:]))
        sem = semantic_from_panoptic(pan, segments, self.ignore_label)
        out = self.augment(as_sample(image, pan=pan, sem=sem), "sem")
        pan = plain(out["pan"])
        d["image"], d["sem_seg"] = plain(out["image"]), plain(out["sem"]).long()
        d["instances"] = instances_from_panoptic(pan, segments)
        return d


class MaskFormerInstanceDatasetMapper(_MaskFormerBase):
    """Instance dataset dict (COCO polygons / RLE) -> ``image`` and ``instances``."""

    def __call__(self, dataset_dict: dict) -> dict:
        return map_instance_dict(dataset_dict, self.image_format, lambda sample: self.augment(sample, None))
