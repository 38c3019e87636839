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

Provenance: ``VisionTransformer.forward(x, m)`` of the OVSeg release's CLIP fork (Liang et al.,
CVPR 2023), re-expressed in batch-first layout. Independent implementation.
"""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.nn import functional as F

__all__ = ["add_mask_embedding", "mask_prompt_depth", "encode_image_with_mask_prompts", "check_plain_vit"]


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


def encode_image_with_mask_prompts(
    visual: VisionTransformer, images: torch.Tensor, masks: torch.Tensor | None = None
) -> torch.Tensor:
    """CLIP image features, with mask prompts when ``masks`` is given.

    Args:
        visual: open_clip ViT; with ``masks`` it must carry ``mask_embedding`` (d, G, W).
        images: (N, 3, S, S) CLIP-normalised images (S = the model's input size).
        masks: (N, 1, S, S) foreground masks (>0 = foreground), or None for the plain forward
            (equal to ``visual(images)``).
    Returns:
        (N, D) image features (not normalised), D = output dim of ``visual.proj``.
    """
    check_plain_vit(visual)
    x = visual.conv1(images.to(visual.conv1.weight.dtype))  # (N, W, g, g)
    x = x.flatten(2).transpose(1, 2)  # (N, G, W) patch tokens
    depth = 0
    if masks is not None:
        depth = mask_prompt_depth(visual)
        if depth == 0:
            raise ValueError(
                "Mask prompts were requested but the CLIP visual tower has no mask_embedding; build it "
                "with MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH >= 1 or set MASK_PROMPT_FWD False."
            )
        prompts = visual.mask_embedding.to(x.dtype)
        patch = visual.conv1.kernel_size
        # (N, G, 1): 1 where any pixel of the patch is foreground (ceil of the average; docs/models/ovseg.md quirk 6).
        # masks[:, :1] keeps the batch dimension for N = 1 (the release's squeeze fails, docs/models/ovseg.md quirk 9).
        keep = torch.ceil(F.avg_pool2d((masks[:, :1] > 0).to(x.dtype), patch, patch)).flatten(1)[..., None]
        if keep.shape[1] != x.shape[1]:
            raise ValueError(
                f"The masks {tuple(masks.shape)} give {keep.shape[1]} patches but the images give "
                f"{x.shape[1]}; pass masks of the image size."
            )
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
