"""Test-time mapper: shortest-edge resize to MIN_SIZE_TEST, capped at MAX_SIZE_TEST."""

from __future__ import annotations

import copy

import torch
from torchvision.transforms import v2

from ..sam_mask_cache import attach_sam_masks, dataset_cache_dir
from .common import read_image, shortest_edge_size

__all__ = ["TestDatasetMapper"]


class TestDatasetMapper:
    """Dataset dict -> ``image`` (resized uint8 (3, h, w)), ``height``/``width`` of the original
    image (the size predictions are returned at), and the dict's other fields (file names,
    ``image_id``, ground-truth file paths for evaluators); ``annotations`` are dropped."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        min_size: int = 800,
        max_size: int = 1333,
        image_format: str = "RGB",
        sam_masks_dir: str | None = None,
    ):
        """``sam_masks_dir``: the dataset's SAM proposal cache (``<TEST.SAM_MASKS_DIR>/<dataset>``);
        when set, each dict gets ``"sam_masks"`` (M, h, w) proposal logits from it."""
        self.min_size, self.max_size, self.image_format = int(min_size), int(max_size), image_format
        self.sam_masks_dir = sam_masks_dir

    @classmethod
    def from_config(cls, cfg, is_train: bool = False, dataset_name: str | None = None):
        sam_dir = None
        if cfg.TEST.USE_SAM_MASKS:
            if not dataset_name:
                raise ValueError("TEST.USE_SAM_MASKS needs the dataset name to find its SAM proposal cache.")
            sam_dir = dataset_cache_dir(cfg.TEST.SAM_MASKS_DIR, dataset_name)
        return cls(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.FORMAT, sam_dir)

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """Resize a uint8 (3, H, W) image so its short edge is ``min_size`` and its long edge at
        most ``max_size`` (Detectron2's ResizeShortestEdge; antialiased bilinear); returned as
        is when the size already fits. Shared by :meth:`__call__` and the predictor."""
        h, w = image.shape[-2:]
        size = shortest_edge_size(h, w, self.min_size, self.max_size)
        if tuple(size) != (h, w):
            image = v2.functional.resize(image, list(size), antialias=True)
        return image

    def __call__(self, dataset_dict: dict) -> dict:
        d = copy.copy(dataset_dict)
        d.pop("annotations", None)
        image = read_image(d["file_name"], self.image_format)
        h, w = image.shape[-2:]
        d.setdefault("height", int(h))
        d.setdefault("width", int(w))
        d["image"] = self.resize(image)
        if self.sam_masks_dir is not None:
            attach_sam_masks(d, self.sam_masks_dir)
        return d
