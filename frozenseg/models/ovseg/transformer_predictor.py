"""OVSeg's open-vocabulary MaskFormer-v1 predictor (docs/models/ovseg.md §2.4-2.6).

Provenance: MaskFormer-v1's ``TransformerPredictor`` (Cheng et al., NeurIPS 2021) with OVSeg's
open-vocabulary classifier (Liang et al., CVPR 2023): the per-query class head is an MLP to the
CLIP joint space, classified by cosine similarity x 100 against a text classifier whose last row
is the normalised no-object embedding. Module names reproduce the released checkpoints
(``sem_seg_head.predictor.{query_embed, input_proj, transformer.decoder.*, class_embed.layers.i,
mask_embed.layers.i}``). Independent implementation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...config import configurable
from ...layers import MLP, Conv2d, PositionEmbeddingSine, c2_xavier_fill
from ...modeling.heads import PixelDecoderOutput
from ...modeling.open_vocab import get_classification_logits
from ...utils.registry import TRANSFORMER_DECODER_REGISTRY
from .detr_decoder import DETRTransformer

__all__ = ["OpenVocabTransformerPredictor", "OVSEG_LOGIT_TEMPERATURE"]

#: Fixed temperature of OVSeg's cosine-similarity logits (both branches; CLIP's ``logit_scale`` is
#: never used, docs/models/ovseg.md §2.5, quirk 3).
OVSEG_LOGIT_TEMPERATURE = 100.0


@TRANSFORMER_DECODER_REGISTRY.register()
class OpenVocabTransformerPredictor(nn.Module):
    """DETR decoder over one backbone feature, then per query a class embedding (D) and a mask
    embedding (mask_dim) that is dotted with the pixel decoder's mask features."""

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        embedding_dim: int,
        embed_hidden_dim: int,
        embed_layers: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dropout: float,
        dim_feedforward: int,
        dec_layers: int,
        deep_supervision: bool,
        mask_dim: int,
        enforce_input_project: bool,
    ):
        """
        Args:
            in_channels: channels of the feature the decoder reads (res5: 1024 Swin-B, 2048 R101c).
            embedding_dim: D, the CLIP joint dim (768 ViT-L/14, 512 ViT-B/16).
            embed_hidden_dim: hidden width of the class-embedding MLP (1024).
            embed_layers: layers of the class-embedding MLP (2).
            hidden_dim: decoder width (256).
            num_queries: Q (100).
            nheads, dropout, dim_feedforward, dec_layers: DETR decoder (8, 0.1, 2048, 6).
            deep_supervision: also return the predictions of the earlier decoder layers.
            mask_dim: channels of the mask features (256).
            enforce_input_project: 1x1 ``input_proj`` even when ``in_channels == hidden_dim``.
        """
        super().__init__()
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = DETRTransformer(
            d_model=hidden_dim,
            nhead=nheads,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            return_intermediate_dec=deep_supervision,
        )
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Identity()
        self.aux_loss = deep_supervision
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.class_embed = MLP(hidden_dim, embed_hidden_dim, embedding_dim, embed_layers)

    @classmethod
    def from_config(cls, cfg, in_channels: int) -> dict:
        """Constructor kwargs from ``MODEL.SEM_SEG_HEAD.{EMBEDDING_DIM, EMBED_HIDDEN_DIM,
        EMBED_LAYERS, MASK_DIM}`` and ``MODEL.MASK_FORMER.*``. ``DEC_LAYERS`` is the number of
        DETR decoder layers (MaskFormer-v1 meaning, 6), not FrozenSeg's "layers + 1";
        ``ENC_LAYERS`` must be 0 and ``PRE_NORM`` False (the released architecture)."""
        mf = cfg.MODEL.MASK_FORMER
        if mf.ENC_LAYERS != 0:
            raise ValueError(
                f"OpenVocabTransformerPredictor has no transformer encoder; set MODEL.MASK_FORMER.ENC_LAYERS 0 (got {mf.ENC_LAYERS})."
            )
        if mf.PRE_NORM:
            raise ValueError(
                "OpenVocabTransformerPredictor implements the released post-norm DETR decoder; set MODEL.MASK_FORMER.PRE_NORM False."
            )
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "in_channels": in_channels,
            "embedding_dim": head.EMBEDDING_DIM,
            "embed_hidden_dim": head.EMBED_HIDDEN_DIM,
            "embed_layers": head.EMBED_LAYERS,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dropout": mf.DROPOUT,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "dec_layers": mf.DEC_LAYERS,
            "deep_supervision": mf.DEEP_SUPERVISION,
            "mask_dim": head.MASK_DIM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
        }

    def classify(self, class_embed: torch.Tensor, text_classifier: torch.Tensor,
                 num_templates: Sequence[int] | None = None) -> torch.Tensor:
        """Logits (..., Q, K + 1) = 100 * cos(class embedding, row) of ``pred_class_embed``
        (..., Q, D) against the (K' + 1, D) rows (max over a class's rows; None: one row per class)."""
        return get_classification_logits(class_embed, text_classifier, OVSEG_LOGIT_TEMPERATURE, num_templates)

    def forward(
        self,
        pixel: PixelDecoderOutput,
        text_classifier: torch.Tensor | None,
        num_templates: Sequence[int] | None = None,
    ) -> dict:
        """
        Args:
            pixel: ``multi_scale_features`` one (B, in_channels, h, w) decoder input feature
                (res5, stride 32); ``mask_features`` (B, mask_dim, H/4, W/4).
            text_classifier: (K' + 1, D) L2-normalised rows, the normalised no-object row last;
                None: no class logits (the rest does not depend on the vocabulary; classify
                ``pred_class_embed`` later with :meth:`classify`).
            num_templates: rows per class (sum K'); None means one row per class (OVSeg's literal
                class names, K' = K).
        Returns:
            ``pred_logits`` (B, Q, K + 1) = 100 * cos(class embedding, row) (max over a class's
            rows); ``pred_masks`` (B, Q, H/4, W/4) mask logits; with deep supervision
            ``aux_outputs``: one such dict per earlier decoder layer (L - 1 of them);
            ``pred_class_embed`` (L', B, Q, D), every layer's class embeddings.
        """
        (x,), mask_features = pixel.multi_scale_features, pixel.mask_features
        hs = self.transformer(self.input_proj(x), self.query_embed.weight, self.pe_layer(x))
        class_embed = self.class_embed(hs)  # (L', B, Q, D)
        masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        if text_classifier is None:
            return {"pred_logits": None, "pred_masks": masks[-1], "pred_class_embed": class_embed}
        logits = self.classify(class_embed, text_classifier, num_templates)  # (L', B, Q, K + 1)
        out = {"pred_logits": logits[-1], "pred_masks": masks[-1], "pred_class_embed": class_embed}
        if self.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_masks": b} for a, b in zip(logits[:-1], masks[:-1])
            ]
        return out
