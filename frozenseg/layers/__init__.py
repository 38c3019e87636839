"""Small building blocks shared by the model components."""

from .blocks import MLP, Conv2d, ShapeSpec, get_norm
from .position_encoding import PositionEmbeddingSine

__all__ = ["MLP", "Conv2d", "ShapeSpec", "get_norm", "PositionEmbeddingSine"]
