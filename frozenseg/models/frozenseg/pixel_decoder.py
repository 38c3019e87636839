"""FrozenSeg's pixel decoder: Mask2Former's deformable-attention pixel decoder plus a SAM branch.

Provenance: the deformable encoder follows Deformable DETR (Zhu et al., ICLR 2021); the CLIP
branch (input projections, encoder, FPN for res2, mask features) follows Mask2Former's
``MSDeformAttnPixelDecoder`` (Cheng et al., CVPR 2022); the SAM branch (``fpn3`` + a second
encoder) follows the FrozenSeg release (docs/models/frozenseg.md §4). Module and parameter names
match the released state dicts (``sem_seg_head.pixel_decoder.*``). Independent implementation.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.config.config import configurable
from frozenseg.layers import (
    Conv2d,
    PositionEmbeddingSine,
    ShapeSpec,
    add_fpn_convs,
    c2_xavier_fill,
    get_activation_fn,
    get_norm,
    with_pos_embed,
)
from frozenseg.utils.registry import PIXEL_DECODER_REGISTRY

from ...layers.ms_deform_attn import MSDeformAttn
from ...modeling.heads import PixelDecoderOutput

#: The feature name under which FrozenSeg passes the frozen SAM embedding E_sam to its head.
SAM_EMBED = "sam"

__all__ = [
    "SAM_EMBED",
    "MSDeformAttnTransformerEncoderLayer",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderOnly",
    "FrozenSegPixelDecoder",
]

logger = logging.getLogger(__name__)


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention then a ReLU FFN, each + residual + LN."""

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
    ):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = get_activation_fn(activation)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    with_pos_embed = staticmethod(with_pos_embed)

    def forward_ffn(self, src: torch.Tensor) -> torch.Tensor:
        """(N, S, C) -> (N, S, C)."""
        src2 = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """src, pos: (N, S, C); reference_points (N, S, L_in, 2); returns (N, S, C)."""
        src2 = self.self_attn(
            self.with_pos_embed(src, pos),
            reference_points,
            src,
            spatial_shapes,
            level_start_index,
            padding_mask,
        )
        src = self.norm1(src + self.dropout1(src2))
        return self.forward_ffn(src)


class MSDeformAttnTransformerEncoder(nn.Module):
    """A stack of ``num_layers`` copies of an encoder layer (attribute ``layers``)."""

    def __init__(self, encoder_layer: MSDeformAttnTransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(
        spatial_shapes: torch.Tensor, valid_ratios: torch.Tensor, device: torch.device
    ) -> torch.Tensor:
        """Pixel-centre reference points of every level, normalised by the valid region.

        Args:
            spatial_shapes: (L, 2) long (H_l, W_l).
            valid_ratios: (N, L, 2) valid fraction (w, h) of each level.

        Returns:
            (N, S, L, 2) normalised (x, y): the point of position s, expressed on every level.
        """
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), dim=-1))
        reference_points = torch.cat(refs, dim=1)  # (N, S, 2)
        return reference_points[:, :, None] * valid_ratios[:, None]

    def forward(
        self,
        src: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        valid_ratios: torch.Tensor,
        pos: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """src, pos: (N, S, C); valid_ratios (N, L_in, 2); returns (N, S, C)."""
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, src.device)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return out


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Deformable-attention encoder over a list of feature maps (Mask2Former's encoder-only form).

    Attributes: ``encoder`` (:class:`MSDeformAttnTransformerEncoder`) and ``level_embed``
    ((num_feature_levels, d_model), added to the positional encoding of input level l).
    When fed fewer levels than built for (FrozenSeg's SAM branch: built 3, fed 1), only
    ``level_embed[:L_in]`` is used and the attention keeps its ``num_feature_levels`` widths
    (release behaviour; see :class:`MSDeformAttn`).
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        num_feature_levels: int = 4,
        enc_n_points: int = 4,
    ):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        self.num_feature_levels = num_feature_levels
        encoder_layer = MSDeformAttnTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, activation, num_feature_levels, nhead, enc_n_points,
        )
        self.encoder = MSDeformAttnTransformerEncoder(encoder_layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module._reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def get_valid_ratio(mask: torch.Tensor) -> torch.Tensor:
        """mask (N, H, W) bool, True at padding -> (N, 2) valid fraction (w, h)."""
        _, h, w = mask.shape
        valid_h = torch.sum(~mask[:, :, 0], 1)
        valid_w = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_w.float() / w, valid_h.float() / h], dim=-1)

    def forward(
        self,
        srcs: list[torch.Tensor],
        pos_embeds: list[torch.Tensor],
        masks: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the levels jointly.

        Args:
            srcs: L_in maps (B, C, H_l, W_l), L_in <= num_feature_levels.
            pos_embeds: positional encodings, same shapes as ``srcs``.
            masks: optional (B, H_l, W_l) bool padding masks; None = no padding (as Mask2Former).

        Returns:
            memory (B, S, C) with S = sum_l H_l*W_l (levels concatenated in input order),
            spatial_shapes (L_in, 2) long, level_start_index (L_in,) long.
        """
        if len(srcs) > self.num_feature_levels:
            raise ValueError(
                f"Encoder built for {self.num_feature_levels} levels received {len(srcs)}."
            )
        if masks is None:
            masks = [
                torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
                for x in srcs
            ]
        src_flatten, mask_flatten, lvl_pos_flatten, shapes = [], [], [], []
        for lvl, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
            _, _, h, w = src.shape
            shapes.append((h, w))
            src_flatten.append(src.flatten(2).transpose(1, 2))
            mask_flatten.append(mask.flatten(1))
            pos = pos.flatten(2).transpose(1, 2)
            lvl_pos_flatten.append(pos + self.level_embed[lvl].view(1, 1, -1))
        src_flatten = torch.cat(src_flatten, 1)
        mask_flatten = torch.cat(mask_flatten, 1)
        lvl_pos_flatten = torch.cat(lvl_pos_flatten, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flatten.device)
        areas = spatial_shapes.prod(1)
        level_start_index = torch.cat((areas.new_zeros((1,)), areas.cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)
        memory = self.encoder(
            src_flatten, spatial_shapes, level_start_index, valid_ratios, lvl_pos_flatten, mask_flatten
        )
        return memory, spatial_shapes, level_start_index


class FrozenSegPixelDecoder(nn.Module):
    """Pixel decoder of FrozenSeg (registered as "MSDeformAttnPixelDecoder", the released name).

    CLIP branch (Mask2Former): res5, res4, res3 -> 1x1 conv + GN -> sine PE + level embedding ->
    deformable encoder -> three maps (strides 32, 16, 8); res2 -> lateral 1x1 conv (GN) + upsampled
    stride-8 map -> 3x3 conv (GN, ReLU) -> ``mask_features`` 1x1 conv.
    SAM branch: E_sam (B, sam_channels, h, w) -> ``fpn3`` (3x3 conv stride 2 + GN + ReLU) ->
    sine PE -> ``sam_transformer`` (built for ``sam_encoder_built_levels`` levels, fed one:
    release behaviour) -> S (B, conv_dim, h/2, w/2).
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        transformer_dropout: float,
        transformer_nheads: int,
        transformer_dim_feedforward: int,
        transformer_enc_layers: int,
        transformer_n_points: int = 4,
        conv_dim: int,
        mask_dim: int,
        norm: str | None = "GN",
        transformer_in_features: list[str],
        common_stride: int,
        sam_channels: int = 256,
        sam_encoder_built_levels: int = 3,
    ):
        """
        Args:
            input_shape: backbone features used (name -> ShapeSpec), e.g. res2..res5 (without
                the SAM embedding, whose width is ``sam_channels``).
            transformer_dropout, transformer_nheads, transformer_dim_feedforward,
            transformer_enc_layers, transformer_n_points: deformable encoder settings (both
                branches).
            conv_dim: channels of the decoder maps; mask_dim: channels of ``mask_features``.
            norm: norm of the FPN convs ("GN" or "").
            transformer_in_features: features fed to the deformable encoder (e.g. res3..res5);
                the finer ones go through the FPN.
            common_stride: stride of the mask features (4).
            sam_channels: channels of the SAM image-encoder output E_sam.
            sam_encoder_built_levels: level count the SAM-branch encoder is built for (released: 3).

        The deformable attention's exact fast path is a switch of each ``MSDeformAttn``, set on the
        built model (``MODEL.FAST_INFERENCE``, :meth:`SegmentationModel.set_fast_inference`).
        """
        super().__init__()
        norm = norm or ""
        transformer_input_shape = {
            k: v for k, v in input_shape.items() if k in transformer_in_features
        }
        sorted_shape = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in sorted_shape]  # fine to coarse, e.g. res2..res5
        self.feature_strides = [v.stride for _, v in sorted_shape]
        self.feature_channels = [v.channels for _, v in sorted_shape]

        sorted_tr = sorted(transformer_input_shape.items(), key=lambda kv: kv[1].stride)
        self.transformer_in_features = [k for k, _ in sorted_tr]  # e.g. res3, res4, res5
        transformer_in_channels = [v.channels for _, v in sorted_tr]
        self.transformer_feature_strides = [v.stride for _, v in sorted_tr]
        self.transformer_num_feature_levels = len(self.transformer_in_features)
        if self.transformer_num_feature_levels == 0:
            raise ValueError(
                f"None of the deformable-encoder features {transformer_in_features} is among "
                f"the input features {list(input_shape)}."
            )

        # coarse to fine (res5, res4, res3), as in Mask2Former
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), get_norm("GN", conv_dim))
            for c in transformer_in_channels[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=self.transformer_num_feature_levels,
            enc_n_points=transformer_n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1, stride=1, padding=0)
        c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = 3  # multi-scale features given to the decoder
        self.common_stride = common_stride
        min_stride = min(self.transformer_feature_strides)
        self.num_fpn_levels = max(0, int(math.log2(min_stride) - math.log2(common_stride)))

        # plain lists (coarse to fine) referencing the registered adapter_i / layer_i modules
        self.lateral_convs, self.output_convs = add_fpn_convs(
            self, self.feature_channels[: self.num_fpn_levels], conv_dim, norm
        )

        # SAM branch (release names: fpn3, sam_pe_layer, sam_transformer)
        self.sam_channels = sam_channels
        self.fpn3 = nn.Sequential(
            nn.Conv2d(sam_channels, conv_dim, kernel_size=3, stride=2, padding=1, bias=True),
            get_norm("GN", conv_dim),
            nn.ReLU(),
        )
        self.sam_pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.sam_transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=sam_encoder_built_levels,
            enc_n_points=transformer_n_points,
        )

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """Constructor kwargs from ``MODEL.SEM_SEG_HEAD.*`` and ``MODEL.MASK_FORMER.DROPOUT``.

        ``input_shape`` holds the backbone's features, filtered to
        ``MODEL.SEM_SEG_HEAD.IN_FEATURES``, and the SAM embedding :data:`SAM_EMBED` (its
        channels are ``sam_channels``).
        """
        head = cfg.MODEL.SEM_SEG_HEAD
        if SAM_EMBED not in input_shape:
            raise ValueError(
                f"{cls.__name__} needs the SAM embedding among its input features ({SAM_EMBED!r}); "
                f"it got {sorted(input_shape)}."
            )
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            "transformer_nheads": head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS,
            "transformer_dim_feedforward": head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            "transformer_in_features": list(head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES),
            "common_stride": head.COMMON_STRIDE,
            "sam_channels": input_shape[SAM_EMBED].channels,
            "sam_encoder_built_levels": head.SAM_ENCODER_BUILT_LEVELS,
        }

    def forward_features(self, features: dict[str, torch.Tensor]) -> PixelDecoderOutput:
        """Run both branches.

        Args:
            features: backbone maps by name, e.g. res2 (B, C2, H/4, W/4) .. res5 (B, C5, H/32, W/32),
                and :data:`SAM_EMBED`, E_sam (B, sam_channels, h, w) (released: (B, 256, 64, 64)).

        Returns:
            ``mask_features`` (B, mask_dim, H/4, W/4); ``multi_scale_features``: 3 maps
            (B, conv_dim, H/s, W/s) for strides s = 32, 16, 8; ``extras``: ``"sam_feature"``, S
            (B, conv_dim, ceil(h/2), ceil(w/2)) (released: (B, 256, 32, 32)), and
            ``"sam_embed"``, E_sam as given.
        """
        sam_embed = features[SAM_EMBED]
        # Mask2Former runs the pixel decoder in float32 even under mixed precision.
        with torch.autocast(device_type=sam_embed.device.type, enabled=False):
            mask_features, multi_scale_features, sam_feature = self._forward_features_fp32(features, sam_embed)
        return PixelDecoderOutput(mask_features, multi_scale_features, {"sam_feature": sam_feature, "sam_embed": sam_embed})

    def _forward_features_fp32(
        self, features: dict[str, torch.Tensor], sam_features: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        # CLIP branch: deformable encoder over res5, res4, res3
        srcs, pos = [], []
        for idx, name in enumerate(self.transformer_in_features[::-1]):
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        memory, spatial_shapes, _ = self.transformer(srcs, pos)
        bs = memory.shape[0]
        sizes = [h * w for h, w in spatial_shapes.tolist()]
        out = [
            z.transpose(1, 2).reshape(bs, -1, h, w)
            for z, (h, w) in zip(memory.split(sizes, dim=1), spatial_shapes.tolist())
        ]

        # FPN for the finer features (res2), coarse to fine
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            cur = self.lateral_convs[idx](features[name].float())
            y = cur + F.interpolate(out[-1], size=cur.shape[-2:], mode="bilinear", align_corners=False)
            out.append(self.output_convs[idx](y))
        multi_scale_features = out[: self.maskformer_num_feature_levels]

        # SAM branch: one level through an encoder built for more (release behaviour)
        sam = self.fpn3(sam_features.float())
        sam_memory, sam_shapes, _ = self.sam_transformer([sam], [self.sam_pe_layer(sam)])
        h_s, w_s = sam_shapes[0].tolist()
        sam_out = sam_memory.transpose(1, 2).reshape(bs, -1, h_s, w_s)

        return self.mask_features(out[-1]), multi_scale_features, sam_out

    def forward(self, features: dict[str, torch.Tensor]) -> PixelDecoderOutput:
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)


# The released configs name this decoder "MSDeformAttnPixelDecoder".
PIXEL_DECODER_REGISTRY.register(FrozenSegPixelDecoder, name="MSDeformAttnPixelDecoder")
