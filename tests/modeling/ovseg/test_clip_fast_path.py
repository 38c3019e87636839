"""The exact fast path of OVSeg's CLIP on the proposal crops (MODEL.FAST_INFERENCE): the fast ViT
forward against open_clip's own ``encode_image`` (no mask prompts) and against the reference
mask-prompt forward, the fast crops against the reference crop loop (bit for bit), the switch,
and the benchmark's comparison of the crop stage.

Random tiny open_clip ViTs built from configs (no weights are downloaded): the shared tiny CLIP
(56 px, patch 14, width 64, 4 blocks, QuickGELU) and a few other shapes, QuickGELU and exact GELU.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.models.ovseg.clip_adapter import OVSegClipAdapter, add_mask_embedding, mask_fill_color, prepare_clip_regions
from frozenseg.models.ovseg.clip_adapter.mask_prompt import (
    encode_image_with_mask_prompts,
    fast_encode_image_with_mask_prompts,
    supports_fast_path,
)

from .conftest import TINY_IMAGE, make_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Relative tolerance of the fast forward (float rounding only; measured ~1e-6).
RTOL = 1e-4

#: (image size, patch, width, layers, head width, QuickGELU)
VITS = {
    "tiny_quickgelu": (56, 14, 64, 4, 32, True),
    "b16_like": (64, 16, 96, 3, 32, True),
    "odd_heads_gelu": (42, 14, 48, 2, 16, False),
}


def _vit_clip(name: str, seed: int = 0) -> open_clip.CLIP:
    size, patch, width, layers, head_width, quick = VITS[name]
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": size, "patch_size": patch, "width": width, "layers": layers, "head_width": head_width},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        quick_gelu=quick,
    )
    with torch.no_grad():  # a non-trivial pre-projection norm and biases
        for p in model.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _masks(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) 0/1 masks: the first all foreground, the second one pixel, the others
    random blobs (some patches background)."""
    g = torch.Generator().manual_seed(seed)
    masks = (F.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=(size, size), mode="bilinear") > 0).float()
    masks[0] = 1
    if n > 1:
        masks[1] = 0
        masks[1, 0, size // 2, size // 3] = 1
    return masks


@pytest.mark.parametrize("name", sorted(VITS))
def test_fast_forward_equals_open_clip_encode_image_without_prompts(name):
    model = _vit_clip(name)
    visual = model.visual
    assert supports_fast_path(visual)
    size = visual.image_size[0]
    images = torch.randn(5, 3, size, size)
    with torch.no_grad():
        reference = model.encode_image(images)  # open_clip's own forward
        for chunk in (1, 2, 8):
            assert _relative(fast_encode_image_with_mask_prompts(visual, images, chunk=chunk), reference) < RTOL
        # depth-0 prompts requested through the dispatching entry point: the fast forward
        assert _relative(encode_image_with_mask_prompts(visual, images, fast=True), reference) < RTOL
        # all-foreground masks: the prompts replace nothing, so this is open_clip's forward too
        add_mask_embedding(visual, 3)
        nn.init.normal_(visual.mask_embedding, std=1.0)
        everything = torch.ones(5, 1, size, size)
        assert _relative(fast_encode_image_with_mask_prompts(visual, images, everything), reference) < RTOL


@pytest.mark.parametrize("name", sorted(VITS))
@pytest.mark.parametrize("depth", [1, 3])
def test_fast_forward_equals_the_reference_mask_prompt_forward(name, depth):
    model = _vit_clip(name, seed=1)
    visual = model.visual
    add_mask_embedding(visual, depth)
    nn.init.normal_(visual.mask_embedding, std=1.0)
    size = visual.image_size[0]
    images = torch.randn(7, 3, size, size)
    masks = _masks(7, size)
    text = F.normalize(torch.randn(11, 32), dim=-1)
    with torch.no_grad():
        reference = encode_image_with_mask_prompts(visual, images, masks)
        fast = fast_encode_image_with_mask_prompts(visual, images, masks, chunk=3)
        single = fast_encode_image_with_mask_prompts(visual, images[1:2], masks[1:2])  # quirk 9: one crop
    assert _relative(fast, reference) < RTOL
    assert _relative(single[0], reference[1]) < RTOL
    logits_ref = 100 * F.normalize(reference, dim=-1) @ text.t()
    logits_fast = 100 * F.normalize(fast, dim=-1) @ text.t()
    torch.testing.assert_close(logits_fast, logits_ref, rtol=0, atol=1e-3)
    assert torch.equal(logits_fast.argmax(-1), logits_ref.argmax(-1))
    # the prompts matter on these masks: the plain forward is far from both
    plain = model.encode_image(images).detach()
    assert _relative(plain[2:], reference[2:]) > 1e-2


def test_fast_forward_needs_a_plain_vit_and_falls_back_otherwise():
    torch.manual_seed(0)
    scaled = open_clip.CLIP(  # layer scale: not a block the fast forward computes
        embed_dim=32,
        vision_cfg={"image_size": 56, "patch_size": 14, "width": 64, "layers": 2, "head_width": 32, "ls_init_value": 0.5},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        quick_gelu=True,
    ).eval()
    assert not supports_fast_path(scaled.visual) and not supports_fast_path(nn.Linear(2, 2))
    images = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(encode_image_with_mask_prompts(scaled.visual, images, fast=True),
                                   scaled.encode_image(images))
        with pytest.raises(ValueError, match="supports_fast_path"):
            fast_encode_image_with_mask_prompts(scaled.visual, images)


def test_fast_forward_runs_only_without_gradients():
    """With gradients on (prompt tuning), ``fast=True`` runs the reference forward (the blocks'
    own forwards); without, the blocks are not called as modules."""
    model = make_tiny_clip()
    visual = model.visual
    add_mask_embedding(visual, 3)
    calls = []
    handle = visual.transformer.resblocks[0].register_forward_hook(lambda *_: calls.append(1))
    images, masks = torch.randn(2, 3, TINY_IMAGE, TINY_IMAGE), _masks(2, TINY_IMAGE)
    with torch.no_grad():
        encode_image_with_mask_prompts(visual, images, masks, fast=True)
    assert calls == []
    out = encode_image_with_mask_prompts(visual, images, masks, fast=True)
    handle.remove()
    assert calls == [1] and out.requires_grad


# ---------------------------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------------------------
def _image_and_probs(height: int, width: int, q: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    coarse = torch.randn(q, 1, max(2, height // 8), max(2, width // 8), generator=g) * 3
    probs = F.interpolate(coarse, size=(height, width), mode="bilinear")[:, 0].sigmoid()
    probs[0] = 0.1  # no pixel above the threshold: invalid
    probs[1] = 0.1
    probs[1, height - 1, width - 1] = 0.9  # one corner pixel
    probs[2] = 0.9  # the whole image
    return image, probs


@pytest.mark.parametrize("size", [56, 224])
@pytest.mark.parametrize("fill", ["mean", "zero"])
@pytest.mark.parametrize("expand_ratio", [1.0, 1.7])
def test_fast_crops_are_bit_identical_to_the_reference_loop(size, fill, expand_ratio):
    image, probs = _image_and_probs(37, 53, 9, seed=size)
    kwargs = dict(mask_thr=0.5, fill=mask_fill_color(fill), expand_ratio=expand_ratio, size=size)
    reference = prepare_clip_regions(image, probs, **kwargs)
    fast = prepare_clip_regions(image, probs, fast=True, **kwargs)
    assert torch.equal(fast.valid, reference.valid) and not fast.valid[0] and fast.valid[1]
    for name in ("regions", "region_masks", "unnorm_regions"):
        a, b = getattr(fast, name), getattr(reference, name)
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b), name
    # the uint8 crops OVSeg.proposals gives (rounded where the release's saved crops are rounded)
    as_uint8 = lambda t: t.clamp(0, 255).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(as_uint8(fast.unnorm_regions), as_uint8(reference.unnorm_regions))
    # what the adapter's forward asks for: the same CLIP inputs, no 0..255 crops
    lean = prepare_clip_regions(image, probs, fast=True, unnormalised=False, **kwargs)
    assert lean.unnorm_regions is None
    assert torch.equal(lean.regions, reference.regions) and torch.equal(lean.region_masks, reference.region_masks)


def test_fast_crops_with_matting_and_without_valid_proposals():
    image, probs = _image_and_probs(20, 24, 4, seed=3)
    kwargs = dict(mask_thr=0.5, fill=mask_fill_color("mean"), size=16)
    matted = prepare_clip_regions(image, probs, mask_matting=True, fast=True, **kwargs)  # the reference loop
    reference = prepare_clip_regions(image, probs, mask_matting=True, **kwargs)
    assert torch.equal(matted.regions, reference.regions) and torch.equal(matted.region_masks, reference.region_masks)
    empty = prepare_clip_regions(image, torch.zeros(3, 20, 24), fast=True, **kwargs)
    assert empty.regions.shape == (0, 3, 16, 16) and empty.region_masks.shape == (0, 1, 16, 16)
    assert empty.unnorm_regions.shape == (0, 3, 16, 16) and not empty.valid.any()


# ---------------------------------------------------------------------------------------------
# The adapter's switch and the benchmark
# ---------------------------------------------------------------------------------------------
def _adapter(mask_prompt_fwd: bool = True) -> OVSegClipAdapter:
    model = make_tiny_clip()
    add_mask_embedding(model.visual, 3)
    nn.init.normal_(model.visual.mask_embedding, std=1.0)
    return OVSegClipAdapter(clip_model=model, tokenizer_name="tiny_vit_clip", mask_thr=0.5,
                            mask_prompt_fwd=mask_prompt_fwd).eval()


@pytest.mark.parametrize("mask_prompt_fwd", [True, False])
def test_adapter_fast_and_reference_paths_agree(mask_prompt_fwd):
    adapter = _adapter(mask_prompt_fwd)
    assert adapter.fast_inference  # on by default
    image, probs = _image_and_probs(40, 60, 12, seed=5)
    text = adapter.with_non_object(F.normalize(torch.randn(6, 32), dim=-1))
    fast_logits, fast_valid = adapter(image, probs, text)
    adapter.fast_inference = False
    ref_logits, ref_valid = adapter(image, probs, text)
    assert torch.equal(fast_valid, ref_valid) and fast_logits.shape == ref_logits.shape == (11, 7)
    torch.testing.assert_close(fast_logits, ref_logits, rtol=0, atol=1e-3)
    assert torch.equal(fast_logits.argmax(-1), ref_logits.argmax(-1))


def test_the_switch_follows_the_config_and_the_model():
    from .test_ovseg_model import tiny_model

    model = tiny_model("resnet", "MODEL.FAST_INFERENCE", "False")
    assert model.clip_adapter.fast_inference is False
    model.set_fast_inference(True)
    assert model.clip_adapter.fast_inference is True


def test_benchmark_compares_the_crop_stage_with_the_reference_path():
    """The benchmark on the tiny OVSeg with --compare-upstream: the CLIP-on-crops stage is timed
    and counted in both variants (MODEL.FAST_INFERENCE on, then off), its floor is its FLOPs at the
    measured rate, and the two variants' sem_seg agree."""
    from frozenseg.apps import benchmark

    from .test_ovseg_model import HEIGHT, WIDTH, tiny_image, tiny_model

    model = tiny_model("resnet")
    model.set_vocabulary(["circle", "sky", "grass"])
    inputs = [{"image": tiny_image(), "height": HEIGHT, "width": WIDTH}]
    out = benchmark.benchmark_model(model, inputs, benchmark.BenchmarkOptions(
        warmup=0, iters=1, compare_upstream=True, matmul_seconds=0.0))
    assert out["stages"] == ["backbone", "head", "clip_on_crops", "postprocess"]
    assert out["clip_on_crops_s"] > 0 and out["upstream_clip_on_crops_s"] > 0 and out["clip_on_crops_gflop"] > 0
    assert out["clip_on_crops_efficiency"] == pytest.approx(
        out["clip_on_crops_gflop"] / out["clip_on_crops_s"] / out["matmul_gflops"])
    assert out["clip_on_crops_floor_s"] == pytest.approx(out["clip_on_crops_gflop"] / out["matmul_gflops"])
    assert out["upstream_total_per_image_s"] > 0 and out["total_per_image_s"] > 0
    assert out["upstream_sem_seg_argmax_agreement"] == 1.0 and out["upstream_sem_seg_max_rel_diff"] < 1e-4
    assert model.clip_adapter.fast_inference  # switched back on afterwards
