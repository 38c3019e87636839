"""What every meta-architecture does with its inputs: validate and convert an input image, turn
training annotations into padded mask targets, and check the training vocabulary."""

from __future__ import annotations

from typing import Sequence

import torch

from ..structures import ImageList
from ..utils.errors import ConfigValueError

__all__ = ["prepare_image", "normalized_batch", "prepare_targets", "checked_train_class_names"]


def prepare_image(x: dict, device: torch.device) -> torch.Tensor:
    """The ``"image"`` of one input dict as a float (3, H, W) RGB 0..255 tensor on ``device``.

    Grayscale (1, H, W) and (H, W) images are repeated to RGB, RGBA (4, H, W) loses its alpha.
    Raises ``TypeError`` / ``ValueError`` with the fix for a missing image, a 16/32-bit integer
    image, another layout or an empty side.
    """
    image = x.get("image") if isinstance(x, dict) else None
    if not isinstance(image, torch.Tensor):
        raise TypeError('Each input must be a dict with an "image" tensor of shape (3, H, W).')
    if image.dtype in (torch.int16, torch.int32, torch.uint16, torch.uint32, torch.int64):
        raise ValueError(
            f"Image tensor has dtype {image.dtype} (a 16/32-bit image?); convert it to 8-bit "
            "RGB (uint8 0..255 or float 0..255) first, e.g. with frozenseg.utils.image_io.read_image."
        )
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"Image must be (3, H, W) RGB; got shape {tuple(image.shape)}. Grayscale (1, H, W) "
            "and RGBA (4, H, W) are converted; other layouts must be converted to RGB first."
        )
    if image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"Image has an empty side: shape {tuple(image.shape)}.")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    elif image.shape[0] == 4:
        image = image[:3]
    return image.to(device, non_blocking=True).float()


def normalized_batch(
    images: Sequence[torch.Tensor], pixel_mean: torch.Tensor, pixel_std: torch.Tensor, size_divisibility: int
) -> ImageList:
    """(3, H_i, W_i) float RGB 0..255 images normalised with ``pixel_mean`` / ``pixel_std``
    ((3, 1, 1) each) and zero-padded at the bottom/right into one batch whose sides are multiples
    of ``size_divisibility``."""
    return ImageList.from_tensors([(img - pixel_mean) / pixel_std for img in images], size_divisibility)


def prepare_targets(batched_inputs: list[dict], padded_size: tuple[int, int], device: torch.device) -> list[dict]:
    """Per image ``labels`` (N,) int64 and ``masks`` (N, H_pad, W_pad) zero-padded at the
    bottom/right to ``padded_size``, from the inputs' ``"instances"`` (``gt_classes`` (N,),
    ``gt_masks`` (N, H, W))."""
    h_pad, w_pad = padded_size
    targets = []
    for x in batched_inputs:
        if "instances" not in x:
            raise ValueError('Training inputs need "instances" with gt_classes and gt_masks.')
        inst = x["instances"]
        masks = inst.gt_masks.to(device)
        padded = masks.new_zeros((masks.shape[0], h_pad, w_pad))
        padded[:, : masks.shape[1], : masks.shape[2]] = masks
        targets.append({"labels": inst.gt_classes.to(device), "masks": padded})
    return targets


def checked_train_class_names(train_class_names: list[str] | None, num_classes: int) -> list[str] | None:
    """A copy of the training vocabulary (None stays None), which must have ``num_classes``
    (``MODEL.SEM_SEG_HEAD.NUM_CLASSES``) classes; a :class:`~frozenseg.utils.errors.ConfigValueError`
    (a ``ValueError``) naming the value to set otherwise."""
    names = list(train_class_names) if train_class_names else None
    if names is not None and len(names) != num_classes:
        raise ConfigValueError(
            f"The training vocabulary has {len(names)} classes but "
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {num_classes}; set MODEL.SEM_SEG_HEAD.NUM_CLASSES {len(names)}."
        )
    return names
