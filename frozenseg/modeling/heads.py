"""The trainable segmentation head: pixel decoder + transformer decoder (``sem_seg_head``)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..config import configurable
from ..layers import ShapeSpec
from ..utils.registry import (
    PIXEL_DECODER_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
)


@SEM_SEG_HEADS_REGISTRY.register()
class FrozenSegHead(nn.Module):
    """Runs the two-branch pixel decoder, then the masked-attention decoder with injectors.

    Submodule names (``pixel_decoder``, ``predictor``) are those of the released checkpoints.
    """

    @configurable
    def __init__(self, *, pixel_decoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec], sam_channels: int):
        in_features = cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES
        shapes = {k: v for k, v in input_shape.items() if k in in_features}
        pixel_decoder = PIXEL_DECODER_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME)(
            cfg, shapes, sam_channels=sam_channels
        )
        predictor = TRANSFORMER_DECODER_REGISTRY.get(
            cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
        )(cfg, in_channels=cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM, mask_classification=True)
        return {"pixel_decoder": pixel_decoder, "predictor": predictor}

    def forward(
        self,
        features: dict[str, torch.Tensor],
        sam_embed: torch.Tensor,
        text_classifier: torch.Tensor,
        num_templates: Sequence[int],
    ) -> dict:
        """
        Args:
            features: CLIP features ``res2..res5`` (B, C_l, H/s_l, W/s_l).
            sam_embed: SAM encoder output E_sam (B, C_sam, 64, 64).
            text_classifier: (K' + 1, D) normalised synonym rows plus the void row.
            num_templates: synonyms per class (length K).
        Returns:
            ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, H/4, W/4), ``aux_outputs``.
        """
        mask_features, multi_scale_features, sam_feature = self.pixel_decoder.forward_features(
            features, sam_embed
        )
        return self.predictor(
            multi_scale_features,
            mask_features,
            sam_feature,
            sam_embed,
            text_classifier,
            num_templates,
        )
