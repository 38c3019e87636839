"""Pixel decoders (deformable-attention encoder + FPN, and FrozenSeg's SAM branch)."""

from .base_pixel_decoder import BasePixelDecoder
from .ms_deform_attn import MSDeformAttn, ms_deform_attn_core_pytorch
from .msdeformattn import (
    FrozenSegPixelDecoder,
    MSDeformAttnTransformerEncoder,
    MSDeformAttnTransformerEncoderLayer,
    MSDeformAttnTransformerEncoderOnly,
)

__all__ = [
    "BasePixelDecoder",
    "MSDeformAttn",
    "ms_deform_attn_core_pytorch",
    "FrozenSegPixelDecoder",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderLayer",
    "MSDeformAttnTransformerEncoderOnly",
]
