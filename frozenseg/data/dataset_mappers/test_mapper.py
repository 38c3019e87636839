"""Test-time mapper: shortest-edge resize to MIN_SIZE_TEST, capped at MAX_SIZE_TEST, with a rule
for extreme aspect ratios (:meth:`TestDatasetMapper.input_size`)."""

from __future__ import annotations

import copy
import logging
import math

import torch
from torchvision.transforms import v2

from ...utils.errors import UserInputError
from ..sam_mask_cache import attach_sam_masks, dataset_cache_dir
from .common import read_image, shortest_edge_size

__all__ = ["TestDatasetMapper", "ImageSizeError", "MIN_SIDE"]

logger = logging.getLogger(__name__)

#: Shortest side (pixels) of a model input: the backbones' total stride, so the coarsest feature
#: map has at least one cell of image content (the input is zero padded to a multiple of it).
MIN_SIDE = 32


class ImageSizeError(UserInputError, ValueError):
    """An image is so elongated that no input within the pixel budget keeps its short side at
    the minimum (:meth:`TestDatasetMapper.input_size`)."""


class TestDatasetMapper:
    """Dataset dict -> ``image`` (resized uint8 (3, h, w)), ``height``/``width`` of the original
    image (the size predictions are returned at), and the dict's other fields (file names,
    ``image_id``, ground-truth file paths for evaluators); ``annotations`` are dropped.

    The input size (:meth:`input_size`) is Detectron2's ResizeShortestEdge: the short side
    becomes ``min_size`` and the long side at most ``max_size``. Extreme aspect ratios, where that
    cap would squeeze the short side below ``min(MIN_SIDE, min_size // 2)`` pixels (a 20000x30
    image to 0x256), are resized instead by the largest factor, up to ``min_size / short side``,
    that keeps the input within ``min_size * max_size`` pixels (the largest input of an ordinary
    image, so memory and time stay those of an ordinary image; the long side may then exceed
    ``max_size``). When even that leaves the short side below the minimum, the predictor
    refuses the image with :class:`ImageSizeError` (one sentence naming the image, its size and
    the fix); dataset evaluation (``__call__``) segments it anyway, at the largest size within
    the budget, with a warning, so that every image of the benchmark gets a prediction.
    """

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

    @property
    def min_side(self) -> int:
        """Shortest side (pixels) of an input: ``min(MIN_SIDE, min_size // 2)``, at least 1."""
        return max(1, min(MIN_SIDE, self.min_size // 2))

    def input_size(self, h: int, w: int, name: str = "", strict: bool = True) -> tuple[int, int]:
        """The (height, width) in pixels of the model input of an H x W image (see the class
        docstring for the rule). ``name`` names the image in messages. Raises
        :class:`ImageSizeError` when the short side cannot be kept at :attr:`min_side` within the
        pixel budget and ``strict``; otherwise returns the largest size within the budget whose
        long side leaves room for the padded short side (every side at least 1 pixel)."""
        size = shortest_edge_size(h, w, self.min_size, self.max_size)
        floor = self.min_side
        if min(size) >= floor or self.max_size <= 0:
            return size
        short, long = min(h, w), max(h, w)
        budget = self.min_size * self.max_size
        scale = min(self.min_size / short, math.sqrt(budget / (h * w)))
        if int(short * scale + 0.5) < floor:
            what = f"Image {name!r}" if name else "The image"
            if strict:
                raise ImageSizeError(
                    f"{what} ({w}x{h} pixels) is too elongated to segment: a {floor} px short side "
                    f"needs more than the {budget} input pixels allowed (INPUT.MIN_SIZE_TEST x "
                    f"INPUT.MAX_SIZE_TEST); crop it into pieces whose long side is at most "
                    f"{budget // (floor * floor)} times the short side, or raise INPUT.MAX_SIZE_TEST to "
                    f"{math.ceil(floor * floor * long / (short * self.min_size))}."
                )
            scale = min(scale, budget / (floor * long))
            logger.warning(
                "%s (%dx%d pixels) is too elongated for a %d px short side within %d input pixels; "
                "segmenting it at %dx%d, so its prediction is unreliable.", what, w, h, floor, budget,
                max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)),
            )
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))

    def resize(self, image: torch.Tensor, name: str = "", strict: bool = True) -> torch.Tensor:
        """Resize a uint8 (3, H, W) image to :meth:`input_size` (antialiased bilinear); returned
        as is when the size already fits. Shared by :meth:`__call__` and the predictor."""
        h, w = image.shape[-2:]
        size = self.input_size(int(h), int(w), name, strict)
        if tuple(size) != (h, w):
            image = v2.functional.resize(image, list(size), antialias=True)
        return image

    def __call__(self, dataset_dict: dict) -> dict:
        """Map one dataset dict for evaluation (never refuses an image: see the class docstring)."""
        d = copy.copy(dataset_dict)
        d.pop("annotations", None)
        image = read_image(d["file_name"], self.image_format)
        h, w = image.shape[-2:]
        d.setdefault("height", int(h))
        d.setdefault("width", int(w))
        d["image"] = self.resize(image, d["file_name"], strict=False)
        if self.sam_masks_dir is not None:
            attach_sam_masks(d, self.sam_masks_dir)
        return d
