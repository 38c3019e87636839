"""OVSeg's segmentation head (``sem_seg_head``): MaskFormer-v1 pixel decoder + open-vocabulary
transformer predictor (spec §2.3-2.6).

Provenance: MaskFormer-v1's ``MaskFormerHead`` (Cheng et al., NeurIPS 2021) as OVSeg (Liang et
al., CVPR 2023) registers it, ``OpenVocabMaskFormerHead``. Independent implementation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..config import configurable
from ..layers import ShapeSpec
from ..utils.registry import PIXEL_DECODER_REGISTRY, SEM_SEG_HEADS_REGISTRY
from .pixel_decoder import BasePixelDecoder  # noqa: F401  (registers it)
from .transformer_decoder.open_vocab_transformer_predictor import OpenVocabTransformerPredictor

__all__ = ["OpenVocabMaskFormerHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class OpenVocabMaskFormerHead(nn.Module):
    """Pixel decoder (mask features) and predictor reading one raw backbone feature.

    Submodule names (``pixel_decoder``, ``predictor``) are those of the released checkpoints.
    """

    @configurable
    def __init__(self, *, pixel_decoder: nn.Module, predictor: OpenVocabTransformerPredictor, transformer_in_feature: str):
        """
        Args:
            pixel_decoder: maps the backbone features to mask features (B, mask_dim, H/4, W/4).
            predictor: the open-vocabulary transformer predictor.
            transformer_in_feature: backbone feature the predictor reads ("res5").
        """
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.transformer_in_feature = transformer_in_feature

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """Builds ``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME`` (``BasePixelDecoder``) and the predictor
        on ``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE`` (must be a backbone feature, "res5")."""
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        if in_feature not in input_shape:
            raise ValueError(
                f"OpenVocabMaskFormerHead reads a backbone feature; set MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE "
                f"to one of {sorted(input_shape)} (released: 'res5'), not {in_feature!r}."
            )
        pixel_decoder = PIXEL_DECODER_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME)(cfg, input_shape)
        predictor = OpenVocabTransformerPredictor(cfg, in_channels=input_shape[in_feature].channels)
        return {"pixel_decoder": pixel_decoder, "predictor": predictor, "transformer_in_feature": in_feature}

    def forward(
        self,
        features: dict[str, torch.Tensor],
        text_classifier: torch.Tensor,
        num_templates: Sequence[int] | None = None,
    ) -> dict:
        """
        Args:
            features: backbone maps res2 (B, C2, H/4, W/4) .. res5 (B, C5, H/32, W/32) (H, W padded).
            text_classifier: (K' + 1, D) L2-normalised text rows, normalised no-object row last.
            num_templates: rows per class; None = one row per class.
        Returns:
            ``pred_logits`` (B, Q, K + 1), ``pred_masks`` (B, Q, H/4, W/4) and, with deep
            supervision, ``aux_outputs`` (see ``OpenVocabTransformerPredictor.forward``).
        """
        mask_features = self.pixel_decoder(features)
        return self.predictor(features[self.transformer_in_feature], mask_features, text_classifier, num_templates)
