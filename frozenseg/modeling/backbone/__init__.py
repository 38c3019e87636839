"""Frozen CLIP backbone (registered as "CLIP" in BACKBONE_REGISTRY) and the text classifier.

Modules: ``clip`` (the backbone: model building, visual features, mask classification),
``clip_weights`` (pretrained tags, weight files, caches, offline mode), ``clip_text`` (the
text-tower forwards and their assumptions about open_clip), ``text_classifier`` (prompt
templates, the classifier and its caches).
"""

from .clip import CLIPBackbone, UnknownCLIPModelError, UnsupportedCLIPModelError
from .clip_weights import (
    CLIPBackboneError,
    CLIPWeightsLoadError,
    CLIPWeightsNotFoundError,
    CLIPWeightsUnavailableError,
    UnknownCLIPPretrainedTagError,
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
