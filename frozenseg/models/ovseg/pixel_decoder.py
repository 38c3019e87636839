"""MaskFormer-v1's ``BasePixelDecoder``: a plain FPN over the backbone features (docs/models/ovseg.md §2.3).

Provenance: the FPN of MaskFormer (Cheng, Schwing, Kirillov, "Per-Pixel Classification is Not All
You Need for Semantic Segmentation", NeurIPS 2021), which OVSeg (Liang et al., CVPR 2023) uses
unchanged. Module names reproduce the released OVSeg checkpoints
(``sem_seg_head.pixel_decoder.{adapter_i, layer_i, mask_features}``). Independent implementation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.config.config import configurable
from frozenseg.layers import Conv2d, ShapeSpec, add_fpn_convs, c2_xavier_fill
from frozenseg.utils.registry import PIXEL_DECODER_REGISTRY

from ...modeling.heads import PixelDecoderOutput

__all__ = ["BasePixelDecoder"]


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
    """Top-down FPN: the coarsest feature goes through a 3x3 conv (``layer_{L}``); every finer
    feature l (fine to coarse numbered 1..L-1) through a 1x1 lateral conv (``adapter_l``), plus
    the nearest-upsampled coarser output, then a 3x3 conv (``layer_l``). Normed convs have no
    bias; output convs end with ReLU. ``mask_features``: 3x3 conv with bias, no norm.
    """

    @configurable
    def __init__(self, *, input_shape: dict[str, ShapeSpec], conv_dim: int, mask_dim: int, norm: str):
        """
        Args:
            input_shape: backbone features used (e.g. res2..res5), with channels and strides.
            conv_dim: FPN channels (``MODEL.SEM_SEG_HEAD.CONVS_DIM``, released 256).
            mask_dim: channels of the mask features (``MODEL.SEM_SEG_HEAD.MASK_DIM``, 256).
            norm: "GN" (GroupNorm, 32 groups; released) or "" (no norm, convs with bias).
        """
        super().__init__()
        if not input_shape:
            raise ValueError("BasePixelDecoder needs at least one input feature; check MODEL.SEM_SEG_HEAD.IN_FEATURES.")
        ordered = sorted(input_shape.items(), key=lambda kv: kv[1].stride)  # fine to coarse
        self.in_features = [name for name, _ in ordered]
        # plain lists, coarse to fine, referencing the registered adapter_i / layer_i modules
        self.lateral_convs, self.output_convs = add_fpn_convs(
            self, [shape.channels for _, shape in ordered], conv_dim, norm, coarsest_without_lateral=True
        )
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)
        c2_xavier_fill(self.mask_features)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """Constructor kwargs from ``MODEL.SEM_SEG_HEAD.{IN_FEATURES, CONVS_DIM, MASK_DIM, NORM}``."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
        }

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """
        Args:
            features: backbone maps by name, e.g. res2 (B, C2, H/4, W/4) .. res5 (B, C5, H/32, W/32).
        Returns:
            mask features (B, mask_dim, H/s, W/s), s = the finest input stride (4 when res2 is used).
        """
        y = None
        for name, lateral, output in zip(self.in_features[::-1], self.lateral_convs, self.output_convs):
            x = features[name]
            if lateral is None:
                y = output(x)
            else:
                cur = lateral(x)
                y = output(cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest"))
        return self.mask_features(y)

    def forward_features(self, features: dict[str, torch.Tensor]) -> PixelDecoderOutput:
        """The mask features (:meth:`forward`) as a :class:`PixelDecoderOutput`; the transformer
        decoder reads a raw backbone feature instead of multi-scale maps (MaskFormer-v1; the head's
        ``transformer_in_feature``), so ``multi_scale_features`` is empty."""
        return PixelDecoderOutput(self(features), [])
