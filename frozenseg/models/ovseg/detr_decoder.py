"""DETR's transformer decoder as MaskFormer-v1 uses it (docs/models/ovseg.md §2.4).

Provenance: the decoder of DETR (Carion et al., "End-to-End Object Detection with Transformers",
ECCV 2020) in MaskFormer-v1's configuration: queries start at zero, the learned query embedding
is the query position, the sine position encoding of the image features is added to the keys,
every layer's output passes through the shared final LayerNorm (``return_intermediate``). No
attention masks. Module names reproduce the released OVSeg checkpoints
(``sem_seg_head.predictor.transformer.decoder.{layers.i.*, norm}``). Independent implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from ...layers import get_activation_fn, with_pos_embed

__all__ = ["DETRDecoderLayer", "DETRDecoder", "DETRTransformer"]


class DETRDecoderLayer(nn.Module):
    """Self-attention, cross-attention to the image features, FFN; each followed by dropout, the
    residual and a LayerNorm (``norm1..3``; post-norm, as released). Sequences are (L, B, C)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float,
        activation: str = "relu",
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = get_activation_fn(activation)

    def _self_attention(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = k = with_pos_embed(tgt, query_pos)
        return self.dropout1(self.self_attn(q, k, value=tgt)[0])

    def _cross_attention(self, tgt, memory, pos, query_pos) -> torch.Tensor:
        out = self.multihead_attn(
            query=with_pos_embed(tgt, query_pos), key=with_pos_embed(memory, pos), value=memory
        )[0]
        return self.dropout2(out)

    def _ffn(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(tgt)))))

    def forward(
        self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            tgt: (Q, B, C) query features; memory: (HW, B, C) image features;
            pos: (HW, B, C) their position encoding; query_pos: (Q, B, C) query embedding.
        Returns:
            (Q, B, C).
        """
        tgt = self.norm1(tgt + self._self_attention(tgt, query_pos))
        tgt = self.norm2(tgt + self._cross_attention(tgt, memory, pos, query_pos))
        return self.norm3(tgt + self._ffn(tgt))


class DETRDecoder(nn.Module):
    """A stack of :class:`DETRDecoderLayer` and the final LayerNorm ``norm``."""

    def __init__(self, layers: list[DETRDecoderLayer], d_model: int, return_intermediate: bool):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)
        self.return_intermediate = return_intermediate

    def forward(self, tgt, memory, pos, query_pos) -> torch.Tensor:
        """Same arguments as :meth:`DETRDecoderLayer.forward`. Returns (L', Q, B, C): the normed
        output of every layer (L' = number of layers) with ``return_intermediate``, else of the
        last layer only (L' = 1)."""
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            if self.return_intermediate:
                outputs.append(self.norm(tgt))
        if not self.return_intermediate:
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class DETRTransformer(nn.Module):
    """DETR transformer without encoder layers (MaskFormer-v1 ``ENC_LAYERS 0``), post-norm (so
    without an encoder norm either): the decoder reads the (projected) image features directly. Parameters of dim > 1 are Xavier-uniform initialised.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_decoder_layers: int,
        dim_feedforward: int,
        dropout: float,
        return_intermediate_dec: bool,
    ):
        super().__init__()
        if num_decoder_layers < 1:
            raise ValueError(
                f"The DETR decoder needs at least one layer; got MODEL.MASK_FORMER.DEC_LAYERS {num_decoder_layers}."
            )
        layers = [
            DETRDecoderLayer(d_model, nhead, dim_feedforward, dropout)
            for _ in range(num_decoder_layers)
        ]
        self.decoder = DETRDecoder(layers, d_model, return_intermediate_dec)
        self.d_model = d_model
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, query_embed: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        """
        Args:
            src: (B, C, H, W) image features (C = d_model).
            query_embed: (Q, C) learned query embedding.
            pos_embed: (B, C, H, W) position encoding of ``src``.
        Returns:
            hs (L', B, Q, C), see :meth:`DETRDecoder.forward`.
        """
        bs = src.shape[0]
        memory = src.flatten(2).permute(2, 0, 1)  # (HW, B, C)
        pos = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, bs, 1)  # (Q, B, C)
        tgt = torch.zeros_like(query_pos)
        return self.decoder(tgt, memory, pos, query_pos).transpose(1, 2)
