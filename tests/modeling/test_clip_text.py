"""Tests of the text-tower forwards (clip_text.py) against open_clip's own ``CLIP.encode_text``,
on both towers (tiny ConvNeXt and tiny ModifiedResNet CLIPs, and QuickGELU), and of the check of
their assumptions about open_clip."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from frozenseg.modeling.backbone import CLIPBackbone, UnsupportedCLIPModelError
from frozenseg.modeling.backbone.clip import shipped_model_config
from frozenseg.modeling.backbone.clip_text import UnsupportedTextTowerError, check_text_tower

from .tiny_clip import TEXT_TOWERS, build_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a photo of a dog.", "There is a large traffic light in the scene.", "x", "naïve café ok...."]


@pytest.fixture(scope="module", params=TEXT_TOWERS)
def clip(request):
    kind, quick_gelu = request.param
    return build_tiny_clip(kind, load_pretrained=False, quick_gelu=quick_gelu)


def test_encode_text_matches_open_clip(clip):
    """Full length: bit-identical to open_clip; truncated after the last end-of-text token: equal
    up to float rounding (the causal mask)."""
    tokens = clip.tokenize(PROMPTS)
    with torch.no_grad():
        reference = clip.clip_model.encode_text(tokens)
    assert torch.equal(clip.encode_text(tokens), reference)
    truncated = clip.encode_text(tokens[:, : int(tokens.argmax(-1).max()) + 1])
    assert truncated.shape == reference.shape == (len(PROMPTS), clip.dim_latent)
    assert (truncated - reference).abs().max() < 1e-5
    with pytest.raises(ValueError, match="context length"):
        clip.encode_text(torch.zeros(1, 78, dtype=torch.long))


def test_encode_text_shared_prefix_matches_encode_text(clip):
    """Arbitrary splits, mixed (and empty) prefixes of different lengths in one batch."""
    assert clip.supports_text_prefix_sharing()
    prompts = ["a photo of a dog.", "There is a large traffic light in the scene.", "x", "naïve café ok...."]
    tokens = clip.tokenize(prompts)
    eot = tokens.argmax(-1)
    with torch.no_grad():
        full = clip.clip_model.encode_text(tokens)  # open_clip's own forward
    splits = [0, 1, 3, 5]  # prefix lengths (5 for prompt 3 would be beyond its EOT -> clipped)
    prefix_lens = [min(p, int(e)) for p, e in zip(splits, eot)]
    cache = clip.encode_text_prefixes([tokens[i, :p] for i, p in enumerate(prefix_lens)])
    width = max(int(e) + 1 - p for e, p in zip(eot, prefix_lens)) + 2  # extra zero padding
    suffix = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prefix_lens):
        suffix[i, : int(eot[i]) + 1 - p] = tokens[i, p : int(eot[i]) + 1]
    out = clip.encode_text_shared_prefix(cache, torch.arange(len(prompts)), suffix)
    assert (out - full).abs().max() < 1e-5
    # prefixes are shared by index: every prompt with the SOT-only prefix
    cache1 = clip.encode_text_prefixes([tokens[0, :1]])
    out1 = clip.encode_text_shared_prefix(cache1, torch.zeros(4, dtype=torch.long), tokens[:, 1 : int(eot.max()) + 1])
    assert (out1 - full).abs().max() < 1e-5
    # all prefixes empty
    cache0 = clip.encode_text_prefixes([torch.zeros(0, dtype=torch.long)])
    out0 = clip.encode_text_shared_prefix(cache0, torch.zeros(4, dtype=torch.long), tokens[:, : int(eot.max()) + 1])
    assert (out0 - full).abs().max() < 1e-5
    # the pooled end-of-text token must be in the suffix
    with pytest.raises(ValueError, match="prefix"):
        bad = clip.encode_text_prefixes([tokens[2, : int(eot[2]) + 1]])
        clip.encode_text_shared_prefix(bad, torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long))


def test_unsupported_text_tower_is_detected():
    clip = build_tiny_clip("convnext")
    assert clip.supports_text_prefix_sharing()
    clip.clip_model.text_pool_type = "last"
    assert not clip.supports_text_prefix_sharing()
    with pytest.raises(RuntimeError, match="prefix sharing"):
        clip.encode_text_prefixes([torch.tensor([49406])])
    clip.clip_model.text_pool_type = "argmax"
    mask = clip.clip_model.attn_mask
    clip.clip_model.attn_mask = torch.zeros_like(mask)  # not causal
    assert not clip.supports_text_prefix_sharing()
    clip.clip_model.attn_mask = mask
    assert clip.supports_text_prefix_sharing()


def _subclass(obj, method: str):
    """Give ``obj`` its own subclass overriding ``method`` (same behaviour, other function)."""
    base = type(obj)

    def same(self, *args, **kwargs):
        return getattr(base, method)(self, *args, **kwargs)

    obj.__class__ = type(f"Custom{base.__name__}", (base,), {method: same})


BROKEN = {  # mutation of a built model -> (rule number in the message, breaks the plain forward)
    "no ln_final": (lambda m: setattr(m, "ln_final", None), "(1)", True),
    "not an open_clip Transformer": (lambda m: setattr(m, "transformer", nn.Identity()), "(2)", True),
    "last-token pooling": (lambda m: setattr(m, "text_pool_type", "last"), "(3)", True),
    "no causal mask": (lambda m: setattr(m, "attn_mask", torch.zeros_like(m.attn_mask)), "(4)", True),
    "eos pooling": (lambda m: setattr(m, "text_pool_type", "eos"), "(5)", False),
    "own Transformer.forward": (lambda m: _subclass(m.transformer, "forward"), "(6)", False),
    "own block forward": (lambda m: _subclass(m.transformer.resblocks[1], "forward"), "(7)", False),
    "cross-attention block": (lambda m: setattr(m.transformer.resblocks[0], "ln_1_kv", nn.Identity()), "(7)", False),
    "zero attention": (lambda m: setattr(m.transformer.resblocks[1].attn, "add_zero_attn", True), "(8)", False),
    "key bias": (
        lambda m: setattr(m.transformer.resblocks[0].attn, "bias_k", nn.Parameter(torch.zeros(1, 1, 64))), "(8)", False
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_check_text_tower_names_the_broken_assumption(case):
    mutate, rule, breaks_plain = BROKEN[case]
    model = build_tiny_clip("convnext").clip_model
    check_text_tower(model, prefix_sharing=True)  # the unmodified model meets every assumption
    mutate(model)
    with pytest.raises(UnsupportedTextTowerError, match="prefix sharing") as e:
        check_text_tower(model, prefix_sharing=True)
    assert rule in str(e.value) and "share_prefixes=False" in str(e.value)
    if breaks_plain:
        with pytest.raises(UnsupportedTextTowerError, match="standard open_clip") as e:
            check_text_tower(model, prefix_sharing=False)
        assert rule in str(e.value)
    else:
        check_text_tower(model, prefix_sharing=False)


def test_meta_build_skips_the_mask_values():
    bb = CLIPBackbone(model_name="tiny_resnet_clip", load_pretrained=False, device="meta")
    check_text_tower(bb.clip_model, prefix_sharing=False)
    assert not bb.supports_text_prefix_sharing()  # the mask values are unknown


def test_build_rejects_a_text_tower_the_forward_cannot_truncate(tmp_path):
    cfg = json.loads(shipped_model_config("tiny_convnext_clip").read_text())
    cfg["text_cfg"]["pool_type"] = "last"
    (tmp_path / "last_pool_clip.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedCLIPModelError, match=r"last_pool_clip.*\(3\)"):
        CLIPBackbone(model_name="last_pool_clip", model_config_file=str(tmp_path / "last_pool_clip.json"))
