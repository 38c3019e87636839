"""Backbones registered in BACKBONE_REGISTRY (frozen CLIP "CLIP"; OVSeg's "D2SwinTransformer" and
"build_resnet_deeplab_backbone") and the text classifier."""

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
from .resnet import DeepLabResNet
from .swin import D2SwinTransformer
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
    "D2SwinTransformer",
    "DeepLabResNet",
    "VILD_PROMPT_TEMPLATES",
    "TextClassifierBuilder",
    "parse_class_names",
]
