"""Tests of the frozen SAM image encoder (spec §3)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch.nn import functional as F

from frozenseg.config.config import get_cfg
from frozenseg.modeling.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, SAMImageEncoder

from ..conftest import OFFICIAL_STATE_DICTS

RELEASED_JSON = OFFICIAL_STATE_DICTS / "convnext_large_d_320__sam_vit_b.json"


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.state_dict().values():
            p.copy_(torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def vit_b_meta():
    with torch.device("meta"):
        return SAMImageEncoder("vit_b")


def test_vit_b_keys_match_segment_anything(vit_b_meta):
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ref = sam_model_registry["vit_b"]().image_encoder
    ours = _shapes(vit_b_meta.state_dict())
    theirs = {"image_encoder." + k: v for k, v in _shapes(ref.state_dict()).items()}
    assert ours == theirs
    assert vit_b_meta.image_encoder.pos_embed.shape == (1, 64, 64, 768)


def test_vit_b_keys_match_released_checkpoint(vit_b_meta):
    released = json.loads(RELEASED_JSON.read_text())
    expected = {
        k[len("sam.") :]: tuple(v[0])
        for k, v in released.items()
        if k.startswith("sam.image_encoder.")
    }
    assert _shapes(vit_b_meta.state_dict()) == expected


def test_tiny_forward_shape_and_frozen():
    enc = SAMImageEncoder("tiny", out_chans=16)
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    x = enc.preprocess(torch.rand(1, 3, 1024, 1024) * 255, training=True)
    y = enc(x)
    assert y.shape == (1, 16, 64, 64)
    assert not y.requires_grad
    with pytest.raises(ValueError, match="preprocess"):
        enc(torch.zeros(1, 3, 512, 512))


def test_preprocess_inference_release_behaviour():
    enc = SAMImageEncoder("tiny", out_chans=8)
    torch.manual_seed(0)
    img = torch.rand(1, 3, 40, 50) * 255
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    normed = (img - mean) / std
    padded = torch.zeros(1, 3, 64, 64)
    padded[:, :, :40, :50] = normed
    expected = F.interpolate(padded, size=(1024, 1024), mode="bilinear", align_corners=False)
    out = enc.preprocess(img, training=False)
    assert out.shape == (1, 3, 1024, 1024)
    torch.testing.assert_close(out, expected)
    # a list of unpadded images of different sizes: each normalised, then padded together
    img2 = torch.rand(3, 30, 70) * 255
    out2 = enc.preprocess([img[0], img2], training=False)
    padded2 = torch.zeros(2, 3, 64, 96)
    padded2[0, :, :40, :50] = normed[0]
    padded2[1, :, :30, :70] = (img2 - mean[0]) / std[0]
    torch.testing.assert_close(
        out2, F.interpolate(padded2, size=(1024, 1024), mode="bilinear", align_corners=False)
    )


def test_preprocess_training_stacks_lsj_crops():
    enc = SAMImageEncoder("tiny", out_chans=8, image_size=256)
    imgs = torch.rand(2, 3, 256, 256) * 255
    out = enc.preprocess(imgs, training=True)
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (imgs - mean) / std)
    # wrong size in training falls back to the inference path
    out = enc.preprocess(torch.rand(1, 3, 100, 120) * 255, training=True)
    assert out.shape == (1, 3, 256, 256)


@pytest.mark.parametrize("prefix", ["", "sam."])
def test_checkpoint_round_trip(tmp_path, prefix):
    src = SAMImageEncoder("tiny", out_chans=8)
    _randomize(src, seed=1)
    full = {f"{prefix}image_encoder.{k}": v.clone() for k, v in src.image_encoder.state_dict().items()}
    full[f"{prefix}prompt_encoder.point_embeddings.0.weight"] = torch.randn(1, 8)
    full[f"{prefix}mask_decoder.iou_token.weight"] = torch.randn(1, 8)
    path = tmp_path / "sam_tiny.pth"
    torch.save(full, path)
    dst = SAMImageEncoder("tiny", checkpoint=str(path), out_chans=8)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0)
    assert all(not p.requires_grad for p in dst.parameters())


def test_released_style_state_dict_drops_unused_sam_parts():
    src = SAMImageEncoder("tiny", out_chans=8)
    _randomize(src, seed=2)
    sd = {f"image_encoder.{k}": v for k, v in src.image_encoder.state_dict().items()}
    sd["prompt_encoder.not_a_point_embed.weight"] = torch.zeros(1)
    sd["mask_decoder.whatever"] = torch.zeros(1)
    dst = SAMImageEncoder("tiny", out_chans=8)
    dst.load_state_dict(sd, strict=True)  # unused SAM parts are dropped, not "unexpected"
    torch.testing.assert_close(dst.image_encoder.pos_embed, src.image_encoder.pos_embed)


def test_missing_checkpoint_message(tmp_path):
    path = tmp_path / "nowhere" / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError) as info:
        SAMImageEncoder("tiny", checkpoint=str(path), out_chans=8)
    msg = str(info.value)
    assert "MODEL.SAM_CHECKPOINT" in msg and str(path) in msg and "MODEL.WEIGHTS" in msg


def test_mismatched_checkpoint_message(tmp_path):
    src = SAMImageEncoder("tiny", out_chans=8)
    sd = {f"image_encoder.{k}": v for k, v in src.image_encoder.state_dict().items()}
    sd["image_encoder.pos_embed"] = torch.zeros(1, 64, 64, 768)  # looks like vit_b
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(RuntimeError) as info:
        SAMImageEncoder("tiny", checkpoint=str(path), out_chans=8)
    msg = str(info.value)
    assert "vit_b" in msg and "'tiny'" in msg and "pos_embed" in msg


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as info:
        SAMImageEncoder("vit_x")
    for name in ("vit_b", "vit_l", "vit_h", "vit_t"):
        assert name in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("mobile_sam") is not None, reason="mobile_sam installed")
def test_vit_t_without_mobile_sam():
    with pytest.raises(ImportError, match="mobilesam-mirror"):
        SAMImageEncoder("vit_t")


def test_from_config():
    cfg = get_cfg()
    cfg.MODEL.SAM_NAME = "tiny"
    cfg.MODEL.SAM_CHECKPOINT = ""
    cfg.MODEL.SAM_IMAGE_SIZE = 256
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 24
    enc = SAMImageEncoder(cfg)
    assert enc.out_chans == 24 and enc.image_size == 256
    assert enc.image_encoder.pos_embed.shape == (1, 16, 16, 32)
    enc = SAMImageEncoder(cfg, out_chans=12)
    assert enc.out_chans == 12
