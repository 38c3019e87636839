"""Test-time augmentation for semantic segmentation (``TEST.AUG.*``), as Mask2Former's
``SemanticSegmentorWithTTA``: every image is run at each shortest-edge size of
``TEST.AUG.MIN_SIZES`` (longest edge capped at ``TEST.AUG.MAX_SIZE``; elongated images follow
:meth:`TestDatasetMapper.input_size`), and horizontally flipped
too when ``TEST.AUG.FLIP``; the per-class semantic scores, all returned at the original image
size, are averaged. Only semantic output is returned (panoptic/instance outputs are switched off
during TTA): ``"sem_seg_scores"``, the average computed a few classes at a time, and with
``full_semantic_map`` the (K, H, W) ``"sem_seg"`` tensor too.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn
from torch.nn import functional as F

from ..data.dataset_mappers.test_mapper import TestDatasetMapper
from ..modeling.contract import SegmentationModel
from ..structures.semantic import SemanticScores, semantic_scores

__all__ = ["SemanticSegmentorWithTTA"]

logger = logging.getLogger(__name__)

def _resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    dtype = image.dtype
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    if dtype == torch.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    return out


class SemanticSegmentorWithTTA(SegmentationModel):
    """Wrap a model (a :class:`~frozenseg.modeling.contract.SegmentationModel`, unwrapped from
    DDP) for flip + multi-scale semantic inference; the wrapper is a semantic-only model."""

    def __init__(self, cfg, model: nn.Module, min_sizes=None, max_size: int | None = None,
                 flip: bool | None = None):
        super().__init__()
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.model = model
        self.min_sizes = [int(s) for s in (cfg.TEST.AUG.MIN_SIZES if min_sizes is None else min_sizes)]
        self.max_size = int(cfg.TEST.AUG.MAX_SIZE if max_size is None else max_size)
        self.flip = bool(cfg.TEST.AUG.FLIP if flip is None else flip)
        if not self.min_sizes:
            raise ValueError("TEST.AUG.MIN_SIZES is empty.")

    @property
    def tasks(self) -> tuple[str, ...]:
        """What the wrapper outputs: the semantic scores only."""
        return ("semantic",)

    def set_vocabulary(self, class_names, thing_classes=None) -> None:
        """The wrapped model's :meth:`~frozenseg.modeling.contract.SegmentationModel.set_vocabulary`."""
        self.model.set_vocabulary(class_names, thing_classes)

    @contextlib.contextmanager
    def _semantic_only(self):
        saved, saved_full = self.model.tasks, self.model.full_semantic_map
        try:
            self.model.set_tasks(("semantic",))
            self.model.full_semantic_map = False
            yield
        finally:
            self.model.set_tasks(saved)
            self.model.full_semantic_map = saved_full

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        with self._semantic_only():
            results = []
            for x in batched_inputs:
                scores = self._inference_one(x)
                results.append({"sem_seg_scores": scores})
                if self.full_semantic_map:
                    results[-1]["sem_seg"] = scores.full()
            return results

    def _inference_one(self, x: dict) -> SemanticScores:
        """The average of the augmentations' scores: each class's map is the sum, in
        augmentation order, of its (flipped back) maps, divided by their number."""
        image = x["image"]
        h = int(x.get("height", image.shape[-2]))
        w = int(x.get("width", image.shape[-1]))
        original = _resize_image(image, (h, w))  # undo the test mapper's resize first
        sam = x.get("sam_masks")
        parts: list[tuple[SemanticScores, bool]] = []  # (scores, flipped)
        for min_size in self.min_sizes:
            # the test mapper's size rule at this scale (elongated images are kept segmentable)
            size = TestDatasetMapper(min_size, self.max_size).input_size(h, w, strict=False)
            img = _resize_image(original, size)
            extra = {k: v for k, v in x.items() if k not in ("image", "sam_masks", "height", "width")}
            base = {**extra, "image": img, "height": h, "width": w}
            if sam is not None:
                base["sam_masks"] = F.interpolate(sam[None].float(), size=size, mode="bilinear", align_corners=False)[0]
            batch = [base]
            if self.flip:
                flipped = {**base, "image": img.flip(-1)}
                if sam is not None:
                    flipped["sam_masks"] = base["sam_masks"].flip(-1)
                batch.append(flipped)
            outs = self.model(batch)
            parts.extend((semantic_scores(out), j == 1) for j, out in enumerate(outs))

        def compute(c0: int, c1: int) -> torch.Tensor:
            total = None
            for scores, flipped in parts:
                s = scores.compute(c0, c1).float()
                if flipped:
                    s = s.flip(-1)
                total = s if total is None else total + s
            return total / len(parts)

        first = parts[0][0]
        return SemanticScores(first.num_classes, (h, w), compute, device=first.device)
