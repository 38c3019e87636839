"""A batch of differently sized images padded into one tensor."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F


def padded_size(size: tuple[int, int], size_divisibility: int = 0) -> tuple[int, int]:
    """(H, W) in pixels rounded up to multiples of ``size_divisibility`` (as is when <= 1): the
    size ``ImageList.from_tensors`` pads an image of ``size`` to when it is alone in the batch."""
    h, w = int(size[0]), int(size[1])
    if size_divisibility > 1:
        d = size_divisibility
        h, w = (h + d - 1) // d * d, (w + d - 1) // d * d
    return h, w


def same_padded_size_groups(sizes: Sequence[tuple[int, int]], size_divisibility: int = 0) -> list[list[int]]:
    """Indices of ``sizes`` grouped by :func:`padded_size`, groups in order of first appearance,
    indices ascending: the images of one group pad to the same tensor together as alone, so a
    model run on each group gives every image the result it gets in a batch of one."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(padded_size(size, size_divisibility), []).append(i)
    return list(groups.values())


class ImageList:
    """Padded batch ``tensor`` (B, C, H_pad, W_pad) plus each image's (h, w) before padding."""

    def __init__(self, tensor: torch.Tensor, image_sizes: list[tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> "ImageList":
        """Pad (C, H_i, W_i) tensors at the bottom/right to a common size (a multiple of
        ``size_divisibility`` when > 0) and stack them."""
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image.")
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h, max_w = padded_size((max(s[0] for s in sizes), max(s[1] for s in sizes)), size_divisibility)
        batch = tensors[0].new_full((len(tensors), tensors[0].shape[0], max_h, max_w), pad_value)
        for i, t in enumerate(tensors):
            batch[i, :, : t.shape[-2], : t.shape[-1]].copy_(t)
        return ImageList(batch, sizes)

    def to(self, device: torch.device | str) -> "ImageList":
        return ImageList(self.tensor.to(device), self.image_sizes)


def pad_to_multiple(x: torch.Tensor, divisor: int, value: float = 0.0) -> torch.Tensor:
    """Pad (..., H, W) at the bottom/right so H and W are multiples of ``divisor``."""
    h, w = x.shape[-2:]
    ph = (divisor - h % divisor) % divisor
    pw = (divisor - w % divisor) % divisor
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), value=value)
