"""OVSeg's proposal backbones: D2SwinTransformer (Swin-B) and the DeepLab ResNet (R101c).

Released key layouts on the meta device, tiny CPU forwards (strides, channels, non-multiple
sizes), parity with timm's Swin modules and torchvision's ResNet where they compute the same thing,
FrozenBN on hand-made numbers, dilation / multi-grid / stride placement / freezing."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchvision
from timm.models import swin_transformer as timm_swin

from frozenseg.layers import FrozenBatchNorm2d
from frozenseg.models.ovseg.backbone import D2SwinTransformer, DeepLabResNet
from frozenseg.models.ovseg.backbone.swin import (
    PatchMerging,
    SwinBlock,
    SwinStage,
    WindowAttention,
    shifted_window_mask,
)
from frozenseg.utils.registry import BACKBONE_REGISTRY

from ...conftest import OFFICIAL_STATE_DICTS, require_shared
from .conftest import ovseg_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_PREFIX = "backbone."


def _released_backbone(filename: str) -> dict[str, tuple[tuple[int, ...], str]]:
    layout = json.loads(require_shared(OFFICIAL_STATE_DICTS / filename).read_text())
    return {k[len(_PREFIX):]: (tuple(v[0]), v[1]) for k, v in layout.items() if k.startswith(_PREFIX)}


def _layout(module: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()}


def _swin_b_cfg():
    """The released Swin-B settings (docs/models/ovseg.md §2.2, configs/ovseg_swinB_vitL_bs32_120k.yaml)."""
    cfg = ovseg_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    cfg.merge_from_list(
        ["MODEL.SWIN.EMBED_DIM", 128, "MODEL.SWIN.DEPTHS", [2, 2, 18, 2], "MODEL.SWIN.NUM_HEADS", [4, 8, 16, 32],
         "MODEL.SWIN.WINDOW_SIZE", 12, "MODEL.SWIN.PRETRAIN_IMG_SIZE", 384, "MODEL.SWIN.DROP_PATH_RATE", 0.3]
    )
    return cfg


def _r101c_cfg():
    """The released R101c settings (docs/models/ovseg.md §2.2, configs/ovseg_R101c_vitB_bs32_120k.yaml + Detectron2
    defaults)."""
    cfg = ovseg_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_deeplab_backbone"
    cfg.merge_from_list(
        ["MODEL.BACKBONE.FREEZE_AT", 2, "MODEL.RESNETS.DEPTH", 101, "MODEL.RESNETS.STEM_TYPE", "deeplab",
         "MODEL.RESNETS.STEM_OUT_CHANNELS", 128, "MODEL.RESNETS.STRIDE_IN_1X1", False,
         "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"], "MODEL.RESNETS.RES5_MULTI_GRID", [1, 2, 4]]
    )
    return cfg


def _tiny_swin(window: int = 4, **overrides) -> D2SwinTransformer:
    args = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=window, drop_path_rate=0.0)
    args.update(overrides)
    return D2SwinTransformer(**args).eval()


def _tiny_resnet(**overrides) -> DeepLabResNet:
    args = dict(depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8)
    args.update(overrides)
    return DeepLabResNet(**args).eval()


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Every float parameter and buffer redrawn (vectors ~ N(1, 0.2²), matrices ~ N(0, 0.2²)), so
    no zero bias or unit norm hides a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if t.dim() == 1 else 0.0))


# ---------------------------------------------------------------------------------------------
# Released layouts and registry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg_fn,filename",
    [(_swin_b_cfg, "ovseg_swinB_vitL14.json"), (_r101c_cfg, "ovseg_R101c_vitB16.json")],
    ids=["swinB", "R101c"],
)
def test_full_size_backbone_has_released_keys_and_shapes(cfg_fn, filename):
    cfg = cfg_fn()
    with torch.device("meta"):
        backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)
    expected = _released_backbone(filename)
    got = _layout(backbone)
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert got == expected


def test_registered_under_released_names():
    assert BACKBONE_REGISTRY.get("D2SwinTransformer") is D2SwinTransformer
    assert BACKBONE_REGISTRY.get("build_resnet_deeplab_backbone") is DeepLabResNet


def test_released_output_shapes():
    with torch.device("meta"):
        swin = D2SwinTransformer(_swin_b_cfg())
        resnet = DeepLabResNet(_r101c_cfg())
    assert {k: (v.channels, v.stride) for k, v in swin.output_shape().items()} == {
        "res2": (128, 4), "res3": (256, 8), "res4": (512, 16), "res5": (1024, 32)
    }
    assert {k: (v.channels, v.stride) for k, v in resnet.output_shape().items()} == {
        "res2": (256, 4), "res3": (512, 8), "res4": (1024, 16), "res5": (2048, 32)
    }
    # R101c: res5 multi-grid (1, 2, 4) at dilation 1, stride in the 3x3 conv, FREEZE_AT 2
    assert [b.conv2.dilation for b in resnet.res5] == [(1, 1), (2, 2), (4, 4)]
    assert resnet.res3[0].conv1.stride == (1, 1) and resnet.res3[0].conv2.stride == (2, 2)
    assert not any(p.requires_grad for p in resnet.res2.parameters())
    assert all(p.requires_grad for p in resnet.res3.parameters())
    # Swin-B: stochastic depth grows linearly from 0 to 0.3 over the 24 blocks
    assert isinstance(swin.layers[0].blocks[0].drop_path, torch.nn.Identity)
    assert swin.layers[3].blocks[1].drop_path.drop_prob == pytest.approx(0.3)


# ---------------------------------------------------------------------------------------------
# Swin: tiny forwards and parity with timm
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(64, 64), (50, 78)])
def test_tiny_swin_forward_strides_and_channels(hw):
    torch.manual_seed(0)
    swin = _tiny_swin()
    with torch.no_grad():
        out = swin(torch.randn(2, 3, *hw))
    shapes = swin.output_shape()
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for name, feat in out.items():
        h, w = hw
        for _ in range(int(math.log2(shapes[name].stride))):  # ceil-halving, as each merge pads
            h, w = (h + 1) // 2, (w + 1) // 2
        assert feat.shape == (2, shapes[name].channels, h, w)
        assert torch.isfinite(feat).all()
    assert [s.channels for s in shapes.values()] == [16, 32, 64, 128]
    # outputs are LayerNorm-ed (norm{s}: unit weight, zero bias at init) over channels
    assert out["res3"].mean(dim=1).abs().max() < 1e-5


def test_swin_output_features_subset_and_input_check():
    swin = _tiny_swin(out_features=["res3", "res5"])
    assert list(swin.output_shape()) == ["res3", "res5"]
    with torch.no_grad():
        assert list(swin(torch.randn(1, 3, 32, 32))) == ["res3", "res5"]
    with pytest.raises(ValueError, match="batched NCHW"):
        swin(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="four entries"):
        D2SwinTransformer(depths=(2, 2, 2), num_heads=(1, 2, 4))


def _timm_state(module: torch.nn.Module) -> dict:
    """Our state dict minus the persistent ``relative_position_index`` buffers, which timm keeps
    non-persistent (and computes itself)."""
    return {k: v for k, v in module.state_dict().items() if not k.endswith("relative_position_index")}


def test_window_attention_matches_timm():
    torch.manual_seed(0)
    ours = WindowAttention(dim=16, window_size=4, num_heads=2)
    _randomise(ours)
    ref = timm_swin.WindowAttention(16, num_heads=2, window_size=4)
    ref.load_state_dict(_timm_state(ours))
    assert torch.equal(ours.relative_position_index, ref.relative_position_index)
    x = torch.randn(6, 16, 16)
    mask = torch.zeros(3, 16, 16).masked_fill(torch.rand(3, 16, 16) > 0.7, -100.0)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x, mask), ref(x, mask), atol=1e-5, rtol=1e-5)


def test_stage_matches_timm_on_window_multiple_map():
    """A plain + a shifted block on an 8x12 map (window 4): timm's stage computes the same."""
    torch.manual_seed(0)
    ours = SwinStage(dim=16, depth=2, num_heads=2, window_size=4, drop_path=[0.0, 0.0], downsample=False)
    _randomise(ours)
    ref = timm_swin.SwinTransformerStage(16, 16, (8, 12), depth=2, downsample=False, num_heads=2, window_size=4)
    ref.load_state_dict(_timm_state(ours))
    x = torch.randn(2, 8, 12, 16)
    with torch.no_grad():
        out, down = ours(x.reshape(2, 96, 16), (8, 12))
        torch.testing.assert_close(out.view(2, 8, 12, 16), ref(x), atol=1e-5, rtol=1e-5)
    assert down is None


def test_shifted_block_on_non_multiple_map_pads_before_rolling():
    """The release zero-pads the normed (7, 10) map to (8, 12) and then rolls it. With norm1's bias
    at 0 the padded tokens are what timm's block sees when handed the zero-padded map itself, so
    timm on the padded map matches on the valid region; timm on the raw (7, 10) map (roll, then
    pad) does not -- the reason this backbone is not timm's Swin."""
    torch.manual_seed(0)
    ours = SwinBlock(dim=16, num_heads=2, window_size=4, shift_size=2)
    _randomise(ours)
    with torch.no_grad():
        ours.norm1.bias.zero_()
    x = torch.randn(2, 7, 10, 16)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 2, 0, 1))
    ref_padded = timm_swin.SwinTransformerBlock(16, (8, 12), num_heads=2, window_size=4, shift_size=2)
    ref_padded.load_state_dict(_timm_state(ours))
    ref_raw = timm_swin.SwinTransformerBlock(
        16, (7, 10), num_heads=2, window_size=4, shift_size=2, always_partition=True
    )
    ref_raw.load_state_dict(_timm_state(ours))
    with torch.no_grad():
        got = ours(x.reshape(2, 70, 16), (7, 10), shifted_window_mask(8, 12, 4, 2, x.device)).view(2, 7, 10, 16)
        torch.testing.assert_close(got, ref_padded(padded)[:, :7, :10], atol=1e-5, rtol=1e-5)
        assert (got - ref_raw(x)).abs().max() > 1e-2


def test_whole_swin_matches_timm_with_key_map_on_window_multiples():
    """128 px, window 4: every stage map (32, 16, 8, 4) is a window multiple. There timm's Swin
    (``always_partition`` so the 4x4 res5 map keeps its shift) gives the same stage outputs, once
    ``layers.{s}.downsample`` is moved to ``layers.{s+1}`` and the ``norm{s}`` output norms are
    applied to its intermediates."""
    torch.manual_seed(0)
    ours = _tiny_swin()
    _randomise(ours)
    ref = timm_swin.SwinTransformer(
        img_size=128, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4,
        always_partition=True, drop_path_rate=0.0,
    ).eval()
    mapped = {}
    for k, v in _timm_state(ours).items():
        if k.startswith("norm"):
            continue
        if ".downsample." in k:
            s = int(k.split(".")[1])
            k = k.replace(f"layers.{s}.", f"layers.{s + 1}.", 1)
        mapped[k] = v
    missing, unexpected = ref.load_state_dict(mapped, strict=False)
    assert unexpected == [] and sorted(missing) == ["head.fc.bias", "head.fc.weight", "norm.bias", "norm.weight"]
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        got = ours(x)
        inter = ref.forward_intermediates(x, intermediates_only=True)
        for s, name in enumerate(("res2", "res3", "res4", "res5")):
            want = getattr(ours, f"norm{s}")(inter[s].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            torch.testing.assert_close(got[name], want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hw", [(6, 8), (5, 7)])
def test_patch_merging_matches_timm(hw):
    torch.manual_seed(0)
    ours = PatchMerging(dim=8)
    _randomise(ours)
    ref = timm_swin.PatchMerging(8)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, *hw, 8)
    with torch.no_grad():
        got = ours(x.reshape(2, -1, 8), hw)
        want = ref(x)
    torch.testing.assert_close(got, want.reshape(2, -1, 16), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------------------------


def test_frozen_batch_norm_formula_on_hand_made_numbers():
    bn = FrozenBatchNorm2d(2, eps=0.25)
    bn.weight.copy_(torch.tensor([2.0, 0.5]))
    bn.bias.copy_(torch.tensor([1.0, -1.0]))
    bn.running_mean.copy_(torch.tensor([3.0, 0.0]))
    bn.running_var.copy_(torch.tensor([3.75, 0.75]))  # + eps = 4 and 1
    x = torch.tensor([5.0, 7.0, -1.0, 2.0]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)
    y = bn(x)
    # channel 0: (x - 3) / 2 * 2 + 1 = x - 2; channel 1: x / 1 * 0.5 - 1
    assert torch.equal(y[0, 0], torch.tensor([[3.0, 5.0], [-3.0, 0.0]]))
    assert torch.equal(y[0, 1], torch.tensor([[1.5, 2.5], [-1.5, 0.0]]))
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert list(bn.parameters()) == []
    ident = FrozenBatchNorm2d(3)
    torch.testing.assert_close(ident(x[:, :1].repeat(1, 3, 1, 1)), x[:, :1].repeat(1, 3, 1, 1))


@pytest.mark.parametrize("hw", [(64, 64), (50, 70)])
def test_tiny_resnet_forward_strides_and_channels(hw):
    torch.manual_seed(0)
    net = _tiny_resnet(out_features=["stem", "res2", "res3", "res4", "res5"])
    with torch.no_grad():
        out = net(torch.randn(1, 3, *hw))
    shapes = net.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "stem": (16, 4), "res2": (32, 4), "res3": (64, 8), "res4": (128, 16), "res5": (256, 32)
    }
    for name, feat in out.items():
        stride = shapes[name].stride
        assert feat.shape == (1, shapes[name].channels, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))


def test_res5_dilation_keeps_stride_16_and_multiplies_multi_grid():
    torch.manual_seed(0)
    net = _tiny_resnet(res5_dilation=2, res5_multi_grid=(1, 2, 4))
    assert net.output_shape()["res5"].stride == 16
    assert [b.conv2.dilation for b in net.res5] == [(2, 2), (4, 4), (8, 8)]
    assert [b.conv2.padding for b in net.res5] == [(2, 2), (4, 4), (8, 8)]
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out["res5"].shape == (1, 256, 4, 4) and out["res4"].shape == (1, 128, 4, 4)


def test_stride_in_1x1_and_out_features_build_only_needed_stages():
    net = _tiny_resnet(stride_in_1x1=True, out_features=["res3"])
    assert net.res3[0].conv1.stride == (2, 2) and net.res3[0].conv2.stride == (1, 1)
    assert net.stage_names == ["res2", "res3"] and list(net.output_shape()) == ["res3"]
    assert not any(k.startswith(("res4", "res5")) for k in net.state_dict())


def test_freeze_at_freezes_stem_and_stages_with_frozen_norms():
    net = _tiny_resnet(norm="BN", freeze_at=2)
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.res2.parameters())
    assert all(p.requires_grad for p in net.res3.parameters())
    assert isinstance(net.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(net.res3[0].conv1.norm, torch.nn.BatchNorm2d)


def test_resnet_config_errors_name_the_key():
    with pytest.raises(ValueError, match="RES5_MULTI_GRID"):
        _tiny_resnet(res5_multi_grid=(1, 2))
    with pytest.raises(ValueError, match="RES5_DILATION 4"):
        _tiny_resnet(res4_dilation=2, res5_dilation=2)
    with pytest.raises(ValueError, match="MODEL.RESNETS.NORM"):
        _tiny_resnet(norm="LN")
    cfg = ovseg_cfg()
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, True, False]
    with pytest.raises(ValueError, match="DEFORM_ON_PER_STAGE"):
        DeepLabResNet(cfg)
    with pytest.raises(ValueError, match="batched NCHW"):
        _tiny_resnet()(torch.randn(1, 1, 32, 32))


def test_basic_stem_resnet50_matches_torchvision():
    """Where the two coincide (basic stem, stride in the 3x3 conv, no dilation, frozen BN vs
    eval-mode BN), the Detectron2 layout computes torchvision's ResNet-50 bottleneck trunk."""
    torch.manual_seed(0)
    ref = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [3, 4, 6, 3], width_per_group=16)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics and affine terms, activations kept O(1)
        for bn in (m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
            bn.bias.copy_(0.1 * torch.randn(n, generator=g))
            bn.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            bn.running_var.copy_(0.5 + torch.rand(n, generator=g))
    ref.eval()
    ours = DeepLabResNet(
        depth=50, stem_type="basic", stem_out_channels=64, res2_out_channels=256, width_per_group=16,
        stride_in_1x1=False, res5_multi_grid=(1, 1, 1), out_features=["res5"],
    ).eval()
    mapped = {}
    for k, v in ref.state_dict().items():
        if k.endswith("num_batches_tracked") or k.startswith("fc."):
            continue
        if k.startswith(("conv1.", "bn1.")):
            k = "stem.conv1." + ("weight" if k.startswith("conv1.") else "norm." + k.split(".", 1)[1])
        else:
            stage, rest = k.split(".", 1)
            k = f"res{int(stage[5:]) + 1}.{rest}"
            for i in (1, 2, 3):
                k = k.replace(f".bn{i}.", f".conv{i}.norm.")
            k = k.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
        mapped[k] = v
    ours.load_state_dict(mapped)
    x = torch.randn(1, 3, 64, 96)
    trunk = torch.nn.Sequential(ref.conv1, ref.bn1, ref.relu, ref.maxpool, ref.layer1, ref.layer2, ref.layer3, ref.layer4)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["res5"], trunk(x), atol=1e-4, rtol=1e-4)
