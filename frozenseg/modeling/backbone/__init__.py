"""Backbones registered in BACKBONE_REGISTRY and the text classifier.

Registered: "CLIP" (FrozenSeg's frozen open_clip tower), and OVSeg's proposal backbones
"D2SwinTransformer" and "build_resnet_deeplab_backbone".

Modules: ``swin`` / ``resnet`` (OVSeg's Swin-B and DeepLab ResNet), ``clip`` (the CLIP
backbone: model building, visual features, mask classification), ``clip_weights`` (pretrained
tags, weight files, caches, offline mode), ``clip_text`` (the text-tower forwards and their
assumptions about open_clip), ``text_classifier`` (prompt templates, the classifier and its
caches). Not here: OVSeg's CLIP ViT (``modeling.clip_adapter``) and SAM (``modeling.sam``).
"""

from .clip import CLIPBackbone, UnknownCLIPModelError, UnsupportedCLIPModelError
from .clip_weights import (
    CLIPBackboneError,
    CLIPWeightsLoadError,
    CLIPWeightsNotFoundError,
    CLIPWeightsUnavailableError,
    UnknownCLIPPretrainedTagError,
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
