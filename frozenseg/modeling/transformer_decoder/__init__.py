"""Transformer decoders: FrozenSeg's masked-attention decoder (registered in
TRANSFORMER_DECODER_REGISTRY; spec §5), and OVSeg's DETR decoder with its open-vocabulary
predictor. Importing this package registers them. Not here: the text classifier they consume
(``modeling.backbone.text_classifier``).
"""

from __future__ import annotations

from torch import nn

from ...utils.registry import TRANSFORMER_DECODER_REGISTRY
from .detr_decoder import DETRDecoder, DETRDecoderLayer, DETRTransformer
from .frozenseg_transformer_decoder import (
    CrossAttentionLayer,
    FFNLayer,
    FrozenSegTransformerDecoder,
    SelfAttentionLayer,
    unblock_fully_masked_rows,
)
from .open_vocab_transformer_predictor import OpenVocabTransformerPredictor

__all__ = [
    "DETRDecoder",
    "DETRDecoderLayer",
    "DETRTransformer",
    "OpenVocabTransformerPredictor",
    "build_transformer_decoder",
    "CrossAttentionLayer",
    "FFNLayer",
    "FrozenSegTransformerDecoder",
    "SelfAttentionLayer",
    "unblock_fully_masked_rows",
]


def build_transformer_decoder(cfg, in_channels: int, mask_classification: bool = True) -> nn.Module:
    """Build the decoder named by ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)
