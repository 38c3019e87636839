"""FrozenSegPixelDecoder: output shapes, released state-dict layout, gradients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from frozenseg.config import get_cfg
from frozenseg.layers import ShapeSpec
from frozenseg.layers.ms_deform_attn import MSDeformAttn
from frozenseg.engine.setup import load_config
from frozenseg.modeling.build import build_model
from frozenseg.models.frozenseg.pixel_decoder import SAM_EMBED, FrozenSegPixelDecoder
from frozenseg.utils.registry import PIXEL_DECODER_REGISTRY

from ..conftest import OFFICIAL_STATE_DICTS

_REPO = Path(__file__).resolve().parents[2]
_PREFIX = "sem_seg_head.pixel_decoder."
_RELEASED = {
    "convnext_large_d_320__sam_vit_b.json": (192, 384, 768, 1536),
    "rn50x64__sam_vit_b.json": (512, 1024, 2048, 4096),
}


def _shapes(channels, sam_channels: int | None = None) -> dict[str, ShapeSpec]:
    """res2..res5 of ``channels`` and, with ``sam_channels``, the SAM embedding ("sam")."""
    names = ("res2", "res3", "res4", "res5")
    shapes = {n: ShapeSpec(channels=c, stride=s) for n, c, s in zip(names, channels, (4, 8, 16, 32))}
    if sam_channels is not None:
        shapes[SAM_EMBED] = ShapeSpec(channels=sam_channels, stride=16)
    return shapes


def _tiny_cfg():
    cfg = get_cfg()
    head = cfg.MODEL.SEM_SEG_HEAD
    head.CONVS_DIM = 32
    head.MASK_DIM = 32
    head.TRANSFORMER_ENC_LAYERS = 1
    head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 64
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 4
    return cfg


def _tiny_inputs(b: int = 2, size: int = 64, channels=(8, 16, 24, 32), sam_channels: int = 16, sam_size: int = 16):
    """The backbone features and the SAM embedding, in one dict (as the model passes them)."""
    g = torch.Generator().manual_seed(0)
    feats = {
        name: torch.randn(b, spec.channels, size // spec.stride, size // spec.stride, generator=g)
        for name, spec in _shapes(channels).items()
    }
    feats[SAM_EMBED] = torch.randn(b, sam_channels, sam_size, sam_size, generator=g)
    return feats


def test_registered_under_released_name():
    assert PIXEL_DECODER_REGISTRY.get("MSDeformAttnPixelDecoder") is FrozenSegPixelDecoder


def test_tiny_decoder_output_shapes():
    torch.manual_seed(0)
    decoder = FrozenSegPixelDecoder(_tiny_cfg(), _shapes((8, 16, 24, 32), sam_channels=16)).eval()
    feats = _tiny_inputs(b=2, size=64)
    with torch.no_grad():
        out = decoder.forward_features(feats)
    mask_features, multi_scale, sam_out = out.mask_features, out.multi_scale_features, out.extras["sam_feature"]
    assert out.extras["sam_embed"] is feats[SAM_EMBED]
    assert mask_features.shape == (2, 32, 16, 16)
    assert [tuple(x.shape) for x in multi_scale] == [(2, 32, 2, 2), (2, 32, 4, 4), (2, 32, 8, 8)]
    assert sam_out.shape == (2, 32, 8, 8)
    assert decoder.sam_transformer.encoder.layers[0].self_attn.n_levels == 3
    assert decoder.transformer.encoder.layers[0].self_attn.n_levels == 3
    for t in (mask_features, sam_out, *multi_scale):
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("filename", sorted(_RELEASED))
def test_released_layout_on_meta_device(filename):
    released = json.loads((OFFICIAL_STATE_DICTS / filename).read_text())
    expected = {k[len(_PREFIX):]: tuple(v[0]) for k, v in released.items() if k.startswith(_PREFIX)}
    assert expected, "no pixel-decoder keys in the reference"
    with torch.device("meta"):
        decoder = FrozenSegPixelDecoder(get_cfg(), _shapes(_RELEASED[filename], sam_channels=256))
    got = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert sorted(got) == sorted(expected)
    assert got == expected
    assert all(v[1] == "float32" for k, v in released.items() if k.startswith(_PREFIX))


@pytest.mark.slow
def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    decoder = FrozenSegPixelDecoder(_tiny_cfg(), _shapes((8, 16, 24, 32), sam_channels=16)).train()
    # At init the offset/weight projections are zero, so queries (and hence positional and level
    # embeddings) cannot influence the output yet; perturb them as one training step would.
    with torch.no_grad():
        for m in decoder.modules():
            if isinstance(m, MSDeformAttn):
                m.sampling_offsets.weight.normal_(0.0, 0.05)
                m.attention_weights.weight.normal_(0.0, 0.05)
    out = decoder(_tiny_inputs(b=1, size=64))
    mask_features, multi_scale, sam_out = out.mask_features, out.multi_scale_features, out.extras["sam_feature"]
    g = torch.Generator().manual_seed(1)
    # random projections: a plain sum would be invariant to LayerNorm/GroupNorm inputs
    loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in (mask_features, sam_out, *multi_scale))
    loss.backward()
    for name, p in decoder.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    # release behaviour: the single SAM level only ever uses level embedding 0
    grad = decoder.sam_transformer.level_embed.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0


@pytest.mark.parametrize("fast", [True, False])
def test_fast_inference_key_reaches_every_deformable_attention(fast):
    """MODEL.FAST_INFERENCE switches the deformable attention of both branches of the built model
    (the model contract's ``set_fast_inference``)."""
    cfg = load_config(str(_REPO / "configs/tiny/frozenseg_tiny_convnext.yaml"),
                      ["MODEL.DEVICE", "cpu", "MODEL.FAST_INFERENCE", fast])
    model = build_model(cfg, load_frozen_weights=False)
    flags = [m.fast_inference for m in model.sem_seg_head.pixel_decoder.modules() if isinstance(m, MSDeformAttn)]
    assert len(flags) == 2 * cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
    assert set(flags) == {fast}
    assert model.sam.fast_inference is fast
