"""Frozen CLIP backbone (registered as "CLIP" in BACKBONE_REGISTRY) and the text classifier."""

from .clip import (
    CLIPBackbone,
    CLIPBackboneError,
    CLIPWeightsLoadError,
    CLIPWeightsNotFoundError,
    CLIPWeightsUnavailableError,
    UnknownCLIPModelError,
    UnknownCLIPPretrainedTagError,
    UnsupportedCLIPModelError,
)
from .text_classifier import VILD_PROMPT_TEMPLATES, TextClassifierBuilder, parse_class_names

__all__ = [
    "CLIPBackbone",
    "CLIPBackboneError",
    "CLIPWeightsLoadError",
    "CLIPWeightsNotFoundError",
    "CLIPWeightsUnavailableError",
    "UnknownCLIPModelError",
    "UnknownCLIPPretrainedTagError",
    "UnsupportedCLIPModelError",
    "VILD_PROMPT_TEMPLATES",
    "TextClassifierBuilder",
    "parse_class_names",
]
