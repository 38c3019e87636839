"""Text-tower forwards of a frozen open_clip ``CLIP`` model, over open_clip's own modules.

- ``encode_text(model, tokens)``: open_clip's ``CLIP.encode_text`` on token sequences truncated
  after their last end-of-text token (open_clip's own method adds the positional embedding of
  the full context, so it needs all 77 tokens). The causal mask makes the pooled end-of-text
  feature independent of the padding after it, so the truncated result equals the full one.
- ``encode_text_prefixes`` / ``encode_text_shared_prefix``: shared-prefix encoding. Many prompts
  start with the same tokens (SOT + template words, e.g. "a photo of a"). With the causal mask
  the hidden states of those tokens are identical in every prompt and every layer, so they are
  computed once (their per-layer keys and values are kept in a ``TextPrefixCache``) and only the
  remaining tokens of each prompt are run, attending to [prefix keys/values ; causal own
  keys/values]. The blocks are re-expressed layer by layer on open_clip's module attributes.
- ``text_tensors(model)``: the named tensors of the text tower (the text-cache fingerprint).

Both forwards are tested against open_clip's own ``CLIP.encode_text`` on the tiny ConvNeXt and
tiny ModifiedResNet models (tests/modeling/test_clip_text.py) and, through OVSeg's text encoder,
on a tiny ViT CLIP (tests/modeling/ovseg/test_clip_adapter.py). :class:`OpenCLIPTextEncoding`
gives every CLIP text wrapper these forwards.

Assumptions about open_clip
---------------------------
Every structural or private attribute these forwards rely on; ``check_text_tower`` verifies
them on a built model (``prefix_sharing=False``: rules 1-4, checked when the backbone is built;
``prefix_sharing=True``: all rules, checked before every shared-prefix encoding).

1. ``model.token_embedding`` (``nn.Embedding``), ``model.positional_embedding`` (ctx, W),
   ``model.ln_final`` and ``model.text_projection`` (``nn.Linear``, a (W, D) tensor, or None)
   are the text tower's modules, as set by ``CLIP.__init__``.
2. ``model.transformer`` is an open_clip ``Transformer``: ``transformer(x, attn_mask=...)``
   takes and returns batch-first (N, L, W) whatever its ``batch_first`` flag, and
   ``transformer.get_cast_dtype()`` is the compute dtype.
3. ``model.text_pool_type`` is ``"argmax"`` (pool the largest token id, the end-of-text token)
   or ``"eos"`` (pool ``model.text_eos_id``), pooled with open_clip's
   ``open_clip.transformer.text_global_pool``; other pool types do not pool the end-of-text
   token, so truncating after it would change the result.
4. ``model.attn_mask`` is the (ctx, ctx) additive causal mask: 0 on and below the diagonal,
   -inf above (its values are verified except on the meta device).
5. (prefix sharing) ``model.text_pool_type == "argmax"``: the suffix pass pools the largest id.
6. (prefix sharing) ``type(model.transformer).forward is Transformer.forward``: the blocks run
   one after the other on ``transformer.resblocks``.
7. (prefix sharing) every block is an open_clip ``ResidualAttentionBlock`` whose ``forward`` and
   ``attention`` are open_clip's own and which has no cross-attention norm (``ln_1_kv``):
   ``x + ls_1(attn(ln_1(x))); x + ls_2(mlp(ln_2(x)))``.
8. (prefix sharing) every ``block.attn`` is a ``torch.nn.MultiheadAttention`` with a packed
   in-projection (``in_proj_weight`` (3W, W), ``in_proj_bias``; ``kdim == vdim == embed_dim``,
   the public equivalent of torch's private ``_qkv_same_embed_dim``), ``out_proj``,
   ``num_heads``, no ``bias_k`` / ``bias_v``, no ``add_zero_attn`` and no active dropout;
   its attention equals ``F.scaled_dot_product_attention`` with the default 1/sqrt(head dim)
   scale (computed here as explicit products, ``_attention``).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional, Sequence

import torch
from open_clip.transformer import ResidualAttentionBlock, Transformer, text_global_pool
from torch import nn
from torch.nn import functional as F

from ...utils.errors import UserInputError

__all__ = [
    "UnsupportedTextTowerError",
    "TextPrefixCache",
    "check_text_tower",
    "encode_text",
    "encode_text_prefixes",
    "encode_text_shared_prefix",
    "text_tensors",
]


class UnsupportedTextTowerError(UserInputError, RuntimeError):
    """The text tower breaks an assumption of this module (see "Assumptions about open_clip")."""


class TextPrefixCache(NamedTuple):
    """Per-layer keys/values of G token prefixes (built by ``encode_text_prefixes``)."""

    kv: list  # one (k, v) per text block, each (G, heads, P, W / heads); P = max length
    lengths: torch.Tensor  # (G,) int64 valid length of each prefix (<= P)
    max_token: torch.Tensor  # (G,) int64 largest token id of each prefix (-1 if empty)


def _is_causal_mask(mask: torch.Tensor) -> bool:
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    n = mask.shape[0]
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
    return bool((mask[causal] == 0).all()) and bool(torch.isneginf(mask[~causal]).all())


def _problems(model: nn.Module, prefix_sharing: bool) -> Iterator[str]:
    """The broken assumptions (numbered as in the module docstring), in order."""
    proj = getattr(model, "text_projection", "missing")
    if not (
        isinstance(getattr(model, "token_embedding", None), nn.Embedding)
        and isinstance(getattr(model, "positional_embedding", None), torch.Tensor)
        and isinstance(getattr(model, "ln_final", None), nn.Module)
        and (proj is None or isinstance(proj, (nn.Linear, torch.Tensor)))
    ):
        yield "(1) it lacks token_embedding, positional_embedding, ln_final or text_projection"
    transformer = getattr(model, "transformer", None)
    if not isinstance(transformer, Transformer):
        yield f"(2) model.transformer is a {type(transformer).__name__}, not an open_clip Transformer"
    pool_type = getattr(model, "text_pool_type", None)
    if pool_type not in ("argmax", "eos"):
        yield f"(3) it pools {pool_type!r}, not the end-of-text token ('argmax' or 'eos')"
    mask = getattr(model, "attn_mask", None)
    if not isinstance(mask, torch.Tensor):
        yield "(4) model.attn_mask is not a tensor"
    elif mask.device.type != "meta" and not _is_causal_mask(mask):
        yield "(4) model.attn_mask is not the additive causal mask"
    if not prefix_sharing:
        return
    if pool_type != "argmax":
        yield f"(5) it pools {pool_type!r}, not 'argmax'"
    if isinstance(mask, torch.Tensor) and mask.device.type == "meta":
        yield "(4) model.attn_mask is on the meta device (its values are unknown)"
    if isinstance(transformer, Transformer) and type(transformer).forward is not Transformer.forward:
        yield f"(6) {type(transformer).__name__} overrides Transformer.forward"
    for i, blk in enumerate(getattr(transformer, "resblocks", ())):
        if not (
            isinstance(blk, ResidualAttentionBlock)
            and type(blk).forward is ResidualAttentionBlock.forward
            and type(blk).attention is ResidualAttentionBlock.attention
            and not hasattr(blk, "ln_1_kv")
        ):
            yield f"(7) text block {i} is not open_clip's self-attention ResidualAttentionBlock"
            continue
        attn = blk.attn
        if not (
            isinstance(attn, nn.MultiheadAttention)
            and attn.in_proj_weight is not None
            and attn.kdim == attn.vdim == attn.embed_dim
            and attn.bias_k is None
            and attn.bias_v is None
            and not attn.add_zero_attn
            and not (attn.training and attn.dropout > 0)
        ):
            yield f"(8) the attention of text block {i} is not a packed nn.MultiheadAttention"


def check_text_tower(model: nn.Module, *, prefix_sharing: bool) -> None:
    """Verify the assumptions about open_clip (module docstring) on a built model.

    Args:
        model: an open_clip ``CLIP`` model.
        prefix_sharing: also verify the assumptions of the shared-prefix forward (rules 5-8).
    Raises:
        UnsupportedTextTowerError: naming the first broken assumption.
    """
    problem = next(_problems(model, prefix_sharing), None)
    if problem is None:
        return
    if prefix_sharing:
        raise UnsupportedTextTowerError(
            f"The CLIP text tower does not support prefix sharing: {problem}; build the text "
            f"classifier with share_prefixes=False (the full-prompt path)."
        )
    raise UnsupportedTextTowerError(
        f"The CLIP text tower is not the standard open_clip CLIP text transformer: {problem}; "
        f"use a CLIP model with that text tower (e.g. convnext_large_d_320, RN50x64)."
    )


def _project(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.text_projection`` of pooled features (N, W) -> (N, D), as ``CLIP.encode_text``."""
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def encode_text(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Text features (not normalised) at the end-of-text token, projected.

    Args:
        model: an open_clip ``CLIP`` model.
        tokens: (N, L) token ids, L <= context length; may be truncated after the last
            end-of-text token (the causal mask makes the result identical).
    Returns:
        (N, D), open_clip's ``CLIP.encode_text`` of the zero-padded tokens.
    """
    _, length = tokens.shape
    context_length = model.positional_embedding.shape[0]
    if length > context_length:
        raise ValueError(f"Token length {length} exceeds the CLIP context length {context_length}.")
    tokens = tokens.to(model.positional_embedding.device)
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)  # (N, L, W)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])  # batch-first in and out
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    return _project(model, x)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask)`` (boolean ``mask``, True =
    attend; default 1/sqrt(head dim) scale) as explicit matrix products and a softmax. The fused
    CPU kernel rounds differently with the number of threads and with the other rows of the
    batch; here each row's result depends on that row alone (for a given shape), which the text
    classifier's per-synonym caches rely on (text_classifier.py)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype), v)


def _blocks_with_past(
    model: nn.Module,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    past_kv: Optional[list],
    past_valid: Optional[torch.Tensor],
    pool_index: Optional[torch.Tensor],
):
    """Text blocks on ``tokens`` (B, S) at ``positions`` (B, S), attending to the past keys /
    values ``past_kv`` (per block (k, v), each (B, heads, P, hd); ``past_valid`` (B, P) marks
    the real ones) and causally to themselves.

    ``pool_index`` None: returns the tokens' per-block (k, v), each (B, heads, S, hd).
    ``pool_index`` (B,): returns ``ln_final`` of the last block's output at that position
    (B, W); the last block runs its queries, out-projection and MLP only there.
    """
    cast_dtype = model.transformer.get_cast_dtype()
    b, s = tokens.shape
    dev = tokens.device
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[positions].to(cast_dtype)
    own = torch.ones(s, s, dtype=torch.bool, device=dev).tril()
    if past_kv is not None:
        p = past_valid.shape[1]
        mask = torch.cat([past_valid[:, None, :].expand(b, s, p), own.expand(b, s, s)], dim=-1)
    else:
        mask = own.expand(b, s, s)
    mask = mask[:, None]  # (B, 1, S, P + S)
    rows = torch.arange(b, device=dev)
    blocks = model.transformer.resblocks
    kv_out = []
    for i, blk in enumerate(blocks):
        attn = blk.attn
        heads = attn.num_heads
        width = x.shape[-1]
        hd = width // heads
        w, bias = attn.in_proj_weight, attn.in_proj_bias
        h = blk.ln_1(x)
        last = i == len(blocks) - 1
        if last and pool_index is not None:
            kv = F.linear(h, w[width:], bias[width:] if bias is not None else None)
            k, v = kv.view(b, s, 2, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
            x = x[rows, pool_index][:, None]  # (B, 1, W)
            q = F.linear(h[rows, pool_index][:, None], w[:width], bias[:width] if bias is not None else None)
            q = q.view(b, 1, heads, hd).transpose(1, 2)
            mask = mask[rows, :, pool_index][:, :, None]  # (B, 1, 1, P + S)
        else:
            qkv = F.linear(h, w, bias)
            q, k, v = qkv.view(b, s, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, S, hd)
        if pool_index is None:
            kv_out.append((k, v))
            if last:
                return kv_out  # the last block's outputs are not needed
        if past_kv is not None:
            pk, pv = past_kv[i]
            k = torch.cat([pk, k], dim=2)
            v = torch.cat([pv, v], dim=2)
        o = _attention(q, k, v, mask)
        o = o.transpose(1, 2).reshape(b, q.shape[2], width)
        x = x + blk.ls_1(attn.out_proj(o))
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return model.ln_final(x[:, 0])


def encode_text_prefixes(model: nn.Module, prefixes: Sequence[torch.Tensor]) -> TextPrefixCache:
    """Per-layer keys/values of G token prefixes, for ``encode_text_shared_prefix``.

    Args:
        model: an open_clip ``CLIP`` model passing ``check_text_tower(prefix_sharing=True)``.
        prefixes: G 1-D token-id tensors; lengths may differ and may be 0.
    Raises:
        UnsupportedTextTowerError: the text tower breaks an assumption of this module.
    """
    check_text_tower(model, prefix_sharing=True)
    dev = model.positional_embedding.device
    ctx = model.positional_embedding.shape[0]
    prefixes = [torch.as_tensor(p).reshape(-1).long() for p in prefixes]
    g = len(prefixes)
    lengths = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
    p_max = int(lengths.max()) if g else 0
    if p_max >= ctx:
        raise ValueError(f"A text prefix of {p_max} tokens leaves no room in the context length {ctx}.")
    max_token = torch.tensor([int(p.max()) if len(p) else -1 for p in prefixes], dtype=torch.long)
    if p_max == 0:
        cast_dtype = model.transformer.get_cast_dtype()
        kv = []
        for blk in model.transformer.resblocks:
            heads, width = blk.attn.num_heads, blk.attn.embed_dim
            empty = torch.empty(g, heads, 0, width // heads, dtype=cast_dtype, device=dev)
            kv.append((empty, empty))
        return TextPrefixCache(kv, lengths.to(dev), max_token.to(dev))
    tokens = torch.zeros(g, p_max, dtype=torch.long)
    for j, p in enumerate(prefixes):
        tokens[j, : len(p)] = p
    tokens = tokens.to(dev)
    positions = torch.arange(p_max, device=dev).expand(g, p_max)
    # right padding is harmless: causal, and masked out as a key by the suffix pass
    kv = _blocks_with_past(model, tokens, positions, None, None, None)
    return TextPrefixCache(kv, lengths.to(dev), max_token.to(dev))


def encode_text_shared_prefix(
    model: nn.Module,
    prefix_cache: TextPrefixCache,
    prefix_index: torch.Tensor,
    suffix_tokens: torch.Tensor,
) -> torch.Tensor:
    """``encode_text`` of the prompts ``prefix_g + suffix_b`` (g = ``prefix_index[b]``),
    reusing the cached prefix keys/values.

    Args:
        model: the open_clip ``CLIP`` model that built ``prefix_cache``.
        prefix_cache: from ``encode_text_prefixes``.
        prefix_index: (B,) index of each prompt's prefix in the cache.
        suffix_tokens: (B, S) the remaining token ids of each prompt, zero padded; each must
            contain the end-of-text token (the largest id of the prompt, which is pooled)
            and may be truncated after it.
    Returns:
        (B, D), equal to ``encode_text`` of the full prompts up to float rounding.
    """
    dev = model.positional_embedding.device
    ctx = model.positional_embedding.shape[0]
    suffix_tokens = suffix_tokens.to(dev).long()
    prefix_index = prefix_index.to(dev).long()
    b, s = suffix_tokens.shape
    if s == 0:
        raise ValueError("Empty suffix: the pooled end-of-text token must be in the suffix.")
    lengths = prefix_cache.lengths[prefix_index]  # (B,)
    pool_index = suffix_tokens.argmax(dim=-1)
    if bool((prefix_cache.max_token[prefix_index] >= suffix_tokens.max(dim=-1).values).any()):
        raise ValueError("The pooled (largest-id) token of a prompt lies in its shared prefix.")
    if bool((lengths + pool_index >= ctx).any()):
        raise ValueError(f"A prompt exceeds the CLIP context length {ctx}.")
    offsets = torch.arange(s, device=dev)
    positions = (lengths[:, None] + offsets).clamp(max=ctx - 1)  # clamped ones: padding only
    p_max = prefix_cache.kv[0][0].shape[2]
    past_valid = torch.arange(p_max, device=dev)[None, :] < lengths[:, None]
    past_kv = [(k[prefix_index], v[prefix_index]) for k, v in prefix_cache.kv]
    x = _blocks_with_past(model, suffix_tokens, positions, past_kv, past_valid, pool_index)
    return _project(model, x)


class OpenCLIPTextEncoding:
    """The encoding methods of ``TextClassifierBuilder``'s encoder protocol over an open_clip
    ``CLIP`` held as ``self.clip_model``: truncated :func:`encode_text` and shared-prefix
    encoding (:func:`encode_text_prefixes`, :func:`encode_text_shared_prefix`) when the text
    tower meets every assumption of the module docstring. Mixed into every wrapper of a CLIP text
    tower (FrozenSeg's ``CLIPBackbone``, OVSeg's ``OpenCLIPTextEncoder``), which add the
    tokenizer, the device and the cache identity."""

    clip_model: nn.Module

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text features (not normalised) at the end-of-text token, projected.

        Args:
            tokens: (N, L) token ids, L <= context length; may be truncated after the last
                end-of-text token (the causal mask makes the result identical).
        Returns:
            (N, D); see :func:`encode_text`.
        """
        return encode_text(self.clip_model, tokens)

    def supports_text_prefix_sharing(self) -> bool:
        """True if the text tower meets every assumption of the shared-prefix forward
        (``check_text_tower(prefix_sharing=True)``)."""
        try:
            check_text_tower(self.clip_model, prefix_sharing=True)
        except UnsupportedTextTowerError:
            return False
        return True

    @torch.no_grad()
    def encode_text_prefixes(self, prefixes: Sequence[torch.Tensor]) -> TextPrefixCache:
        """Per-layer keys/values of G token prefixes (1-D token-id tensors, lengths may differ
        and may be 0), for :meth:`encode_text_shared_prefix`; see :func:`encode_text_prefixes`."""
        return encode_text_prefixes(self.clip_model, prefixes)

    @torch.no_grad()
    def encode_text_shared_prefix(
        self,
        prefix_cache: TextPrefixCache,
        prefix_index: torch.Tensor,
        suffix_tokens: torch.Tensor,
    ) -> torch.Tensor:
        """``encode_text`` of the prompts ``prefix_g + suffix_b`` (g = ``prefix_index[b]``, (B,)),
        ``suffix_tokens`` (B, S) -> (B, D); see :func:`encode_text_shared_prefix`."""
        return encode_text_shared_prefix(self.clip_model, prefix_cache, prefix_index, suffix_tokens)


def text_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every text-tower parameter and buffer, in a fixed order (the
    ``positional_embedding`` after the modules, ``text_projection`` last)."""
    named = []
    for prefix, mod in (
        ("token_embedding", model.token_embedding),
        ("transformer", model.transformer),
        ("ln_final", model.ln_final),
    ):
        named.extend((f"{prefix}.{k}", v) for k, v in mod.state_dict(keep_vars=True).items())
    named.append(("positional_embedding", model.positional_embedding))
    proj = model.text_projection
    if isinstance(proj, nn.Linear):
        named.extend((f"text_projection.{k}", v) for k, v in proj.state_dict(keep_vars=True).items())
    elif proj is not None:
        named.append(("text_projection", proj))
    return named
