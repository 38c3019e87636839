"""Tests of the frozen SAM image encoder (docs/models/frozenseg.md §3)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch.nn import functional as F

from frozenseg.config import get_cfg
from frozenseg.modeling.sam import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SAM_SPECS,
    SAMCheckpointError,
    SAMImageEncoder,
    SAMSettings,
    build_sam,
    load_sam,
)

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


@pytest.mark.slow
def test_tiny_forward_shape_and_frozen():
    enc = SAMImageEncoder("tiny")
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    x = enc.preprocess(torch.rand(1, 3, 1024, 1024) * 255, training=True)
    y = enc(x)
    assert y.shape == (1, 64, 64, 64)  # out_chans = the tiny spec's neck width
    assert not y.requires_grad
    with pytest.raises(ValueError, match="preprocess"):
        enc(torch.zeros(1, 3, 512, 512))


def test_preprocess_inference_release_behaviour():
    enc = SAMImageEncoder("tiny")
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
    enc = SAMImageEncoder("tiny", image_size=256)
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
    src = SAMImageEncoder("tiny")
    _randomize(src, seed=1)
    full = {f"{prefix}image_encoder.{k}": v.clone() for k, v in src.image_encoder.state_dict().items()}
    full[f"{prefix}prompt_encoder.point_embeddings.0.weight"] = torch.randn(1, 8)
    full[f"{prefix}mask_decoder.iou_token.weight"] = torch.randn(1, 8)
    path = tmp_path / "sam_tiny.pth"
    torch.save(full, path)
    dst = SAMImageEncoder("tiny", checkpoint=str(path))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0)
    assert all(not p.requires_grad for p in dst.parameters())


def test_released_style_state_dict_drops_unused_sam_parts():
    src = SAMImageEncoder("tiny")
    _randomize(src, seed=2)
    sd = {f"image_encoder.{k}": v for k, v in src.image_encoder.state_dict().items()}
    sd["prompt_encoder.not_a_point_embed.weight"] = torch.zeros(1)
    sd["mask_decoder.whatever"] = torch.zeros(1)
    dst = SAMImageEncoder("tiny")
    dst.load_state_dict(sd, strict=True)  # unused SAM parts are dropped, not "unexpected"
    torch.testing.assert_close(dst.image_encoder.pos_embed, src.image_encoder.pos_embed)


def test_missing_checkpoint_message(tmp_path):
    path = tmp_path / "nowhere" / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError) as info:
        SAMImageEncoder("tiny", checkpoint=str(path))
    msg = str(info.value)
    assert "MODEL.SAM_CHECKPOINT" in msg and str(path) in msg and "MODEL.WEIGHTS" in msg


def test_mismatched_checkpoint_message(tmp_path):
    src = SAMImageEncoder("tiny")
    sd = {f"image_encoder.{k}": v for k, v in src.image_encoder.state_dict().items()}
    sd["image_encoder.pos_embed"] = torch.zeros(1, 64, 64, 768)  # looks like vit_b
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(RuntimeError) as info:
        SAMImageEncoder("tiny", checkpoint=str(path))
    msg = str(info.value)
    assert "vit_b" in msg and "'tiny'" in msg and "pos_embed" in msg


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as info:
        SAMImageEncoder("vit_x")
    for name in ("vit_b", "vit_l", "vit_h", "vit_t"):
        assert name in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("mobile_sam") is not None, reason="mobile_sam installed")
def test_vit_t_without_mobile_sam():
    with pytest.raises(ImportError, match="MODEL.SAM_NAME = 'vit_t' needs MobileSAM.*mobilesam-mirror"):
        SAMImageEncoder("vit_t")


def test_from_config_derives_out_chans_from_the_spec():
    cfg = get_cfg()
    cfg.MODEL.SAM_NAME = "tiny"
    cfg.MODEL.SAM_CHECKPOINT = "/nowhere/sam.pth"
    cfg.MODEL.SAM_IMAGE_SIZE = 256
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 24  # not a SAM setting: no effect on the encoder
    enc = SAMImageEncoder(cfg, load_checkpoint=False)
    assert enc.out_chans == SAM_SPECS["tiny"].out_chans == 64 and enc.image_size == 256
    assert enc.image_encoder.pos_embed.shape == (1, 16, 16, 32)
    assert enc.image_encoder.neck[0].out_channels == 64
    with pytest.raises(FileNotFoundError, match="MODEL.SAM_CHECKPOINT"):
        SAMImageEncoder(cfg)
    with torch.device("meta"):
        for name in ("vit_b", "vit_l", "vit_h"):
            cfg.MODEL.SAM_NAME = name
            cfg.MODEL.SAM_IMAGE_SIZE = 1024
            assert SAMImageEncoder(cfg, load_checkpoint=False).out_chans == 256


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_full_sam_matches_segment_anything_registry(name):
    """build_sam builds, from the spec table, what segment_anything's registry builds."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours, theirs = build_sam(name), sam_model_registry[name]()
    assert _shapes(ours.state_dict()) == _shapes(theirs.state_dict())
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    for a, b in zip(ours.modules(), theirs.modules()):
        assert type(a) is type(b)
        for attr in ("num_heads", "window_size", "embedding_dim", "internal_dim", "num_mask_tokens"):
            assert getattr(a, attr, None) == getattr(b, attr, None), (type(a).__name__, attr)
    assert ours.image_encoder.img_size == theirs.image_encoder.img_size == 1024
    assert ours.prompt_encoder.image_embedding_size == theirs.prompt_encoder.image_embedding_size


@pytest.mark.slow
def test_tiny_full_sam_loads_and_checks_its_checkpoint(tmp_path):
    sam = load_sam("tiny", None, seed=3)
    assert load_sam("tiny", "", seed=3).state_dict().keys() == sam.state_dict().keys()
    torch.testing.assert_close(load_sam("tiny", None, seed=3).state_dict(), sam.state_dict(), rtol=0, atol=0)
    assert sam.image_encoder.neck[0].out_channels == sam.mask_decoder.transformer_dim == 64
    path = tmp_path / "tiny_sam.pth"
    torch.save({"model": {f"sam.{k}": v for k, v in sam.state_dict().items()}}, path)  # FrozenSeg style
    back = load_sam("tiny", str(path), seed=4)
    torch.testing.assert_close(back.state_dict(), sam.state_dict(), rtol=0, atol=0)
    # the segmentation model's encoder reads the same file
    enc = SAMImageEncoder("tiny", checkpoint=str(path), image_size=256)
    torch.testing.assert_close(enc.image_encoder.state_dict(), sam.image_encoder.state_dict(), rtol=0, atol=0)
    torch.save({k: v for k, v in sam.state_dict().items() if k.startswith("image_encoder.")}, path)
    with pytest.raises(SAMCheckpointError, match="full SAM tiny") as info:
        load_sam("tiny", str(path), settings=SAMSettings("--sam-name", "--sam-checkpoint"))
    assert "--sam-checkpoint" in str(info.value) and "mask_decoder" in str(info.value)
    with pytest.raises(FileNotFoundError, match="--sam-checkpoint = .*sam_vit_h_4b8939.pth"):
        load_sam("vit_h", str(tmp_path / "missing.pth"), settings=SAMSettings("--sam-name", "--sam-checkpoint"))
