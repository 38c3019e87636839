"""The segmentation head every MaskFormer-style model shares, and what passes between its stages.

A head (``MODEL.SEM_SEG_HEAD.NAME``, ``SEM_SEG_HEADS_REGISTRY``) is a pixel decoder
(``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``, ``PIXEL_DECODER_REGISTRY``) followed by a transformer
decoder (``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``, ``TRANSFORMER_DECODER_REGISTRY``). Every
model's components take the same arguments, so any pixel decoder can feed any transformer decoder
that reads the maps it gives:

* a pixel decoder is built as ``cls(cfg, input_shape)`` (``{feature name: ShapeSpec}`` of every
  feature the model passes: the backbone's, plus model-specific maps such as FrozenSeg's frozen
  SAM embedding ``"sam"``) and has ``forward_features(features) -> PixelDecoderOutput``;
* a transformer decoder is built as ``cls(cfg, in_channels)`` and has
  ``forward(pixel: PixelDecoderOutput, text_classifier, num_templates) -> dict`` with
  ``pred_logits`` (B, Q, K + 1), ``pred_masks`` (B, Q, H/4, W/4) and, with deep supervision,
  ``aux_outputs`` (a list of such dicts).

Provenance: Mask2Former's ``MaskFormerHead`` (Cheng et al., 2022), whose
``TRANSFORMER_IN_FEATURE`` chooses between the pixel decoder's multi-scale maps and one raw
backbone feature (MaskFormer-v1's choice, OVSeg's).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..config import configurable
from ..layers import ShapeSpec
from ..utils.registry import SEM_SEG_HEADS_REGISTRY
from .build import build_pixel_decoder, build_transformer_decoder

__all__ = ["MULTI_SCALE_PIXEL_DECODER", "PixelDecoderOutput", "MaskFormerHead"]

#: ``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE`` value: the transformer decoder attends to the pixel
#: decoder's multi-scale maps (any other value names a raw backbone feature).
MULTI_SCALE_PIXEL_DECODER = "multi_scale_pixel_decoder"


@dataclass(frozen=True)
class PixelDecoderOutput:
    """What a pixel decoder hands to a transformer decoder.

    Attributes:
        mask_features: (B, mask_dim, H/4, W/4) per-pixel embeddings the mask embeddings are
            multiplied with.
        multi_scale_features: the maps the transformer decoder attends to, coarse to fine
            (FrozenSeg: 3 maps (B, C, H/s, W/s), s = 32, 16, 8; OVSeg: the backbone's res5).
        extras: model-specific maps, by name (FrozenSeg: ``"sam_feature"``, the SAM branch's
            output S, and ``"sam_embed"``, the frozen SAM embedding E_sam).
    """

    mask_features: torch.Tensor
    multi_scale_features: list[torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@SEM_SEG_HEADS_REGISTRY.register()
class MaskFormerHead(nn.Module):
    """Pixel decoder, then transformer decoder.

    Submodule names (``pixel_decoder``, ``predictor``) are those of the released checkpoints.
    """

    @configurable
    def __init__(self, *, pixel_decoder: nn.Module, predictor: nn.Module,
                 transformer_in_feature: str = MULTI_SCALE_PIXEL_DECODER):
        """
        Args:
            pixel_decoder: maps the features to a :class:`PixelDecoderOutput`.
            predictor: the transformer decoder.
            transformer_in_feature: :data:`MULTI_SCALE_PIXEL_DECODER`, or the name of the raw
                backbone feature the predictor attends to instead (MaskFormer-v1: ``"res5"``).
        """
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.transformer_in_feature = transformer_in_feature

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """The pixel and transformer decoders the config names; ``MODEL.MASK_FORMER.
        TRANSFORMER_IN_FEATURE`` must be :data:`MULTI_SCALE_PIXEL_DECODER` or one of the features."""
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        if in_feature == MULTI_SCALE_PIXEL_DECODER:
            in_channels = cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM
        elif in_feature in input_shape:
            in_channels = input_shape[in_feature].channels
        else:
            raise ValueError(
                f"{cls.__name__} reads a backbone feature; set MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE to one of "
                f"{sorted(input_shape)} (or {MULTI_SCALE_PIXEL_DECODER!r}), not {in_feature!r}."
            )
        return {
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "predictor": build_transformer_decoder(cfg, in_channels),
            "transformer_in_feature": in_feature,
        }

    def forward(
        self,
        features: dict[str, torch.Tensor],
        text_classifier: torch.Tensor,
        num_templates: Sequence[int] | None = None,
    ) -> dict:
        """
        Args:
            features: the model's feature maps by name (backbone ``res2`` (B, C2, H/4, W/4) ..
                ``res5`` (B, C5, H/32, W/32), H and W padded; plus model-specific maps).
            text_classifier: (K' + 1, D) L2-normalised text rows, the no-object / void row last.
            num_templates: rows per class (synonyms), ``sum == K'``; None = one row per class.
        Returns:
            the transformer decoder's ``pred_logits`` (B, Q, K + 1), ``pred_masks``
            (B, Q, H/4, W/4) and, with deep supervision, ``aux_outputs``.
        """
        pixel = self.pixel_decoder.forward_features(features)
        if self.transformer_in_feature != MULTI_SCALE_PIXEL_DECODER:
            pixel = dataclasses.replace(pixel, multi_scale_features=[features[self.transformer_in_feature]])
        return self.predictor(pixel, text_classifier, num_templates)
