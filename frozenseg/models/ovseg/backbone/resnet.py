"""Detectron2's DeepLab ResNet (registered as ``"build_resnet_deeplab_backbone"``, docs/models/ovseg.md §2.2).

OVSeg's "R101c" proposal backbone: ResNet-101 with the DeepLab stem (three 3x3 convs, 128
channels out), FrozenBN, the stride in the 3x3 conv (``STRIDE_IN_1X1 False``) and multi-grid
dilations (1, 2, 4) in res5. State-dict keys are Detectron2's (``backbone.`` stripped):
``stem.conv{1,2,3}.{weight, norm.*}``, ``res{2..5}.{i}.conv{1,2,3}.{weight, norm.*}`` and
``res{k}.0.shortcut.{weight, norm.*}``; FrozenBN keeps ``weight, bias, running_mean, running_var``.

The project had no ResNet of this kind (the CLIP backbone wraps open_clip's ``ModifiedResNet``,
whose keys and stem differ), so this module is new; it reuses ``frozenseg.layers.Conv2d`` for the
``conv.norm`` key layout.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ....config.config import configurable
from ....layers.batch_norm import FrozenBatchNorm2d
from ....layers.blocks import Conv2d, ShapeSpec
from ....layers.weight_init import c2_msra_fill
from ....utils.registry import BACKBONE_REGISTRY

__all__ = ["BottleneckBlock", "DeepLabResNet", "resnet_norm"]

_BLOCKS_PER_STAGE = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_STAGE_NAMES = ("res2", "res3", "res4", "res5")
_NORMS = ("FrozenBN", "BN", "SyncBN", "GN")


def resnet_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer ``MODEL.RESNETS.NORM`` names: FrozenBN, BN, SyncBN or GN (32 groups)."""
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    raise ValueError(f"Unknown MODEL.RESNETS.NORM {norm!r}; valid choices are {', '.join(_NORMS)}.")


def _conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    *,
    norm: str,
    relu: bool,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
) -> Conv2d:
    """Bias-free ``kernel`` x ``kernel`` conv ("same" padding times dilation) with a ``norm`` child
    and an optional ReLU, MSRA-initialised."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=dilation * (kernel // 2),
        dilation=dilation,
        groups=groups,
        bias=False,
        norm=resnet_norm(norm, out_channels),
        activation=F.relu if relu else None,
    )
    c2_msra_fill(conv)
    return conv


class DeepLabStem(nn.Module):
    """conv1 3x3/2 (C/2) -> conv2 3x3 (C/2) -> conv3 3x3 (C), each normed + ReLU, then 3x3/2 max
    pool: (B, C_in, H, W) -> (B, C, ceil(H/4), ceil(W/4)) (stride 4)."""

    def __init__(self, *, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        half = out_channels // 2
        self.conv1 = _conv(in_channels, half, 3, stride=2, norm=norm, relu=True)
        self.conv2 = _conv(half, half, 3, norm=norm, relu=True)
        self.conv3 = _conv(half, out_channels, 3, norm=norm, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BasicStem(nn.Module):
    """conv1 7x7/2 normed + ReLU, then 3x3/2 max pool (stride 4): Detectron2's ``basic`` stem."""

    def __init__(self, *, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 7, stride=2, norm=norm, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (dilated, grouped) -> 1x1 residual block; a normed 1x1 ``shortcut`` projection
    when the channel count changes. The stride sits in conv1 (``stride_in_1x1``) or in conv2.
    (B, C_in, H, W) -> (B, C_out, ceil(H/stride), ceil(W/stride))."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        bottleneck_channels: int,
        stride: int,
        num_groups: int,
        norm: str,
        stride_in_1x1: bool,
        dilation: int,
    ):
        super().__init__()
        self.shortcut = (
            _conv(in_channels, out_channels, 1, stride=stride, norm=norm, relu=False)
            if in_channels != out_channels
            else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv(in_channels, bottleneck_channels, 1, stride=stride_1x1, norm=norm, relu=True)
        self.conv2 = _conv(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride=stride_3x3,
            dilation=dilation,
            groups=num_groups,
            norm=norm,
            relu=True,
        )
        self.conv3 = _conv(bottleneck_channels, out_channels, 1, norm=norm, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class DeepLabResNet(nn.Module):
    """Bottleneck ResNet with a ``basic`` or ``deeplab`` stem, res4/res5 dilation and res5
    multi-grid, returning ``out_features`` (NCHW).

    Stage k (res{k}) has ``res2_out_channels * 2**(k-2)`` channels. A stage that is dilated
    (dilation > 1) keeps its input stride instead of halving; res5's blocks use dilations
    ``res5_dilation * res5_multi_grid[i]`` (docs/models/ovseg.md §2.2: 1, 2, 4 at stride 32 for R101c). Stages up
    to ``freeze_at`` (1: stem, 2: stem + res2, ...) have ``requires_grad`` off and FrozenBN norms
    whatever ``norm`` says, as Detectron2's ``ResNet.freeze`` leaves them.

    Attributes:
        size_divisibility: 0 (no constraint; the meta-architecture pads to its own divisibility).
    """

    size_divisibility = 0

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 3,
        depth: int = 101,
        stem_type: str = "deeplab",
        stem_out_channels: int = 128,
        res2_out_channels: int = 256,
        num_groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        res4_dilation: int = 1,
        res5_dilation: int = 1,
        res5_multi_grid: Sequence[int] = (1, 2, 4),
        norm: str = "FrozenBN",
        out_features: Sequence[str] = _STAGE_NAMES,
        freeze_at: int = 0,
    ):
        """
        Args:
            in_channels: input channels (3).
            depth: 50, 101 or 152 (bottleneck blocks per stage 3/4/6/3, 3/4/23/3, 3/8/36/3).
            stem_type: "deeplab" (three 3x3 convs) or "basic" (one 7x7 conv).
            stem_out_channels: channels after the stem.
            res2_out_channels: channels of res2 (doubled per stage).
            num_groups: groups of the 3x3 convs (ResNeXt; 1 for ResNet).
            width_per_group: bottleneck width per group in res2 (doubled per stage).
            stride_in_1x1: put each stage's stride in the first 1x1 conv instead of the 3x3 conv.
            res4_dilation: 1 or 2 (2 requires ``res5_dilation`` 4).
            res5_dilation: 1, 2 or 4; multiplied by ``res5_multi_grid`` per res5 block.
            res5_multi_grid: one dilation factor per res5 block.
            norm: FrozenBN, BN, SyncBN or GN.
            out_features: subset of stem, res2..res5 to return (stages after the last are not built).
            freeze_at: 0 nothing frozen, 1 the stem, k >= 2 the stem and res2..res{k}.
        """
        super().__init__()
        if depth not in _BLOCKS_PER_STAGE:
            raise ValueError(f"MODEL.RESNETS.DEPTH {depth} is not supported here; use 50, 101 or 152.")
        if res4_dilation not in (1, 2) or res5_dilation not in (1, 2, 4):
            raise ValueError(
                f"MODEL.RESNETS.RES4_DILATION must be 1 or 2 and RES5_DILATION 1, 2 or 4; got "
                f"{res4_dilation} and {res5_dilation}."
            )
        if res4_dilation == 2 and res5_dilation != 4:
            raise ValueError("MODEL.RESNETS.RES4_DILATION 2 needs RES5_DILATION 4; set it.")
        blocks_per_stage = _BLOCKS_PER_STAGE[depth]
        if len(res5_multi_grid) != blocks_per_stage[3]:
            raise ValueError(
                f"MODEL.RESNETS.RES5_MULTI_GRID needs one factor per res5 block "
                f"({blocks_per_stage[3]}); got {list(res5_multi_grid)}."
            )
        unknown = [f for f in out_features if f not in ("stem",) + _STAGE_NAMES]
        if unknown or not out_features:
            raise ValueError(
                f"MODEL.RESNETS.OUT_FEATURES {list(out_features)} must be a non-empty subset of "
                f"{['stem', *_STAGE_NAMES]}."
            )
        stems = {"deeplab": DeepLabStem, "basic": BasicStem}
        if stem_type not in stems:
            raise ValueError(f"Unknown MODEL.RESNETS.STEM_TYPE {stem_type!r}; use 'deeplab' or 'basic'.")
        self._out_features = list(out_features)
        self.stem = stems[stem_type](
            in_channels=in_channels, out_channels=stem_out_channels, norm="FrozenBN" if freeze_at >= 1 else norm
        )
        self._shapes = {"stem": ShapeSpec(channels=stem_out_channels, stride=4)}
        self.stage_names: list[str] = []
        last = max((_STAGE_NAMES.index(f) for f in out_features if f != "stem"), default=-1)
        channels_in, channels_out = stem_out_channels, res2_out_channels
        bottleneck, stride = num_groups * width_per_group, 4
        for idx, name in enumerate(_STAGE_NAMES[: last + 1]):
            dilation = {2: res4_dilation, 3: res5_dilation}.get(idx, 1)
            first_stride = 1 if idx == 0 or dilation > 1 else 2
            dilations = [dilation * m for m in res5_multi_grid] if idx == 3 else [dilation] * blocks_per_stage[idx]
            stage_norm = "FrozenBN" if freeze_at >= idx + 2 else norm
            blocks = [
                BottleneckBlock(
                    in_channels=channels_in if i == 0 else channels_out,
                    out_channels=channels_out,
                    bottleneck_channels=bottleneck,
                    stride=first_stride if i == 0 else 1,
                    num_groups=num_groups,
                    norm=stage_norm,
                    stride_in_1x1=stride_in_1x1,
                    dilation=dilations[i],
                )
                for i in range(blocks_per_stage[idx])
            ]
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            stride *= first_stride
            self._shapes[name] = ShapeSpec(channels=channels_out, stride=stride)
            channels_in, channels_out, bottleneck = channels_out, channels_out * 2, bottleneck * 2
        if freeze_at >= 1:
            self.stem.requires_grad_(False)
        for k, name in enumerate(self.stage_names, start=2):
            if freeze_at >= k:
                getattr(self, name).requires_grad_(False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``MODEL.RESNETS.*`` and ``MODEL.BACKBONE.FREEZE_AT``."""
        r = cfg.MODEL.RESNETS
        if any(r.DEFORM_ON_PER_STAGE):
            raise ValueError(
                "Deformable ResNet stages are not implemented; set MODEL.RESNETS.DEFORM_ON_PER_STAGE "
                "to all False."
            )
        return {
            "in_channels": len(cfg.MODEL.PIXEL_MEAN),
            "depth": r.DEPTH,
            "stem_type": r.STEM_TYPE,
            "stem_out_channels": r.STEM_OUT_CHANNELS,
            "res2_out_channels": r.RES2_OUT_CHANNELS,
            "num_groups": r.NUM_GROUPS,
            "width_per_group": r.WIDTH_PER_GROUP,
            "stride_in_1x1": r.STRIDE_IN_1X1,
            "res4_dilation": r.RES4_DILATION,
            "res5_dilation": r.RES5_DILATION,
            "res5_multi_grid": list(r.RES5_MULTI_GRID),
            "norm": r.NORM,
            "out_features": list(r.OUT_FEATURES),
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
        }

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and strides (input pixels per cell) of the returned features."""
        return {name: self._shapes[name] for name in ("stem",) + _STAGE_NAMES if name in self._out_features}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C_in, H, W) normalised images -> {name: (B, C, ceil(H/stride), ceil(W/stride))}."""
        in_channels = self.stem.conv1.in_channels
        if x.dim() != 4 or x.shape[1] != in_channels:
            raise ValueError(
                f"The ResNet backbone expects images (B, {in_channels}, H, W); got shape "
                f"{tuple(x.shape)}: pass a batched NCHW tensor."
            )
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


BACKBONE_REGISTRY.register(DeepLabResNet, name="build_resnet_deeplab_backbone")
