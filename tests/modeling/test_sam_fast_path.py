"""The exact fast SAM ViT forward (frozenseg.modeling.sam.fast_vit) against segment-anything's
own forward, on random weights: max relative difference < 1e-5 and the same argmax."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import Block, add_decomposed_rel_pos

from frozenseg.config import get_cfg
from frozenseg.modeling.sam import SAM_SPECS, SAMImageEncoder, fast_vit

TOL = 1e-5


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Random weights everywhere, including the relative-position tables (zero-initialised
    upstream, which would make the bias vanish) and LayerNorm affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 1.0 if "rel_pos" in name or "norm" in name or name == "pos_embed" else std
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def _assert_same_function(fast: torch.Tensor, ref: torch.Tensor, channel_dim: int) -> None:
    assert fast.shape == ref.shape
    assert _rel_diff(fast, ref) < TOL
    assert torch.equal(fast.argmax(channel_dim), ref.argmax(channel_dim))


def _reference_attention(q, k, v, rel_h, rel_w, size, scale):
    """Upstream's arithmetic: explicit attention map plus segment-anything's own
    ``add_decomposed_rel_pos``; q, k, v (B, heads, h·w, dim)."""
    b, heads, n, dim = q.shape
    q2, k2, v2 = (t.reshape(b * heads, n, dim) for t in (q, k, v))
    attn = add_decomposed_rel_pos((q2 * scale) @ k2.transpose(-2, -1), q2, rel_h, rel_w, size, size)
    return (attn.softmax(-1) @ v2).view(b, heads, n, dim)


def _vit_b_block(window: int) -> Block:
    vit = SAM_SPECS["vit_b"].vit
    side = window or 64
    block = Block(
        dim=vit.embed_dim,
        num_heads=vit.num_heads,
        mlp_ratio=vit.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=window,
        input_size=(side, side),
    )
    _randomize(block, seed=window)
    return block.eval()


@pytest.fixture(scope="module")
def tiny_encoder():
    torch.manual_seed(0)
    enc = SAMImageEncoder("tiny", image_size=256)
    _randomize(enc, seed=1)
    return enc


@pytest.mark.slow
def test_tiny_encoder_matches_upstream_forward(tiny_encoder):
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    tiny_encoder.fast_inference = False
    ref = tiny_encoder(x)
    tiny_encoder.fast_inference = True
    fast = tiny_encoder(x)
    assert torch.equal(ref, tiny_encoder.image_encoder(x))  # switched off = upstream as is
    _assert_same_function(fast, ref, channel_dim=1)
    assert not torch.equal(fast, ref)  # the fast path did run (different float rounding)


@pytest.mark.slow
def test_tiny_encoder_off_an_image_side_needing_window_padding():
    """A 208 px input gives 13x13 tokens: the 14x14 window pads (with qkv.bias in the fast path)."""
    torch.manual_seed(0)
    enc = SAMImageEncoder("tiny", image_size=208)
    _randomize(enc, seed=3)
    assert enc.image_encoder.blocks[0].window_size == 14
    x = torch.randn(1, 3, 208, 208, generator=torch.Generator().manual_seed(4))
    ref = enc.image_encoder(x)
    _assert_same_function(fast_vit.fast_vit_forward(enc.image_encoder, x), ref, channel_dim=1)


@pytest.mark.parametrize("window", [14, 0], ids=["windowed", "global"])
@pytest.mark.slow
def test_full_size_vit_b_block_matches_upstream(window):
    """One vit_b block at 64x64 tokens (the 1024 px map): windowed 14x14 (padded to 70x70) and
    global attention."""
    block = _vit_b_block(window)
    x = torch.randn(1, 64, 64, 768, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = block(x)
        fast = fast_vit.fast_block_forward(block, x)
    _assert_same_function(fast, ref, channel_dim=-1)


@pytest.mark.parametrize(
    "limit, chunks",
    [
        (1, (1, 1)),  # one query row of one head per call
        (2 * 5 * 30 * 2, (1, 2)),  # two rows of one head
        (2 * 5 * 30 * 6, (1, 6)),  # all rows of one head
        (2 * 5 * 30 * 6 * 2, (2, 6)),  # all rows, heads in groups of two (the last group: one)
        (10**9, (3, 6)),  # one call
    ],
)
def test_bias_chunking_is_exact(limit, chunks):
    """Chunks of heads and query rows give the same attention as one call (they are
    independent), and the chunk rule prefers whole query rows over head groups."""
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 3, 6 * 5, 8, generator=g) for _ in range(3))
    rel_h, rel_w = torch.randn(11, 8, generator=g), torch.randn(9, 8, generator=g)
    assert fast_vit._chunks(2, 3, (6, 5), limit) == chunks
    whole = fast_vit.rel_pos_attention(q, k, v, rel_h, rel_w, (6, 5), 8**-0.5, chunk_elements=10**9)
    chunked = fast_vit.rel_pos_attention(q, k, v, rel_h, rel_w, (6, 5), 8**-0.5, chunk_elements=limit)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    reference = _reference_attention(q, k, v, rel_h, rel_w, (6, 5), 8**-0.5)
    torch.testing.assert_close(whole, reference, rtol=0, atol=1e-5)


def test_fast_path_is_skipped_for_encoders_it_does_not_cover():
    assert fast_vit.supports_fast_path(SAMImageEncoder("tiny", image_size=256).image_encoder)
    assert not fast_vit.supports_fast_path(torch.nn.Conv2d(3, 8, 3))


def test_switch_is_read_from_the_config():
    cfg = get_cfg()
    assert cfg.MODEL.FAST_INFERENCE is True
    cfg.merge_from_list(["MODEL.SAM_NAME", "tiny", "MODEL.SAM_IMAGE_SIZE", 256, "MODEL.SAM_CHECKPOINT", ""])
    assert SAMImageEncoder(cfg).fast_inference is True
    cfg.merge_from_list(["MODEL.FAST_INFERENCE", False])
    assert SAMImageEncoder(cfg).fast_inference is False
