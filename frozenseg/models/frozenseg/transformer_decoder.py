"""FrozenSeg's masked-attention transformer decoder (docs/models/frozenseg.md §5).

Provenance: the decoder is the multi-scale masked-attention decoder of Mask2Former (Cheng et al.,
"Masked-attention Mask Transformer for Universal Image Segmentation", CVPR 2022): learnable query
features and positions, masked cross-attention cycling over three feature scales, self-attention,
FFN, and a prediction head before the first layer and after every layer (deep supervision). The
open-vocabulary head (mask pooling + ``_mask_pooling_proj`` + class-embedding MLP classified
against a text classifier) follows FC-CLIP (Yu et al., 2023). The Feature Injector (CLIP tokens
attend to SAM-branch tokens) and the Query Injector (SAM-pooled query embeddings added to the
queries) are FrozenSeg's (Chen et al., "FrozenSeg: Harmonizing Frozen Foundation Models for
Open-Vocabulary Segmentation", 2024).

Parameter names reproduce the released checkpoints (``sem_seg_head.predictor.*``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...layers import (
    MLP,
    Conv2d,
    PositionEmbeddingSine,
    c2_xavier_fill,
    get_activation_fn,
    with_pos_embed,
)
from ...utils.registry import TRANSFORMER_DECODER_REGISTRY
from ...modeling.heads import PixelDecoderOutput
from ...modeling.open_vocab import get_classification_logits, mask_pooling

#: CLIP's initial softmax temperature (Radford et al., 2021), the starting value of the decoder's
#: learned ``logit_scale = log(1 / T)``; a loaded checkpoint overwrites it.
CLIP_INIT_TEMPERATURE = 0.07

__all__ = [
    "SelfAttentionLayer",
    "CrossAttentionLayer",
    "FFNLayer",
    "FrozenSegTransformerDecoder",
    "unblock_fully_masked_rows",
]

# Number of CLIP feature scales the decoder cycles over (strides 32, 16, 8).
NUM_FEATURE_LEVELS = 3


def unblock_fully_masked_rows(attn_mask: torch.Tensor) -> torch.Tensor:
    """Unblock every attention row that would block all keys (Mask2Former rule).

    Args:
        attn_mask: (N, L, S) bool, True = blocked.
    Returns:
        (N, L, S) bool: a copy where rows with all S entries True are set entirely to False.
    """
    return attn_mask & ~attn_mask.all(dim=-1, keepdim=True)


class _ResidualNormLayer(nn.Module):
    """A sublayer followed by dropout, a residual connection and LayerNorm (Mask2Former's
    decoder layers), post-norm ``norm(x + dropout(f(x)))`` or, with ``normalize_before``,
    pre-norm ``x + dropout(f(norm(x)))``.

    Subclasses build their sublayer modules, call :meth:`_init_residual_norm` and define
    ``_sublayer(x, *args)``; ``forward_post`` / ``forward_pre`` take ``x`` then the subclass's
    further ``forward`` arguments, in order.
    """

    def _init_residual_norm(
        self, d_model: int, dropout: float, activation: str, normalize_before: bool
    ) -> None:
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _sublayer(self, x: torch.Tensor, *args) -> torch.Tensor:
        raise NotImplementedError

    def forward_post(self, tgt, *args):
        tgt2 = self._sublayer(tgt, *args)
        tgt = tgt + self.dropout(tgt2)
        return self.norm(tgt)

    def forward_pre(self, tgt, *args):
        tgt2 = self._sublayer(self.norm(tgt), *args)
        return tgt + self.dropout(tgt2)

    def _residual_forward(self, tgt: torch.Tensor, *args) -> torch.Tensor:
        if self.normalize_before:
            return self.forward_pre(tgt, *args)
        return self.forward_post(tgt, *args)


class SelfAttentionLayer(_ResidualNormLayer):
    """Self-attention + residual + LayerNorm over (L, B, C) sequences (post- or pre-norm)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self._init_residual_norm(d_model, dropout, activation, normalize_before)

    def _sublayer(self, x, tgt_mask, tgt_key_padding_mask, query_pos):
        q = k = with_pos_embed(x, query_pos)
        return self.self_attn(
            q, k, value=x, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask
        )[0]

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tgt, query_pos: (L, B, C) -> (L, B, C)."""
        return self._residual_forward(tgt, tgt_mask, tgt_key_padding_mask, query_pos)


class CrossAttentionLayer(_ResidualNormLayer):
    """Cross-attention (query = tgt + query_pos, key = memory + pos, value = memory) + residual
    + LayerNorm over (L, B, C) / (S, B, C) sequences (post- or pre-norm)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self._init_residual_norm(d_model, dropout, activation, normalize_before)

    def _sublayer(self, x, memory, memory_mask, memory_key_padding_mask, pos, query_pos):
        return self.multihead_attn(
            query=with_pos_embed(x, query_pos),
            key=with_pos_embed(memory, pos),
            value=memory,
            attn_mask=memory_mask,
            key_padding_mask=memory_key_padding_mask,
        )[0]

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tgt, query_pos: (L, B, C); memory, pos: (S, B, C); memory_mask: (B*heads, L, S) bool,
        True = blocked. Returns (L, B, C)."""
        return self._residual_forward(
            tgt, memory, memory_mask, memory_key_padding_mask, pos, query_pos
        )


class FFNLayer(_ResidualNormLayer):
    """linear1 -> activation -> dropout -> linear2, + residual + LayerNorm (post- or pre-norm)."""

    def __init__(
        self,
        d_model: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self._init_residual_norm(d_model, dropout, activation, normalize_before)

    def _sublayer(self, x):
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        """(L, B, C) -> (L, B, C)."""
        return self._residual_forward(tgt)


class FrozenSegTransformerDecoder(nn.Module):
    """Mask2Former masked-attention decoder with FrozenSeg's Feature and Query Injectors.

    Registered as ``"MultiScaleMaskedTransformerDecoder"`` (the released config value of
    ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``). Layer ``i`` attends to CLIP level
    ``i % 3``; layers whose level equals ``sam_feature_fuse_layer`` first let the CLIP tokens
    attend to the SAM-branch tokens (Feature Injector), and after the prediction head of layers
    whose level equals ``sam_query_fuse_layer`` the SAM-pooled query embeddings are added to the
    queries (Query Injector).
    """

    @configurable
    def __init__(
        self,
        in_channels: int,
        mask_classification: bool = True,
        *,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dim_feedforward: int,
        dec_layers: int,
        pre_norm: bool,
        mask_dim: int,
        enforce_input_project: bool,
        embed_dim: int,
        sam_feature_fuse_layer: int = 0,
        sam_query_fuse_layer: int = 2,
        dropout: float = 0.0,
    ):
        """
        Args:
            in_channels: channels of the three multi-scale features fed to ``forward``.
            mask_classification: must be True (the decoder always classifies its masks).
            hidden_dim: decoder width C.
            num_queries: Q.
            nheads: attention heads.
            dim_feedforward: FFN width.
            dec_layers: number of decoder layers (the config's ``DEC_LAYERS - 1``).
            pre_norm: pre-norm layers (released: post-norm).
            mask_dim: channels of the mask features (and of the SAM encoder output); must equal
                ``hidden_dim`` because pooled embeddings are added to the queries.
            enforce_input_project: 1x1 input projections even when ``in_channels == hidden_dim``.
            embed_dim: CLIP joint embedding dim D (output of ``class_embed``).
            sam_feature_fuse_layer: level (0..2) whose layers run the Feature Injector.
            sam_query_fuse_layer: level (0..2) whose layers run the Query Injector.
            dropout: dropout in the attention and FFN layers (released: 0).
        """
        super().__init__()
        if not mask_classification:
            raise ValueError("FrozenSegTransformerDecoder only supports mask classification.")
        if mask_dim != hidden_dim:
            raise ValueError(
                f"FrozenSegTransformerDecoder needs mask_dim == hidden_dim (got {mask_dim} and "
                f"{hidden_dim}): mask-pooled embeddings are added to the decoder queries."
            )
        self.mask_classification = mask_classification
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_queries = num_queries
        self.num_feature_levels = NUM_FEATURE_LEVELS
        self.sam_feature_fuse_layer = sam_feature_fuse_layer
        self.sam_query_fuse_layer = sam_query_fuse_layer

        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)

        self.transformer_self_attention_layers = nn.ModuleList()
        self.transformer_cross_attention_layers = nn.ModuleList()
        self.transformer_cross_attention_layers_sam = nn.ModuleDict()
        self.transformer_ffn_layers = nn.ModuleList()
        for i in range(dec_layers):
            self.transformer_self_attention_layers.append(
                SelfAttentionLayer(hidden_dim, nheads, dropout=dropout, normalize_before=pre_norm)
            )
            self.transformer_cross_attention_layers.append(
                CrossAttentionLayer(hidden_dim, nheads, dropout=dropout, normalize_before=pre_norm)
            )
            if i % self.num_feature_levels == sam_feature_fuse_layer:
                self.transformer_cross_attention_layers_sam[str(i)] = CrossAttentionLayer(
                    hidden_dim, nheads, dropout=dropout, normalize_before=pre_norm
                )
            self.transformer_ffn_layers.append(
                FFNLayer(
                    hidden_dim,
                    dim_feedforward=dim_feedforward,
                    dropout=dropout,
                    normalize_before=pre_norm,
                )
            )

        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)

        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Sequential())

        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self._mask_pooling_proj = nn.Sequential(
            nn.LayerNorm(mask_dim), nn.Linear(mask_dim, mask_dim)
        )
        self.class_embed = MLP(hidden_dim, hidden_dim, embed_dim, 3)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / CLIP_INIT_TEMPERATURE))

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool = True) -> dict:
        """Constructor kwargs from ``MODEL.MASK_FORMER.*``, ``MODEL.SEM_SEG_HEAD.MASK_DIM`` and
        ``MODEL.FROZEN_SEG.{EMBED_DIM, SAM_FEATURE_FUSE_LAYER, SAM_QUERY_FUSE_LAYER}``."""
        mf = cfg.MODEL.MASK_FORMER
        if mf.DEC_LAYERS < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1, got {mf.DEC_LAYERS}.")
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            # DEC_LAYERS counts the prediction on the learnable queries as one layer.
            "dec_layers": mf.DEC_LAYERS - 1,
            "pre_norm": mf.PRE_NORM,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
            "embed_dim": cfg.MODEL.FROZEN_SEG.EMBED_DIM,
            "sam_feature_fuse_layer": cfg.MODEL.FROZEN_SEG.SAM_FEATURE_FUSE_LAYER,
            "sam_query_fuse_layer": cfg.MODEL.FROZEN_SEG.SAM_QUERY_FUSE_LAYER,
            "dropout": mf.DROPOUT,
        }

    def forward(
        self,
        pixel: PixelDecoderOutput,
        text_classifier: torch.Tensor | None,
        num_templates: Sequence[int] | None,
    ) -> dict:
        """Run the decoder.

        Args:
            pixel: the pixel decoder's output: ``multi_scale_features``, three CLIP-branch maps
                (B, C_in, H_l, W_l), strides 32, 16, 8 in that order; ``mask_features``
                (B, mask_dim, H/4, W/4); ``extras["sam_feature"]``, S (B, hidden, h_s, w_s), the
                SAM branch's output; ``extras["sam_embed"]``, E_sam (B, mask_dim, 64, 64), the
                frozen SAM embedding.
            text_classifier: (K' + 1, D) L2-normalised synonym rows, void row last; None: no
                class logits (everything else does not depend on the vocabulary; classify
                ``pred_class_embed`` later with :meth:`classify`).
            num_templates: synonyms per class, ``sum == K'``.
        Returns:
            ``{"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, H/4, W/4), "pred_class_embed":
            (B, Q, D), "aux_outputs": [...]}`` where ``aux_outputs`` holds ``pred_logits`` and
            ``pred_masks`` for every earlier head (the head on the learnable queries and after
            every layer but the last); without a text classifier ``pred_logits`` is None and
            ``aux_outputs`` is empty.
        """
        x, mask_features = pixel.multi_scale_features, pixel.mask_features
        sam_embed = pixel.extras["sam_embed"]
        if len(x) != self.num_feature_levels:
            raise ValueError(f"Expected {self.num_feature_levels} feature levels, got {len(x)}.")

        src, pos, size_list = [], [], []
        for lvl in range(self.num_feature_levels):
            size_list.append(x[lvl].shape[-2:])
            # (B, C, HW) -> (HW, B, C)
            pos.append(self.pe_layer(x[lvl], None).flatten(2).permute(2, 0, 1))
            s = self.input_proj[lvl](x[lvl]).flatten(2)
            src.append((s + self.level_embed.weight[lvl][None, :, None]).permute(2, 0, 1))

        bs = src[0].shape[1]
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)  # (Q, B, C)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, bs, 1)  # (Q, B, C)
        sam_tokens = self._sam_tokens(pixel.extras["sam_feature"], size_list[0])

        predictions_class, predictions_mask = [], []
        outputs_class, outputs_mask, attn_mask, _, class_embed = self.forward_prediction_heads(
            output, mask_features, size_list[0], text_classifier, num_templates, sam_embed,
            with_sam_query=False,
        )
        predictions_class.append(outputs_class)
        predictions_mask.append(outputs_mask)

        for i in range(self.num_layers):
            level_index = i % self.num_feature_levels
            attn_mask = unblock_fully_masked_rows(attn_mask)
            if level_index == self.sam_feature_fuse_layer:
                memory, memory_pos = self._feature_injector(i, src[level_index], pos[level_index], sam_tokens)
            else:
                memory, memory_pos = src[level_index], pos[level_index]

            output = self.transformer_cross_attention_layers[i](
                output,
                memory,
                memory_mask=attn_mask,
                memory_key_padding_mask=None,
                pos=memory_pos,
                query_pos=query_embed,
            )
            output = self.transformer_self_attention_layers[i](
                output, tgt_mask=None, tgt_key_padding_mask=None, query_pos=query_embed
            )
            output = self.transformer_ffn_layers[i](output)

            query_injector = level_index == self.sam_query_fuse_layer
            outputs_class, outputs_mask, attn_mask, sam_query_embed, class_embed = self.forward_prediction_heads(
                output,
                mask_features,
                size_list[(i + 1) % self.num_feature_levels],
                text_classifier,
                num_templates,
                sam_embed,
                with_sam_query=query_injector,
            )
            if query_injector:
                # Query Injector: add the SAM-pooled embeddings to the queries.
                output = output + sam_query_embed
            predictions_class.append(outputs_class)
            predictions_mask.append(outputs_mask)

        return {
            "pred_logits": predictions_class[-1],
            "pred_masks": predictions_mask[-1],
            "pred_class_embed": class_embed,
            "aux_outputs": [] if text_classifier is None else [
                {"pred_logits": c, "pred_masks": m}
                for c, m in zip(predictions_class[:-1], predictions_mask[:-1])
            ],
        }

    def classify(self, class_embed: torch.Tensor, text_classifier: torch.Tensor,
                 num_templates: Sequence[int]) -> torch.Tensor:
        """Class logits (B, Q, K + 1) of the queries' ``pred_class_embed`` (B, Q, D) against the
        (K' + 1, D) text rows, exactly as the decoder's own head computes them."""
        return get_classification_logits(class_embed, text_classifier, self.logit_scale.exp(), num_templates)

    def _sam_tokens(
        self, sam_feature: torch.Tensor, size: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The SAM-branch tokens the Feature Injector attends to, computed once per forward:
        (tokens (h*w, B, C), positions (h*w, B, C)) of S, resized to the coarsest CLIP level's
        ``size`` in eval mode (as the release does); None when no layer injects."""
        if len(self.transformer_cross_attention_layers_sam) == 0:
            return None
        s = sam_feature
        if not self.training:
            s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
        sam_pos = self.pe_layer(s, None).flatten(2).permute(2, 0, 1)
        sam_src = (s.flatten(2) + self.level_embed.weight[0][None, :, None]).permute(2, 0, 1)
        return sam_src, sam_pos

    def _feature_injector(
        self, layer: int, src: torch.Tensor, pos: torch.Tensor, sam_tokens: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        """Feature Injector of decoder layer ``layer``: the CLIP tokens ``src`` (HW, B, C) of its
        level (positions ``pos``) attend to the SAM tokens. Returns the memory the layer's masked
        cross-attention reads and its positions: None, since the release attends the fused
        memory without positional encoding."""
        sam_src, sam_pos = sam_tokens
        memory = self.transformer_cross_attention_layers_sam[str(layer)](
            src, sam_src, memory_mask=None, memory_key_padding_mask=None, pos=sam_pos, query_pos=pos,
        )
        return memory, None

    def forward_prediction_heads(
        self,
        output: torch.Tensor,
        mask_features: torch.Tensor,
        attn_mask_target_size: Sequence[int],
        text_classifier: torch.Tensor | None,
        num_templates: Sequence[int] | None,
        sam_embed: torch.Tensor,
        with_sam_query: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Prediction head on the queries.

        Args:
            output: (Q, B, C) query features.
            mask_features: (B, mask_dim, H/4, W/4).
            attn_mask_target_size: (h, w) of the level the next layer attends to.
            text_classifier: (K' + 1, D); None: no class logits.
            num_templates: synonyms per class.
            sam_embed: (B, mask_dim, 64, 64).
            with_sam_query: compute ``sam_query_embed`` (only the Query Injector's layers use
                it; the others skip the SAM mask pooling).
        Returns:
            outputs_class (B, Q, K+1) (None without a text classifier); outputs_mask (B, Q, H/4, W/4); attn_mask
            (B*heads, Q, h*w) bool, True = blocked (sigmoid < 0.5), detached; sam_query_embed
            (Q, B, C), the SAM-pooled embeddings through ``_mask_pooling_proj``, or None
            without ``with_sam_query``; class_embed (B, Q, D), the queries' class embeddings.
        """
        decoder_output = self.decoder_norm(output).transpose(0, 1)  # (B, Q, C)
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)

        maskpool_embeddings = self._mask_pooling_proj(mask_pooling(mask_features, outputs_mask))
        class_embed = self.class_embed(maskpool_embeddings + decoder_output)
        outputs_class = None if text_classifier is None else self.classify(class_embed, text_classifier, num_templates)

        attn_mask = F.interpolate(
            outputs_mask, size=attn_mask_target_size, mode="bilinear", align_corners=False
        )
        # (B, Q, hw) -> (B, heads, Q, hw) -> (B*heads, Q, hw), batch-major as nn.MultiheadAttention
        attn_mask = (attn_mask.sigmoid().flatten(2) < 0.5).detach()
        attn_mask = attn_mask.unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)

        if not with_sam_query:
            return outputs_class, outputs_mask, attn_mask, None, class_embed
        sam_query_embed = self._mask_pooling_proj(mask_pooling(sam_embed, outputs_mask))
        return outputs_class, outputs_mask, attn_mask, sam_query_embed.transpose(0, 1), class_embed


# Registered under the released config value of MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME.
TRANSFORMER_DECODER_REGISTRY.register(
    FrozenSegTransformerDecoder, name="MultiScaleMaskedTransformerDecoder"
)
