"""The mask-prompted CLIP forward (docs/models/ovseg.md §2.9): parity with open_clip's own forward, and prompt
tokens that replace exactly the background patches at depths 0..d-1 (hooks on a tiny ViT)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frozenseg.models.ovseg.clip_adapter import add_mask_embedding, encode_image_with_mask_prompts, mask_prompt_depth

from .conftest import TINY_IMAGE, TINY_PATCH, make_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = TINY_IMAGE // TINY_PATCH  # 4 -> 16 patches


@pytest.fixture
def prompted():
    model = make_tiny_clip()
    add_mask_embedding(model.visual, 3)
    nn.init.normal_(model.visual.mask_embedding, std=1.0)
    return model


def test_plain_and_all_foreground_forwards_equal_open_clip(tiny_clip, prompted):
    images = torch.randn(3, 3, TINY_IMAGE, TINY_IMAGE)
    with torch.no_grad():
        torch.testing.assert_close(encode_image_with_mask_prompts(tiny_clip.visual, images), tiny_clip.encode_image(images))
        everything = torch.ones(3, 1, TINY_IMAGE, TINY_IMAGE)
        torch.testing.assert_close(
            encode_image_with_mask_prompts(prompted.visual, images, everything), prompted.encode_image(images)
        )


def test_mask_embedding_is_a_visual_parameter_with_the_release_key(tiny_clip):
    assert mask_prompt_depth(tiny_clip.visual) == 0
    param = add_mask_embedding(tiny_clip.visual, 2)
    assert tiny_clip.state_dict()["visual.mask_embedding"].shape == (2, GRID * GRID, 64)
    assert param is tiny_clip.visual.mask_embedding and mask_prompt_depth(tiny_clip.visual) == 2
    assert torch.count_nonzero(param) == 0


def _hand_made_mask() -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, 56, 56) mask and the expected (16,) foreground flags of its patches (row-major)."""
    mask = torch.zeros(1, 1, TINY_IMAGE, TINY_IMAGE)
    mask[..., 0:14, 0:14] = 1  # patch 0 fully foreground
    mask[..., 20, 33] = 1  # a single pixel makes patch (1, 2) = 6 foreground
    mask[..., 42:56, 50:56] = 1  # part of patch (3, 3) = 15
    keep = torch.zeros(GRID * GRID)
    keep[[0, 6, 15]] = 1
    return mask, keep


def test_prompts_replace_exactly_the_background_patches_at_each_depth(prompted):
    visual = prompted.visual
    prompts = visual.mask_embedding.detach()
    mask, keep = _hand_made_mask()
    fg, bg = keep.bool(), ~keep.bool()
    image = torch.randn(1, 3, TINY_IMAGE, TINY_IMAGE)
    block_in, block_out = {}, {}
    hooks = [visual.ln_pre.register_forward_pre_hook(lambda m, a: block_in.__setitem__("ln_pre", a[0]))]
    for i, blk in enumerate(visual.transformer.resblocks):
        hooks.append(blk.register_forward_pre_hook(lambda m, a, i=i: block_in.__setitem__(i, a[0])))
        hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: block_out.__setitem__(i, o)))
    with torch.no_grad():
        encode_image_with_mask_prompts(visual, image, mask)
        patch_tokens = visual.conv1(image).flatten(2).transpose(1, 2)[0]  # (16, 64)
    for h in hooks:
        h.remove()

    pos = visual.positional_embedding.detach()
    first = block_in["ln_pre"][0]  # (17, 64): before ln_pre, after the positional embedding
    torch.testing.assert_close(first[0], visual.class_embedding.detach() + pos[0])
    torch.testing.assert_close(first[1:][fg], patch_tokens[fg] + pos[1:][fg])
    torch.testing.assert_close(first[1:][bg], prompts[0][bg] + pos[1:][bg])
    for depth in (1, 2):  # after blocks 0 and 1: replaced, no positional embedding re-added
        before, after = block_out[depth - 1][0], block_in[depth][0]
        torch.testing.assert_close(after[0], before[0])  # CLS untouched
        torch.testing.assert_close(after[1:][fg], before[1:][fg])
        torch.testing.assert_close(after[1:][bg], prompts[depth][bg])
    torch.testing.assert_close(block_in[3], block_out[2])  # depth 3: no further replacement


def test_one_proposal_works_and_matches_its_row_in_a_batch(prompted):
    """Quirk 9 (FIX): the release's squeeze() fails for a single proposal."""
    mask, _ = _hand_made_mask()
    masks = torch.cat([mask, torch.ones_like(mask)])
    images = torch.randn(2, 3, TINY_IMAGE, TINY_IMAGE)
    with torch.no_grad():
        batch = encode_image_with_mask_prompts(prompted.visual, images, masks)
        single = encode_image_with_mask_prompts(prompted.visual, images[:1], masks[:1])
    torch.testing.assert_close(single[0], batch[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batch[0], prompted.encode_image(images[:1])[0].detach())


def test_mask_prompts_need_a_mask_embedding_and_matching_sizes(tiny_clip, prompted):
    images = torch.randn(1, 3, TINY_IMAGE, TINY_IMAGE)
    with pytest.raises(ValueError, match="MASK_PROMPT_DEPTH >= 1"):
        encode_image_with_mask_prompts(tiny_clip.visual, images, torch.ones(1, 1, TINY_IMAGE, TINY_IMAGE))
    with pytest.raises(ValueError, match="masks of the image size"):
        encode_image_with_mask_prompts(prompted.visual, images, torch.ones(1, 1, 28, 28))
    with pytest.raises(TypeError, match="VisionTransformer"):
        add_mask_embedding(nn.Linear(2, 2), 3)
