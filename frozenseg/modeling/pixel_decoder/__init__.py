"""Pixel decoders registered in PIXEL_DECODER_REGISTRY: FrozenSeg's multi-scale deformable
encoder + FPN with its SAM branch, and MaskFormer-v1's ``BasePixelDecoder`` (OVSeg); the
pure-PyTorch multi-scale deformable attention. Not here: the transformer decoders.
"""

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
