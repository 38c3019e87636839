"""Small building blocks shared by the model components: ``Conv2d`` with norm/activation
children (Detectron2 key names), norms (GroupNorm, FrozenBN), MLP, the FPN-conv builder, sine
position encoding, weight initialisations, multi-scale deformable attention
(:mod:`.ms_deform_attn`, imported on its own) and the switches models set on shared modules
(:mod:`.switches`). Not here: anything registered or configured (those
are components in ``modeling``).
"""

from .batch_norm import FrozenBatchNorm2d
from .blocks import MLP, Conv2d, ShapeSpec, add_fpn_convs, get_activation_fn, get_norm, with_pos_embed
from .position_encoding import PositionEmbeddingSine
from .switches import FastPathModule, FrozenEncoderModule
from .weight_init import c2_msra_fill, c2_xavier_fill

__all__ = [
    "MLP",
    "Conv2d",
    "ShapeSpec",
    "add_fpn_convs",
    "get_activation_fn",
    "get_norm",
    "with_pos_embed",
    "PositionEmbeddingSine",
    "c2_msra_fill",
    "c2_xavier_fill",
    "FrozenBatchNorm2d",
    "FastPathModule",
    "FrozenEncoderModule",
]
