"""OVSeg's mask-prompted CLIP image encoder over open_clip's ``VisionTransformer`` (docs/models/ovseg.md §2.9,
§9.1, docs/models/ovseg.md quirks 6 and 9).

The learned prompts ``visual.mask_embedding`` (depth d, G = grid², width W) replace the patch
tokens of background patches (a patch is foreground if *any* of its pixels is) at the input,
before the positional embedding is added, and after each of the first d - 1 residual blocks
(CLS untouched, no positional embedding re-added). Attention is not masked.

The parameter is registered on the open_clip ``visual`` *instance* (``register_parameter``), so
the state-dict key is ``visual.mask_embedding`` as in the release; open_clip's classes and their
``forward`` stay untouched: :func:`encode_image_with_mask_prompts` is this project's forward over
the module's public attributes (``conv1``, ``class_embedding``, ``positional_embedding``,
``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj``).

Fast path (``fast=True``; ``MODEL.FAST_INFERENCE`` through :class:`OVSegClipAdapter`, without
gradients): :func:`fast_encode_image_with_mask_prompts` computes the same function from the same
parameters, arranged for speed; open_clip's modules are read, never patched:

- attention is one fused ``F.scaled_dot_product_attention`` per block and chunk of crops, on
  the ``in_proj`` projections split into heads by views (``nn.MultiheadAttention``'s own
  kernel is not called);
- QuickGELU ``x·sigmoid(1.702x)`` is ``silu(1.702x)/1.702`` with the two factors folded into
  ``c_fc`` and ``c_proj`` (one in-place pass over the hidden activations instead of three);
- the last block computes the keys and values of every token but the query, the output
  projection and the MLP of the class token only (the only token read afterwards);
- the blocks run equal chunks of at most :data:`FAST_CHUNK_CROPS` crops, which bounds the
  (chunk, L, 4W) hidden activations, while the scaled weights are built once per block and call;
- the prompt replacement is a ``torch.where`` on the patch flags (bit-identical to the blend
  ``x·k + E·(1 - k)`` for k in {0, 1}).

It equals the reference forward, and open_clip's ``encode_image`` without prompts, up to float
rounding (max relative difference about 4e-7 on random tiny ViTs;
``tests/modeling/ovseg/test_clip_fast_path.py``).

Provenance: ``VisionTransformer.forward(x, m)`` of the OVSeg release's CLIP fork (Liang et al.,
CVPR 2023), re-expressed in batch-first layout. Independent implementation.
"""

from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock, VisionTransformer
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FAST_CHUNK_CROPS",
    "add_mask_embedding",
    "mask_prompt_depth",
    "encode_image_with_mask_prompts",
    "fast_encode_image_with_mask_prompts",
    "supports_fast_path",
    "check_plain_vit",
]

#: Most crops per chunk of the fast forward's blocks (the crops are split into equal chunks of
#: at most this many). On the 2-core development machine, ViT-B/16, same-run seconds per crop:
#: with 2 threads on the busy machine (wall time, 64 crops) chunks of 16 / 32 / 64 crops took
#: 0.63 / 0.59 / 0.56 s and the reference forward 0.81 s (fewer, larger operations lose less
#: to the other processes); with one thread (CPU time, 32 crops) chunks of 8 / 16 / 32 took
#: 0.358 / 0.359 / 0.369 s and the reference 0.447 s.
FAST_CHUNK_CROPS = 64
#: QuickGELU's factor: ``x·sigmoid(1.702x)``.
_QUICK_GELU = 1.702


def check_plain_vit(visual: nn.Module) -> None:
    """Raise unless ``visual`` is an open_clip ViT whose forward the mask-prompt forward
    reproduces: class-token pooling, ``ln_post`` before pooling, no attentional pooler, no
    patch dropout in use, batch-first blocks."""
    if not isinstance(visual, VisionTransformer):
        raise TypeError(
            f"Mask prompts need an open_clip VisionTransformer visual tower, not {type(visual).__name__}; "
            f"use a ViT CLIP model such as ViT-L-14-quickgelu or ViT-B-16-quickgelu."
        )
    if (
        visual.attn_pool is not None
        or visual.pool_type != "tok"
        or visual.final_ln_after_pool
        or not isinstance(visual.patch_dropout, nn.Identity)
        or not visual.transformer.batch_first
        or visual.proj is None
    ):
        raise ValueError(
            "The mask-prompt forward reproduces OpenAI-style ViTs only (class-token pooling, ln_post "
            "before pooling, a projection, batch-first blocks, no patch dropout); build the CLIP model from an OpenAI ViT config."
        )


def add_mask_embedding(visual: VisionTransformer, depth: int) -> nn.Parameter:
    """Register ``mask_embedding`` (depth, G, W) on ``visual`` (zeros, as the release builds it;
    loaded from the checkpoint) and return it. G = number of patches, W = token width."""
    check_plain_vit(visual)
    if depth < 1:
        raise ValueError(f"MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH must be >= 1 to add mask prompts; got {depth}.")
    num_patches = visual.positional_embedding.shape[0] - 1
    width = visual.class_embedding.shape[0]
    param = nn.Parameter(
        torch.zeros(
            depth, num_patches, width,
            dtype=visual.class_embedding.dtype, device=visual.class_embedding.device,
        )
    )
    visual.register_parameter("mask_embedding", param)
    return param


def mask_prompt_depth(visual: nn.Module) -> int:
    """Depth of the registered mask prompts (0 when ``visual`` has no ``mask_embedding``)."""
    emb = getattr(visual, "mask_embedding", None)
    return 0 if emb is None else emb.shape[0]


def _patch_tokens(visual: VisionTransformer, images: torch.Tensor, masks: torch.Tensor | None):
    """(patch tokens (N, G, W), prompt depth d (0 without masks), foreground flags (N, G, 1)
    float 0/1 or None) of the reference and the fast forward."""
    check_plain_vit(visual)
    x = visual.conv1(images.to(visual.conv1.weight.dtype))  # (N, W, g, g)
    x = x.flatten(2).transpose(1, 2)  # (N, G, W) patch tokens
    if masks is None:
        return x, 0, None
    depth = mask_prompt_depth(visual)
    if depth == 0:
        raise ValueError(
            "Mask prompts were requested but the CLIP visual tower has no mask_embedding; build it "
            "with MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH >= 1 or set MASK_PROMPT_FWD False."
        )
    patch = visual.conv1.kernel_size
    # (N, G, 1): 1 where any pixel of the patch is foreground (ceil of the average; docs/models/ovseg.md quirk 6).
    # masks[:, :1] keeps the batch dimension for N = 1 (the release's squeeze fails, docs/models/ovseg.md quirk 9).
    keep = torch.ceil(F.avg_pool2d((masks[:, :1] > 0).to(x.dtype), patch, patch)).flatten(1)[..., None]
    if keep.shape[1] != x.shape[1]:
        raise ValueError(
            f"The masks {tuple(masks.shape)} give {keep.shape[1]} patches but the images give "
            f"{x.shape[1]}; pass masks of the image size."
        )
    return x, depth, keep


def encode_image_with_mask_prompts(
    visual: VisionTransformer, images: torch.Tensor, masks: torch.Tensor | None = None, *, fast: bool = False
) -> torch.Tensor:
    """CLIP image features, with mask prompts when ``masks`` is given.

    Args:
        visual: open_clip ViT; with ``masks`` it must carry ``mask_embedding`` (d, G, W).
        images: (N, 3, S, S) CLIP-normalised images (S = the model's input size).
        masks: (N, 1, S, S) foreground masks (>0 = foreground), or None for the plain forward
            (equal to ``visual(images)``).
        fast: run :func:`fast_encode_image_with_mask_prompts` when ``visual`` supports it
            (:func:`supports_fast_path`) and gradients are off; False (default) runs the
            reference forward below, which follows the release step by step.
    Returns:
        (N, D) image features (not normalised), D = output dim of ``visual.proj``.
    """
    if fast and not torch.is_grad_enabled() and supports_fast_path(visual):
        return fast_encode_image_with_mask_prompts(visual, images, masks)
    x, depth, keep = _patch_tokens(visual, images, masks)
    if depth:
        prompts = visual.mask_embedding.to(x.dtype)
        x = x * keep + prompts[0][None] * (1 - keep)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        x = block(x)
        if i + 1 < depth:
            patches = x[:, 1:] * keep + prompts[i + 1][None] * (1 - keep)
            x = torch.cat([x[:, :1], patches], dim=1)
    return visual.ln_post(x[:, 0]) @ visual.proj


# ------------------------------------------------------------------------------------------------
# Fast path
# ------------------------------------------------------------------------------------------------
def supports_fast_path(visual: nn.Module) -> bool:
    """True when :func:`fast_encode_image_with_mask_prompts` computes ``visual``'s function: an
    OpenAI-style open_clip ViT (:func:`check_plain_vit`) whose blocks are plain
    ``ResidualAttentionBlock`` s (``nn.MultiheadAttention`` with a packed, biased input projection,
    no layer scale, no cross-attention) with a QuickGELU or exact GELU MLP of biased linear layers
    (every OVSeg CLIP)."""
    try:
        check_plain_vit(visual)
    except (TypeError, ValueError):
        return False
    for block in visual.transformer.resblocks:
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
            return False
        attn, mlp = block.attn, block.mlp
        if (
            type(attn) is not nn.MultiheadAttention
            or not attn._qkv_same_embed_dim
            or attn.in_proj_bias is None
            or attn.out_proj.bias is None
            or attn.bias_k is not None
            or not attn.batch_first
            or not isinstance(block.ls_1, nn.Identity)
            or not isinstance(block.ls_2, nn.Identity)
            or list(dict(mlp.named_children())) != ["c_fc", "gelu", "c_proj"]
            or type(mlp.c_fc) is not nn.Linear
            or type(mlp.c_proj) is not nn.Linear
            or mlp.c_fc.bias is None
            or mlp.c_proj.bias is None
            or not (type(mlp.gelu) is QuickGELU or (type(mlp.gelu) is nn.GELU and mlp.gelu.approximate == "none"))
        ):
            return False
    return True


def _fast_block(block: ResidualAttentionBlock, x: torch.Tensor, class_token_only: bool, chunk: int) -> torch.Tensor:
    """``block(x)`` for (N, L, W) tokens, a chunk of crops at a time; with ``class_token_only``
    only the class token's output (N, 1, W) (its attention still reads every token)."""
    attn, mlp = block.attn, block.mlp
    n, length, width = x.shape
    heads = attn.num_heads
    head_dim = width // heads
    w_in, b_in = attn.in_proj_weight, attn.in_proj_bias
    quick = type(mlp.gelu) is QuickGELU
    if quick:  # x·sigmoid(1.702x) = silu(1.702x) / 1.702, the factors folded into the weights
        w_fc, b_fc = mlp.c_fc.weight * _QUICK_GELU, mlp.c_fc.bias * _QUICK_GELU
        w_proj = mlp.c_proj.weight / _QUICK_GELU
    else:
        w_fc, b_fc, w_proj = mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight
    out_len = 1 if class_token_only else length
    out = x.new_empty(n, out_len, width)
    for c0 in range(0, n, chunk):
        xc = x[c0 : c0 + chunk]
        b = xc.shape[0]
        h = block.ln_1(xc)
        if class_token_only:
            kv = F.linear(h, w_in[width:], b_in[width:]).view(b, length, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
            k, v = kv.unbind(0)
            q = F.linear(h[:, :1], w_in[:width], b_in[:width]).view(b, 1, heads, head_dim).transpose(1, 2)
            residual = xc[:, :1]
        else:
            qkv = F.linear(h, w_in, b_in).view(b, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            residual = xc
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, out_len, width)
        y = residual + F.linear(o, attn.out_proj.weight, attn.out_proj.bias)
        h = F.linear(block.ln_2(y), w_fc, b_fc)
        h = F.silu(h, inplace=True) if quick else F.gelu(h)
        y += F.linear(h, w_proj, mlp.c_proj.bias)
        out[c0 : c0 + b] = y
    return out


def fast_encode_image_with_mask_prompts(
    visual: VisionTransformer,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    chunk: int = FAST_CHUNK_CROPS,
) -> torch.Tensor:
    """:func:`encode_image_with_mask_prompts` arranged for inference speed (see the module
    docstring); same arguments and result up to float rounding. ``visual`` must pass
    :func:`supports_fast_path`; ``chunk``: most crops per block call (equal chunks)."""
    if not supports_fast_path(visual):
        raise ValueError(
            "The fast mask-prompt forward needs an OpenAI-style open_clip ViT with plain residual blocks "
            "(see supports_fast_path); run encode_image_with_mask_prompts(..., fast=False)."
        )
    x, depth, keep = _patch_tokens(visual, images, masks)
    if depth:
        prompts = visual.mask_embedding.to(x.dtype)
        foreground = keep > 0  # (N, G, 1)
        x = torch.where(foreground, x, prompts[0])
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype))
    blocks = visual.transformer.resblocks
    num = x.shape[0]
    chunk = -(-num // -(-num // max(1, int(chunk)))) if num else 1  # equal chunks of at most `chunk`
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1
        x = _fast_block(block, x, class_token_only=last, chunk=chunk)
        if i + 1 < depth and not last:  # after the last block only the class token is read
            x[:, 1:] = torch.where(foreground, x[:, 1:], prompts[i + 1])
    return visual.ln_post(x[:, 0]) @ visual.proj
