"""An exact fast inference forward of segment-anything's ``ImageEncoderViT``.

:func:`fast_vit_forward` computes the function of ``ImageEncoderViT.forward`` from the same
module's parameters and submodules; segment-anything's classes are used as they are (nothing
is copied or patched). It differs from the upstream forward only in how the work is arranged:

- attention is one fused ``F.scaled_dot_product_attention`` call per chunk of query rows, with
  the decomposed relative-position bias of :paper:`mvitv2` as its float ``attn_mask``; the bias
  is built per chunk of heads and query rows (:data:`BIAS_CHUNK_ELEMENTS` floats at most, in
  one reused buffer), so neither the (heads·HW)×HW attention map nor a full-size bias is ever
  materialised;
- in windowed blocks the ``qkv`` projection runs on the H×W tokens, not on the zero-padded
  windows: a zero token's projection is the bias, so the padding is filled with the projection
  of one zero token (a call of ``qkv``, so that an int8 ``qkv`` of MODEL.INT8_CPU runs too).
  The window partition and the split into heads are one copy into SDPA's
  (windows, heads, tokens, head_dim) layout, and the output projection runs after the windows
  are merged and cropped (16 % fewer projection FLOPs at 64×64 tokens with 14×14 windows).

The result equals the upstream forward up to float rounding (max relative difference ~1e-6 on
random weights; ``tests/modeling/test_sam_fast_path.py``).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Block, ImageEncoderViT, get_rel_pos
from torch.nn import functional as F

__all__ = [
    "BIAS_CHUNK_ELEMENTS",
    "fast_vit_forward",
    "fast_block_forward",
    "rel_pos_attention",
    "supports_fast_path",
]

#: Largest attention-bias chunk, in float elements (16 MiB of fp32). With the chunk rule of
#: :func:`_chunks`, the fastest of 2^18..2^26 on the 2-core development machine for vit_b's
#: global attention (one head × 1024 queries per call: 325 ms vs 367 ms at 2^18 and 409 ms at
#: 2^26) and about the fastest for its 14×14 windows (4 heads of all 25 windows per call).
BIAS_CHUNK_ELEMENTS = 1 << 22


def _chunks(batch: int, heads: int, size: tuple[int, int], limit: int) -> tuple[int, int]:
    """(heads, query rows) per attention call so that its bias holds at most ``limit`` floats.

    Long query chunks come first (each call streams all keys and values once, so fewer, longer
    calls read them less often); heads are grouped only when all query rows of a head fit. On
    the 2-core development machine this is 23 % faster than 64-query chunks over all heads for
    vit_b's global attention and 16 % for its 14×14 windows (same-run ratios).
    """
    h, w = size
    per_row = batch * w * h * w  # bias floats of one query row of one head
    if per_row * h <= limit:
        return max(1, min(heads, limit // (per_row * h))), h
    return 1, max(1, limit // per_row)


def rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
    scale: float,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Softmax attention with segment-anything's decomposed relative-position bias.

    ``softmax(scale · q kᵀ + bias) v`` with ``bias[(i_h, i_w), (j_h, j_w)] = q_i · R_h[i_h, j_h]
    + q_i · R_w[i_w, j_w]`` (``R = get_rel_pos``; queries and keys on the same h×w grid), as
    ``Attention.forward`` with ``use_rel_pos`` computes it. The bias is built per chunk of heads
    and query rows (:func:`_chunks`) in one reused buffer.

    Args:
        q, k, v: (B, heads, h·w, head_dim), tokens row-major over the h×w grid.
        rel_pos_h, rel_pos_w: (2h - 1, head_dim) and (2w - 1, head_dim) embeddings.
        size: (h, w).
        scale: the logit scale (head_dim ** -0.5).
        chunk_elements: bias floats built at a time (at least one query row of one head);
            None = :data:`BIAS_CHUNK_ELEMENTS`.
    Returns:
        (B, heads, h·w, head_dim).
    """
    b, heads, n, dim = q.shape
    h, w = size
    rh = get_rel_pos(h, h, rel_pos_h)  # (h, h, head_dim)
    rw = get_rel_pos(w, w, rel_pos_w)  # (w, w, head_dim)
    grid_q = q.reshape(b, heads, h, w, dim)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, rh)  # (B, heads, h, w, h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, rw)  # (B, heads, h, w, w)
    group, rows = _chunks(b, heads, size, BIAS_CHUNK_ELEMENTS if chunk_elements is None else chunk_elements)
    if group == heads and rows == h:
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, n, n)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    out = torch.empty_like(q)
    buffer = q.new_empty(b * group * rows * w * n)
    for h0 in range(0, heads, group):
        h1 = min(heads, h0 + group)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            shape = (b, h1 - h0, r1 - r0, w, h, w)
            bias = buffer[: b * (h1 - h0) * (r1 - r0) * w * n].view(shape)
            torch.add(rel_h[:, h0:h1, r0:r1, :, :, None], rel_w[:, h0:h1, r0:r1, :, None, :], out=bias)
            out[:, h0:h1, r0 * w : r1 * w] = F.scaled_dot_product_attention(
                grid_q[:, h0:h1, r0:r1].reshape(b, h1 - h0, (r1 - r0) * w, dim),
                k[:, h0:h1],
                v[:, h0:h1],
                attn_mask=bias.view(b, h1 - h0, (r1 - r0) * w, n),
                scale=scale,
            )
    return out


def _to_heads(qkv: torch.Tensor, window: int, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, Hp, Wp, 3·C) projections -> q, k, v of shape (B·nW, heads, window², head_dim) in one
    copy (window = 0: the whole map is one window, (B, heads, Hp·Wp, head_dim))."""
    b, hp, wp, c3 = qkv.shape
    dim = c3 // (3 * heads)
    if window == 0:
        qkv = qkv.reshape(b, hp * wp, 3, heads, dim).permute(2, 0, 3, 1, 4)
        return qkv.contiguous().unbind(0)
    nh, nw = hp // window, wp // window
    qkv = qkv.view(b, nh, window, nw, window, 3, heads, dim)
    qkv = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7)  # (3, B, nh, nw, heads, ws, ws, dim)
    return qkv.reshape(3, b * nh * nw, heads, window * window, dim).unbind(0)


def _from_heads(out: torch.Tensor, batch: int, padded: tuple[int, int], size: tuple[int, int], window: int) -> torch.Tensor:
    """Inverse of :func:`_to_heads` for the attention output (B·nW, heads, window², head_dim)
    -> (B, H, W, C), cropped to ``size`` = (H, W), in one copy."""
    _, heads, _, dim = out.shape
    hp, wp = padded
    h, w = size
    if window == 0:
        return out.transpose(1, 2).reshape(batch, h, w, heads * dim)
    nh, nw = hp // window, wp // window
    out = out.view(batch, nh, nw, heads, window, window, dim).permute(0, 1, 4, 2, 5, 3, 6)
    out = out.reshape(batch, hp, wp, heads, dim)[:, :h, :w]
    return out.reshape(batch, h, w, heads * dim)


def fast_block_forward(block: Block, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` (segment-anything ``Block`` with relative positions), fast path.

    Args:
        block: an upstream ``Block`` whose attention uses relative positions.
        x: (B, H, W, C) tokens.
    Returns:
        (B, H, W, C).
    """
    attn = block.attn
    b, h, w, _ = x.shape
    window = block.window_size
    qkv = attn.qkv(block.norm1(x))  # (B, H, W, 3C)
    if window > 0:
        hp, wp = -(-h // window) * window, -(-w // window) * window
        if (hp, wp) != (h, w):
            # upstream pads the normalised tokens with zeros; their projection is the bias (a
            # module call, not a read of ``qkv.bias``, so that an int8 ``qkv`` works as well)
            padded = qkv.new_empty(b, hp, wp, qkv.shape[-1])
            padded[:] = attn.qkv(x.new_zeros(1, x.shape[-1]))
            padded[:, :h, :w] = qkv
            qkv = padded
        grid = (window, window)
    else:
        hp, wp = h, w
        grid = (h, w)
    q, k, v = _to_heads(qkv, window, attn.num_heads)
    out = rel_pos_attention(q, k, v, attn.rel_pos_h, attn.rel_pos_w, grid, attn.scale)
    x = x + attn.proj(_from_heads(out, b, (hp, wp), (h, w), window))
    return x + block.mlp(block.norm2(x))


def supports_fast_path(encoder: torch.nn.Module) -> bool:
    """True when :func:`fast_vit_forward` computes ``encoder``'s forward: a segment-anything
    ``ImageEncoderViT`` whose blocks all use relative positions (every released SAM ViT)."""
    return isinstance(encoder, ImageEncoderViT) and all(
        type(blk) is Block and blk.attn.use_rel_pos for blk in encoder.blocks
    )


@torch.no_grad()
def fast_vit_forward(encoder: ImageEncoderViT, x: torch.Tensor) -> torch.Tensor:
    """``encoder(x)`` through :func:`fast_block_forward` (see the module docstring).

    Args:
        encoder: a segment-anything ``ImageEncoderViT`` (``supports_fast_path(encoder)``).
        x: (B, 3, S, S) normalised images.
    Returns:
        (B, out_chans, S / 16, S / 16).
    """
    x = encoder.patch_embed(x)  # (B, S/16, S/16, C)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    for block in encoder.blocks:
        x = fast_block_forward(block, x)
    return encoder.neck(x.permute(0, 3, 1, 2))
