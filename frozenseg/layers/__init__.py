"""Small building blocks shared by the model components."""

from .blocks import MLP, Conv2d, ShapeSpec, get_activation_fn, get_norm, with_pos_embed
from .position_encoding import PositionEmbeddingSine
from .weight_init import c2_xavier_fill

__all__ = [
    "MLP",
    "Conv2d",
    "ShapeSpec",
    "get_activation_fn",
    "get_norm",
    "with_pos_embed",
    "PositionEmbeddingSine",
    "c2_xavier_fill",
]
