"""A batch of differently sized images padded into one tensor."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F


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
        max_h = max(s[0] for s in sizes)
        max_w = max(s[1] for s in sizes)
        if size_divisibility > 1:
            d = size_divisibility
            max_h = (max_h + d - 1) // d * d
            max_w = (max_w + d - 1) // d * d
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
