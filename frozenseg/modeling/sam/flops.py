"""FLOPs of the frozen SAM image encoder: by formula for segment-anything's ViTs (the work of the
fast path or of the upstream forward), by fvcore's count otherwise. 2 FLOP per multiply-add."""

from __future__ import annotations

from torch import nn

from ...utils.flops import fvcore_gflop
from .specs import ViTEncoderSpec, sam_spec

__all__ = ["sam_encoder_gflop", "vit_encoder_gflop"]


def vit_encoder_gflop(
    vit: ViTEncoderSpec,
    out_chans: int,
    image_size: int,
    batch: int = 1,
    padded_projections: bool = False,
) -> float:
    """GFLOP (2 per multiply-add) of segment-anything's ``ImageEncoderViT`` with relative
    positions, architecture ``vit`` and neck width ``out_chans``, on (batch, 3, S, S) inputs,
    S = ``image_size``.

    Counts the patch embedding, per block the qkv and output projections, ``q kᵀ`` and the
    weighted sum of ``v``, the two relative-position einsums and the MLP, and the neck's two
    convolutions. Windowed blocks attend within the zero-padded windows; ``padded_projections``
    also counts the qkv and output projections of the padding tokens (the upstream forward;
    the fast path projects the H×W tokens only).
    """
    t = image_size // vit.patch_size
    tokens = t * t
    c, heads = vit.embed_dim, vit.num_heads
    hd, mlp = c // heads, int(c * vit.mlp_ratio)
    macs = tokens * c * 3 * vit.patch_size**2  # patch embedding
    for i in range(vit.depth):
        window = 0 if i in vit.global_attn_indexes else vit.window_size
        if window:
            side = -(-t // window) * window
            windows, grid = (side // window) ** 2, window
        else:
            side, windows, grid = t, 1, t
        n = grid * grid
        projected = side * side if padded_projections else tokens
        macs += projected * c * 4 * c  # qkv (3C) and output projection (C)
        macs += windows * heads * n * n * 2 * hd  # q kᵀ and attn · v
        macs += windows * heads * n * grid * hd * 2  # relative positions (h and w)
        macs += tokens * c * mlp * 2  # MLP
    macs += tokens * c * out_chans + tokens * out_chans * out_chans * 9  # neck
    return 2.0 * batch * macs / 1e9


def sam_encoder_gflop(sam: nn.Module, args: tuple, kwargs: dict | None = None) -> float:
    """GFLOP of the frozen SAM encoder's call ``sam(images)`` (a ``SAMImageEncoder``):
    :func:`vit_encoder_gflop` of its spec (the fast path's work, or the upstream forward's when
    the fast path is off); fvcore for encoders without a ViT spec (MobileSAM)."""

    vit = sam_spec(sam.name).vit
    if vit is None:
        return fvcore_gflop(sam, args, kwargs)
    return vit_encoder_gflop(
        vit, sam.out_chans, sam.image_size, batch=int(args[0].shape[0]), padded_projections=not sam.fast_inference
    )
