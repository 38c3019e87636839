"""Tests of the frozen CLIP backbone (docs/models/frozenseg.md §2) on tiny random open_clip models.

The tiny models' open_clip model configs ship with the package (clip_models/*.json; random
weights, CPU, fast). Meta-device builds of the released models check state-dict keys against the
released layout. Weight resolution is tested in test_clip_weights.py, the text tower in
test_clip_text.py.
"""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
import tomllib

import pytest
import torch
from torch.nn import functional as F

from frozenseg.config import get_cfg
from frozenseg.layers.blocks import ShapeSpec
from frozenseg.modeling.backbone import CLIPBackbone, UnknownCLIPModelError, UnsupportedCLIPModelError
from frozenseg.modeling.backbone.clip import shipped_model_config
from frozenseg.utils.registry import BACKBONE_REGISTRY

from ..conftest import OFFICIAL_STATE_DICTS, REPO_ROOT
from .tiny_clip import build_tiny_clip

STATE_DICT_DIR = OFFICIAL_STATE_DICTS
TINY = {"convnext": "tiny_convnext_clip", "resnet": "tiny_resnet_clip"}  # shipped model configs
# documented shapes of the tiny models: convnext_atto dims / ModifiedResNet width 16 (x4 expansion)
TINY_CHANNELS = {"convnext": (40, 80, 160, 320), "resnet": (64, 128, 256, 512)}
STRIDES = (4, 8, 16, 32)
NAMES = ("res2", "res3", "res4", "res5")


@pytest.fixture(scope="module")
def tiny():
    return {kind: build_tiny_clip(kind) for kind in TINY}


@pytest.mark.parametrize("kind", ["convnext", "resnet"])
@pytest.mark.slow
def test_forward_features_and_output_shape(tiny, kind):
    bb = tiny[kind]
    assert bb.model_type == kind
    x = torch.randn(2, 3, 128, 96)
    out = bb(x)
    assert set(out) == {*NAMES, "clip_vis_dense"}
    shapes = bb.output_shape()
    assert list(shapes) == list(NAMES)
    for name, ch, s in zip(NAMES, TINY_CHANNELS[kind], STRIDES):
        assert shapes[name] == ShapeSpec(channels=ch, stride=s)
        assert out[name].shape == (2, ch, 128 // s, 96 // s)
    assert out["clip_vis_dense"].shape == out["res5"].shape
    assert bb.dim_latent == 32 and bb.dense_channels() == TINY_CHANNELS[kind][-1]
    v = bb.clip_model.visual
    with torch.no_grad():
        if kind == "convnext":  # stem -> stages -> norm_pre is timm's forward_features
            ref = v.trunk.forward_features(x)
        else:  # open_clip's own stem and residual layers
            ref = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))
    torch.testing.assert_close(out["clip_vis_dense"], ref)


def test_forward_rejects_unpadded_input(tiny):
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny["convnext"](torch.randn(1, 3, 100, 96))


@pytest.mark.parametrize("kind", ["convnext", "resnet"])
def test_visual_prediction_forward_shape(tiny, kind):
    bb = tiny[kind]
    dense = bb(torch.randn(2, 3, 128, 128))["clip_vis_dense"]
    masks = torch.randn(2, 7, 16, 16)  # other resolution: resized inside
    out = bb.visual_prediction_forward(dense, masks)
    assert out.shape == (2, 7, bb.dim_latent)
    assert torch.isfinite(out).all()


def test_convnext_mask_classification_matches_manual(tiny):
    bb = tiny["convnext"]
    torch.manual_seed(1)
    dense = torch.randn(1, 320, 4, 4)
    mask = torch.full((1, 1, 4, 4), -1.0)
    mask[0, 0, 1:3, 0:3] = 2.0
    out = bb.visual_prediction_forward(dense, mask)[0, 0]

    pooled = dense[0][:, mask[0, 0] > 0].mean(dim=1)  # (C,)
    head = bb.clip_model.visual.trunk.head
    x = F.layer_norm(pooled, (320,), head.norm.weight, head.norm.bias, head.norm.eps)
    mlp = bb.clip_model.visual.head.mlp
    x = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)


def _reference_attnpool(attnpool, dense, allowed, include_class_key):
    """Independent per-head softmax attention for one image and one mask.

    dense (C, h, w), allowed (h*w,) bool; with include_class_key=True and everything allowed
    this is exactly open_clip's AttentionPool2d (checked below).
    """
    c, h, w = dense.shape
    pos = attnpool.positional_embedding
    tokens = dense.reshape(c, h * w).t()  # (hw, C)
    g = int(math.isqrt(pos.shape[0] - 1))
    spatial = pos[1:].t().reshape(1, c, g, g)
    spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=False)
    spatial = spatial.reshape(c, h * w).t()
    cls = tokens.mean(0) + pos[0]
    keys = tokens + spatial
    keys = keys[allowed]
    if include_class_key:
        keys = torch.cat([cls[None], keys])
    nh = attnpool.num_heads
    d = c // nh
    q = F.linear(cls, attnpool.q_proj.weight, attnpool.q_proj.bias).reshape(nh, d)
    k = F.linear(keys, attnpool.k_proj.weight, attnpool.k_proj.bias).reshape(-1, nh, d)
    v = F.linear(keys, attnpool.v_proj.weight, attnpool.v_proj.bias).reshape(-1, nh, d)
    att = torch.einsum("hd,nhd->hn", q, k) / math.sqrt(d)
    o = torch.einsum("hn,nhd->hd", att.softmax(-1), v).reshape(c)
    return F.linear(o, attnpool.c_proj.weight, attnpool.c_proj.bias)


def test_resnet_masked_attention_pool(tiny):
    bb = tiny["resnet"]
    attnpool = bb.clip_model.visual.attnpool
    grid = int(math.isqrt(attnpool.positional_embedding.shape[0] - 1))
    assert grid == 4  # tiny config: image_size 128 -> 4x4 attnpool grid
    torch.manual_seed(2)
    dense = bb(torch.randn(2, 3, 128, 128))["clip_vis_dense"]
    assert dense.shape[-2:] == (grid, grid)
    full = torch.ones(2, 1, grid, grid)
    small = torch.full((2, 1, grid, grid), -1.0)
    small[:, 0, 0:2, 1:3] = 1.0
    empty = torch.full((2, 1, grid, grid), -1.0)
    out = bb.visual_prediction_forward(dense, torch.cat([full, small, empty], dim=1))
    assert out.shape == (2, 3, 32) and torch.isfinite(out).all()
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-4)
    torch.testing.assert_close(out[:, 2], out[:, 0])  # empty mask: unblocked -> whole image

    with torch.no_grad():
        own = attnpool(dense)  # open_clip's attention pool (class token is also a key)
        for b in range(2):
            everything = torch.ones(grid * grid, dtype=torch.bool)
            # the reference reproduces open_clip exactly when the class token is a key ...
            torch.testing.assert_close(
                _reference_attnpool(attnpool, dense[b], everything, True), own[b], atol=1e-5, rtol=1e-4
            )
            # ... and the backbone follows the spec: keys are the dense tokens only, masked
            torch.testing.assert_close(
                out[b, 0], _reference_attnpool(attnpool, dense[b], everything, False), atol=1e-5, rtol=1e-4
            )
            allowed = (small[b, 0] > 0).reshape(-1)
            torch.testing.assert_close(
                out[b, 1], _reference_attnpool(attnpool, dense[b], allowed, False), atol=1e-5, rtol=1e-4
            )

    # another dense size: spatial positional embedding resized bilinearly, masks resized too
    dense2 = bb(torch.randn(1, 3, 192, 160))["clip_vis_dense"]  # 6x5
    masks = torch.randn(1, 2, 24, 20)
    out2 = bb.visual_prediction_forward(dense2, masks)
    resized = F.interpolate(masks, size=(6, 5), mode="bilinear", align_corners=False)
    with torch.no_grad():
        for q in range(2):
            allowed = (resized[0, q] > 0).reshape(-1)
            if allowed.any():
                ref = _reference_attnpool(attnpool, dense2[0], allowed, False)
                torch.testing.assert_close(out2[0, q], ref, atol=1e-5, rtol=1e-4)


def test_frozen_and_always_eval(tiny):
    bb = build_tiny_clip("convnext")
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert bb.training
    assert not any(m.training for m in bb.clip_model.modules())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = bb(x)
    assert not out["res5"].requires_grad
    tokens = bb.tokenize(["a dog"])
    assert not bb.encode_text(tokens).requires_grad


def test_build_from_config_and_registry():
    cfg = get_cfg()
    cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME = "tiny_resnet_clip"
    cfg.MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE = str(shipped_model_config("tiny_resnet_clip"))
    cfg.MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS = ""
    bb = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)
    assert isinstance(bb, CLIPBackbone) and bb.model_type == "resnet"
    assert all(k.startswith("clip_model.") for k in bb.state_dict())


def _released_keys(json_name: str) -> dict[str, list]:
    path = STATE_DICT_DIR / json_name
    with open(path) as f:
        layout = json.load(f)
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in layout.items() if k.startswith(prefix + "clip_model.")}


@pytest.mark.parametrize(
    "model_name,json_name,channels,dim,quick_gelu",
    [
        ("convnext_large_d_320", "convnext_large_d_320__sam_vit_b.json", (192, 384, 768, 1536), 768, False),
        ("RN50x64", "rn50x64__sam_vit_b.json", (512, 1024, 2048, 4096), 1024, True),
    ],
)
@pytest.mark.slow
def test_meta_build_matches_released_layout(model_name, json_name, channels, dim, quick_gelu):
    released = _released_keys(json_name)
    tag = "laion2b_s29b_b131k_ft_soup" if model_name.startswith("convnext") else "openai"
    bb = CLIPBackbone(model_name=model_name, pretrained=tag, load_pretrained=False, device="meta")
    sd = bb.state_dict()
    assert set(sd) == set(released)
    for k, (shape, _dtype) in released.items():
        assert list(sd[k].shape) == shape, k
    shapes = bb.output_shape()
    assert tuple(shapes[n].channels for n in NAMES) == channels
    assert tuple(shapes[n].stride for n in NAMES) == STRIDES
    assert bb.dim_latent == dim
    assert bb.quick_gelu is quick_gelu  # RN50x64 exists only as OpenAI (QuickGELU) weights


def test_unknown_model_name_lists_choices():
    with pytest.raises(UnknownCLIPModelError) as e:
        CLIPBackbone(model_name="convnext_huge_typo", pretrained="")
    msg = str(e.value)
    assert "convnext_huge_typo" in msg and "convnext_large_d_320" in msg and "RN50x64" in msg
    assert isinstance(e.value, ValueError)


def test_unsupported_visual_tower():
    with pytest.raises(UnsupportedCLIPModelError, match="ViT"):
        CLIPBackbone(model_name="ViT-B-32", pretrained="")


def test_missing_model_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="CLIP_MODEL_CONFIG_FILE") as e:
        CLIPBackbone(model_name="x", model_config_file=str(tmp_path / "x.json"))
    assert str(tmp_path / "x.json") in str(e.value) and "tiny_convnext_clip" in str(e.value)


@pytest.mark.parametrize("kind", ["convnext", "resnet"])
@pytest.mark.slow
def test_tiny_config_resolves_outside_the_repo(kind, tmp_path, monkeypatch):
    """The tiny YAMLs name the shipped model config, not a path from the source tree."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs" / "tiny" / f"frozenseg_tiny_{kind}.yaml"))
    assert cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME == TINY[kind]
    assert cfg.MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE == ""
    monkeypatch.chdir(tmp_path)
    bb = CLIPBackbone(cfg)
    assert bb.model_type == kind and bb.output_shape()["res5"].channels == TINY_CHANNELS[kind][-1]


def test_user_model_config_path_relative_to_working_directory(tmp_path, monkeypatch):
    shutil.copy(shipped_model_config("tiny_resnet_clip"), tmp_path / "my_tiny_clip.json")
    monkeypatch.chdir(tmp_path)
    bb = CLIPBackbone(model_name="my_tiny_clip", model_config_file="my_tiny_clip.json", pretrained="")
    assert bb.model_type == "resnet" and bb.dim_latent == 32


def test_shipped_model_configs_are_package_data():
    """Every shipped JSON matches a package-data pattern, so non-editable installs carry it."""
    assert shipped_model_config("convnext_large_d_320") is None  # open_clip's own: none shipped
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["frozenseg"]
    package = REPO_ROOT / "frozenseg"
    for name in TINY.values():
        path = shipped_model_config(name)
        assert path is not None and path.parent.parent == package / "modeling" / "backbone"
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, pattern) for pattern in patterns), rel
        assert set(json.loads(path.read_text())) >= {"embed_dim", "vision_cfg", "text_cfg"}
