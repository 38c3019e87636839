"""OVSeg's proposal-to-CLIP-input preprocessing (docs/models/ovseg.md §2.8, quirk 5).

Each proposal whose binarised mask is not empty is cropped from the resized, unpadded input
image at its tight bounding box (optionally scaled about its centre), background pixels are
replaced by a fill colour *in 0..255 units* (255 x CLIP mean, so that they become exactly 0
after CLIP normalisation), the crop is CLIP-normalised and squashed to the CLIP input size
(bicubic; masks nearest), aspect ratio not preserved.

Fast path (``fast=True``; ``MODEL.FAST_INFERENCE`` through the adapter), for binary blends (no
matting): the image is normalised once, each crop is one ``torch.where`` of the normalised image
and the normalised fill, and both are resized straight into preallocated outputs. For a blend
mask m in {0, 1} and finite pixels, ``image·m + (1 - m)·fill`` *is* ``where(m, image, fill)``
(x·1 + 0 = x, x·0 + fill = fill) and the same per-element normalisation runs on the same values,
so the crops, their masks and the unnormalised crops are bit-identical to the reference loop
(``tests/modeling/ovseg/test_clip_fast_path.py``); matting runs the reference loop.

Provenance: ``MaskFormerClipAdapter._preprocess_image`` / ``crop_with_mask`` of the OVSeg
release (Liang et al., CVPR 2023). Independent implementation.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch.nn import functional as F

__all__ = [
    "CLIP_PIXEL_MEAN",
    "CLIP_PIXEL_STD",
    "ClipRegions",
    "mask_fill_color",
    "masks_to_boxes_exclusive",
    "expand_box",
    "crop_with_mask",
    "prepare_clip_regions",
]

#: OpenAI CLIP normalisation statistics, RGB, in 0..1 units (multiply by 255 for 0..255 images).
CLIP_PIXEL_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


class ClipRegions(NamedTuple):
    """CLIP inputs of the valid proposals (N of the Q queries)."""

    regions: torch.Tensor  # (N, 3, S, S) CLIP-normalised crops (background exactly 0 with "mean")
    region_masks: torch.Tensor  # (N, 1, S, S) blend masks of the crops (0/1 without matting)
    unnorm_regions: torch.Tensor | None  # (N, 3, S, S) the same crops in 0..255 units (None: not asked for)
    valid: torch.Tensor  # (Q,) bool, True where the binarised mask has a foreground pixel


def mask_fill_color(mask_fill: str) -> tuple[float, float, float]:
    """Background fill in 0..255 RGB units: "mean" -> 255 x CLIP mean, "zero" -> 0."""
    if mask_fill == "mean":
        return tuple(255.0 * c for c in CLIP_PIXEL_MEAN)
    if mask_fill == "zero":
        return (0.0, 0.0, 0.0)
    raise ValueError(f"Unknown MODEL.CLIP_ADAPTER.MASK_FILL {mask_fill!r}; use 'mean' or 'zero'.")


def masks_to_boxes_exclusive(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks with exclusive ends (Detectron2 ``BitMasks.get_bounding_boxes``).

    Args:
        masks: (N, H, W) bool.
    Returns:
        (N, 4) float32 ``[x0, y0, x1 + 1, y1 + 1]`` in pixels; an empty mask gives zeros.
    """
    cols = masks.any(dim=1).int()  # (N, W)
    rows = masks.any(dim=2).int()  # (N, H)
    x0, x1 = cols.argmax(dim=1), cols.shape[1] - cols.flip(1).argmax(dim=1)  # first max index
    y0, y1 = rows.argmax(dim=1), rows.shape[1] - rows.flip(1).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    boxes[~masks.flatten(1).any(dim=1)] = 0
    return boxes


def expand_box(box: Sequence[float], expand_ratio: float) -> tuple[int, int, int, int]:
    """Scale a box ``(x0, y0, x1, y1)`` about its centre by ``expand_ratio`` and truncate the
    corners toward zero (``int()``), as the release does; not clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    w, h = (x1 - x0) * expand_ratio, (y1 - y0) * expand_ratio
    return int(cx - 0.5 * w), int(cy - 0.5 * h), int(cx + 0.5 * w), int(cy + 0.5 * h)


def crop_with_mask(
    image: torch.Tensor,
    mask: torch.Tensor,
    box: Sequence[float],
    fill: Sequence[float],
    expand_ratio: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``image`` at the (expanded, image-clipped) box and replace the background by ``fill``.

    Args:
        image: (3, H, W) float, 0..255.
        mask: (H, W) float blend mask in [0, 1] (binary without matting).
        box: ``(x0, y0, x1, y1)`` exclusive-end pixel box.
        fill: 3 background values in the image's units.
        expand_ratio: box scale about its centre.
    Returns:
        region (3, h, w) = ``image * mask + (1 - mask) * fill`` inside the box, and its mask
        (1, h, w).
    """
    left, top, right, bottom = expand_box(box, expand_ratio)
    _, height, width = image.shape
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, width), min(bottom, height)
    crop_mask = mask[None, top:bottom, left:right]
    background = torch.tensor(fill, dtype=image.dtype, device=image.device)[:, None, None]
    region = image[:, top:bottom, left:right] * crop_mask + (1 - crop_mask) * background
    return region, crop_mask


def prepare_clip_regions(
    image: torch.Tensor,
    mask_probs: torch.Tensor,
    *,
    mask_thr: float,
    fill: Sequence[float],
    expand_ratio: float = 1.0,
    mask_matting: bool = False,
    size: int = 224,
    pixel_mean: Sequence[float] = tuple(255.0 * c for c in CLIP_PIXEL_MEAN),
    pixel_std: Sequence[float] = tuple(255.0 * c for c in CLIP_PIXEL_STD),
    fast: bool = False,
    unnormalised: bool = True,
) -> ClipRegions:
    """CLIP inputs of the proposals with at least one pixel above ``mask_thr``.

    Args:
        image: (3, H, W) the resized, unpadded input image, RGB 0..255 (any dtype; cast to the
            dtype of ``mask_probs``).
        mask_probs: (Q, H, W) sigmoid mask probabilities at the image size.
        mask_thr: binarisation threshold (``> mask_thr``; 0.4 Swin-B, 0.5 R101c configs).
        fill: background colour in 0..255 units (see :func:`mask_fill_color`).
        expand_ratio: crop box scale about its centre (1.0 released).
        mask_matting: blend with the soft mask instead of the binary one (box from the binary).
        size: CLIP input side S.
        pixel_mean, pixel_std: CLIP normalisation in 0..255 units.
        fast: the fast path of the module docstring (same tensors, bit for bit); ignored with
            ``mask_matting``.
        unnormalised: also give ``unnorm_regions``; False (fast path only) leaves it None and
            does not compute it (CLIP reads the normalised crops only).
    Returns:
        :class:`ClipRegions`; with no valid proposal the tensors have N = 0 (docs/models/ovseg.md quirk 10, FIX).
    """
    if image.shape[-2:] != mask_probs.shape[-2:]:
        raise ValueError(
            f"The image {tuple(image.shape)} and the masks {tuple(mask_probs.shape)} must have the same "
            f"height and width; crop and upsample the masks to the unpadded image size first."
        )
    dtype = mask_probs.dtype
    bin_masks = mask_probs > mask_thr
    valid = bin_masks.flatten(1).any(dim=1)
    bin_masks = bin_masks[valid]
    image = image.to(dtype)
    mean = torch.tensor(pixel_mean, dtype=dtype, device=image.device)[None, :, None, None]
    std = torch.tensor(pixel_std, dtype=dtype, device=image.device)[None, :, None, None]
    if fast and not mask_matting:
        return _fast_regions(image, bin_masks, valid, fill, expand_ratio, size, mean, std, unnormalised)
    blend = mask_probs[valid] if mask_matting else bin_masks.to(dtype)
    regions, region_masks, unnorm = [], [], []
    for box, mask in zip(masks_to_boxes_exclusive(bin_masks), blend):
        region, region_mask = crop_with_mask(image, mask, box.tolist(), fill, expand_ratio)
        region, region_mask = region[None], region_mask[None]
        unnorm.append(F.interpolate(region, size=(size, size), mode="bicubic"))
        regions.append(F.interpolate((region - mean) / std, size=(size, size), mode="bicubic"))
        region_masks.append(F.interpolate(region_mask, size=(size, size), mode="nearest"))
    if not regions:
        empty = image.new_zeros(0, 3, size, size)
        return ClipRegions(empty, image.new_zeros(0, 1, size, size), empty.clone(), valid)
    return ClipRegions(torch.cat(regions), torch.cat(region_masks), torch.cat(unnorm), valid)


def _fast_regions(
    image: torch.Tensor,
    bin_masks: torch.Tensor,
    valid: torch.Tensor,
    fill: Sequence[float],
    expand_ratio: float,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    unnormalised: bool = True,
) -> ClipRegions:
    """The fast path of :func:`prepare_clip_regions` for binary blends (module docstring).

    Args:
        image: (3, H, W) float image, 0..255.
        bin_masks: (N, H, W) bool masks of the valid proposals.
        valid, fill, expand_ratio, size: as in :func:`prepare_clip_regions`.
        mean, std: (1, 3, 1, 1) CLIP normalisation in the image's dtype.
        unnormalised: also resize the unnormalised crops (else ``unnorm_regions`` is None).
    """
    num = bin_masks.shape[0]
    regions = image.new_empty(num, 3, size, size)
    region_masks = image.new_empty(num, 1, size, size)
    unnorm = image.new_empty(num, 3, size, size) if unnormalised else None
    if num == 0:
        return ClipRegions(regions, region_masks, unnorm, valid)
    background = torch.tensor(fill, dtype=image.dtype, device=image.device)[:, None, None]
    normalised = (image[None] - mean) / std  # once for the whole image; per element as the reference
    normalised_fill = (background[None] - mean) / std
    _, height, width = image.shape
    boxes = masks_to_boxes_exclusive(bin_masks).tolist()  # one device sync for all boxes
    for i, box in enumerate(boxes):
        left, top, right, bottom = expand_box(box, expand_ratio)
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, width), min(bottom, height)
        mask = bin_masks[i, None, None, top:bottom, left:right]  # (1, 1, h, w)
        crop = torch.where(mask, normalised[..., top:bottom, left:right], normalised_fill)
        regions[i] = F.interpolate(crop, size=(size, size), mode="bicubic")[0]
        if unnorm is not None:
            crop = torch.where(mask, image[None, :, top:bottom, left:right], background)
            unnorm[i] = F.interpolate(crop, size=(size, size), mode="bicubic")[0]
        region_masks[i] = F.interpolate(mask.to(image.dtype), size=(size, size), mode="nearest")[0]
    return ClipRegions(regions, region_masks, unnorm, valid)
