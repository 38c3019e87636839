"""OVSeg's CLIP adapter: released ``clip_adapter.*`` layouts on the meta device, the weights
loader, the text encoder for ``TextClassifierBuilder``, the prompt templates and the scoring of
proposals (docs/models/ovseg.md §2.5, §2.8-2.10, §4.3, §9.1)."""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from torch.nn import functional as F

from frozenseg.modeling.backbone.text_classifier import VILD_PROMPT_TEMPLATES, TextClassifierBuilder
from frozenseg.models.ovseg.clip_adapter import (
    OpenCLIPTextEncoder,
    OVSegClipAdapter,
    add_mask_embedding,
    build_ovseg_clip_model,
    encode_image_with_mask_prompts,
    load_clip_weights,
    mask_fill_color,
    prepare_clip_regions,
    prompt_templates,
)

from .conftest import TINY_IMAGE, make_tiny_clip, ovseg_cfg, released_layout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOKENIZER = "ViT-B-16-quickgelu"


@pytest.mark.parametrize("layout, clip_name", [("swinB_vitL14", "ViT-L/14"), ("R101c_vitB16", "ViT-B/16")])
def test_full_size_adapter_has_the_released_keys_and_shapes(layout, clip_name):
    cfg = ovseg_cfg()
    cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME = clip_name
    with torch.device("meta"):
        adapter = OVSegClipAdapter(cfg)
    ours = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert ours == released_layout(layout, "clip_adapter.")  # incl. visual.mask_embedding (3, G, W)
    assert isinstance(adapter.clip_model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert isinstance(adapter.clip_model.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert adapter.input_size == 224
    assert not any(p.requires_grad for p in adapter.clip_model.parameters())
    assert adapter.non_object_embedding.requires_grad


def test_unsupported_settings_name_the_fix():
    cfg = ovseg_cfg()
    cfg.MODEL.CLIP_ADAPTER.REGION_RESIZED = False
    with pytest.raises(ValueError, match="REGION_RESIZED True"):
        OVSegClipAdapter(cfg)
    with pytest.raises(ValueError, match="CLIP_MODEL_NAME 'RN50'"):
        build_ovseg_clip_model("RN50", 3)


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


@pytest.mark.slow
def test_loader_accepts_openai_state_dicts_openclip_checkpoints_and_torchscript(tmp_path):
    source = make_tiny_clip(seed=1)
    add_mask_embedding(source.visual, 3)
    torch.nn.init.normal_(source.visual.mask_embedding)
    plain = {k: v for k, v in source.state_dict().items() if k != "visual.mask_embedding"}
    ddp = {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 5}
    scripted = make_tiny_clip(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(scripted).save(str(tmp_path / "scripted.pt"))

    target = make_tiny_clip(seed=2)
    add_mask_embedding(target.visual, 3)
    load_clip_weights(target, _save(plain, tmp_path / "openai.pt"))
    torch.testing.assert_close(target.visual.conv1.weight, source.visual.conv1.weight)
    assert torch.count_nonzero(target.visual.mask_embedding) == 0  # absent -> zeros (docs/models/ovseg.md quirk 18)
    load_clip_weights(target, _save(ddp, tmp_path / "epoch_5.pt"))  # docs/models/ovseg.md quirk 14 FIX
    torch.testing.assert_close(target.visual.mask_embedding, source.visual.mask_embedding)

    fresh = make_tiny_clip(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        load_clip_weights(fresh, str(tmp_path / "scripted.pt"))
    torch.testing.assert_close(fresh.token_embedding.weight, scripted.token_embedding.weight)


def test_loader_rejects_other_models_wrong_depths_and_missing_files(tmp_path):
    source = make_tiny_clip()
    add_mask_embedding(source.visual, 2)
    path = _save(source.state_dict(), tmp_path / "depth2.pt")
    target = make_tiny_clip()
    add_mask_embedding(target.visual, 3)
    with pytest.raises(ValueError, match="MASK_PROMPT_DEPTH 2"):
        load_clip_weights(target, path)
    with pytest.raises(ValueError, match="does not hold the weights of this CLIP model"):
        load_clip_weights(target, _save({"visual.proj": torch.zeros(1)}, tmp_path / "other.pt"))
    with pytest.raises(FileNotFoundError, match="CLIP_WEIGHTS"):
        load_clip_weights(target, str(tmp_path / "absent.pt"))


def test_text_encoder_serves_the_text_classifier_builder(tiny_clip):
    encoder = OpenCLIPTextEncoder(tiny_clip, TOKENIZER)
    tokens = encoder.tokenize(["a photo of a road, route.", "sky"])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.int64
    assert torch.equal(tokens, open_clip.get_tokenizer("ViT-L-14-quickgelu")(["a photo of a road, route.", "sky"]))
    assert tokens[1, :3].tolist() == [49406, 2390, 49407]  # SOT, "sky", EOT
    with torch.no_grad():
        full = tiny_clip.encode_text(tokens)
    torch.testing.assert_close(encoder.encode_text(tokens[:, :12]), full)  # truncated after EOT

    templates = ("a photo of a {}.", "There is a {} in the scene")
    builder = TextClassifierBuilder(encoder=encoder, templates=templates, cache_dir="")
    classifier, counts = builder.build(["wall", "sky"])
    with torch.no_grad():
        per_prompt = F.normalize(
            tiny_clip.encode_text(encoder.tokenize([t.format(n) for n in ("wall", "sky") for t in templates])), dim=-1
        )
    expected = F.normalize(per_prompt.view(2, 2, -1).mean(dim=1), dim=-1)
    torch.testing.assert_close(classifier, expected, rtol=1e-5, atol=1e-5)
    assert counts == [1, 1]
    # the builder runs only each prompt's own tokens after the shared template prefixes, and the
    # full path (every token of every prompt) gives the same classifier up to float rounding
    assert encoder.supports_text_prefix_sharing()
    full_path = TextClassifierBuilder(encoder=encoder, templates=templates, cache_dir="", share_prefixes=False)
    torch.testing.assert_close(full_path.build(["wall", "sky"])[0], expected, rtol=1e-5, atol=1e-5)
    literal, _ = builder.build(["road, route", "sky"], literal=True)
    with torch.no_grad():
        per_prompt = F.normalize(tiny_clip.encode_text(
            encoder.tokenize([t.format(n) for n in ("road, route", "sky") for t in templates])), dim=-1)
    torch.testing.assert_close(literal, F.normalize(per_prompt.view(2, 2, -1).mean(dim=1), dim=-1),
                               rtol=1e-5, atol=1e-5)


def test_prompt_templates():
    assert prompt_templates("vild") == VILD_PROMPT_TEMPLATES and len(VILD_PROMPT_TEMPLATES) == 14
    imagenet = prompt_templates("imagenet")
    assert len(imagenet) == 80 and imagenet[0] == "a bad photo of a {}." and all(t.count("{}") == 1 for t in imagenet)
    assert prompt_templates("predefined", ["itap of a {}."]) == ("itap of a {}.",)
    with pytest.raises(ValueError, match="'vild', 'imagenet' or 'predefined'"):
        prompt_templates("ensemble")


def _tiny_adapter(**kwargs) -> OVSegClipAdapter:
    model = make_tiny_clip()
    add_mask_embedding(model.visual, 3)
    torch.nn.init.normal_(model.visual.mask_embedding)
    return OVSegClipAdapter(clip_model=model, tokenizer_name=TOKENIZER, mask_thr=0.4, **kwargs)


def _proposals() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    probs = torch.zeros(4, 30, 40)
    probs[0, 5:20, 10:30] = 0.9
    probs[2, 0:3, 0:40] = 0.6
    probs[3] = 0.2  # never above the threshold
    return image, probs


@pytest.mark.parametrize("mask_prompt_fwd", [True, False])
def test_adapter_scores_valid_proposals_with_temperature_100(mask_prompt_fwd):
    adapter = _tiny_adapter(mask_prompt_fwd=mask_prompt_fwd).eval()
    image, probs = _proposals()
    text = adapter.with_non_object(F.normalize(torch.randn(3, 32), dim=-1))
    torch.testing.assert_close(text[-1], F.normalize(adapter.non_object_embedding[0], dim=-1))
    logits, valid = adapter(image, probs, text)
    assert valid.tolist() == [True, False, True, False]
    crops = prepare_clip_regions(image, probs, mask_thr=0.4, fill=mask_fill_color("mean"), size=TINY_IMAGE)
    with torch.no_grad():
        masks = crops.region_masks if mask_prompt_fwd else None
        features = F.normalize(encode_image_with_mask_prompts(adapter.clip_model.visual, crops.regions, masks), dim=-1)
    torch.testing.assert_close(logits, 100.0 * features @ text.t())
    assert logits.shape == (2, 4)


def test_adapter_with_one_or_no_valid_proposal():
    adapter = _tiny_adapter(mask_prompt_fwd=True).eval()
    image, probs = _proposals()
    text = adapter.with_non_object(F.normalize(torch.randn(3, 32), dim=-1))
    logits, valid = adapter(image, probs[:2], text)  # docs/models/ovseg.md quirk 9 (FIX): a single proposal
    assert logits.shape == (1, 4) and valid.tolist() == [True, False]
    logits, valid = adapter(image, probs[3:], text)  # docs/models/ovseg.md quirk 10 (FIX): none
    assert logits.shape == (0, 4) and valid.tolist() == [False]


def test_train_mode_keeps_the_frozen_clip_in_eval_mode():
    adapter = _tiny_adapter().train()
    assert adapter.training and not adapter.clip_model.training
    trainable = [name for name, p in adapter.named_parameters() if p.requires_grad]
    assert trainable == ["non_object_embedding"]
