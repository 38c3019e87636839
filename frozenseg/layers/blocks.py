"""Conv with attached norm/activation, an MLP, feature shape descriptors and the small helpers
the transformer layers share (activation by name, positional-embedding addition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .weight_init import c2_xavier_fill


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (pixels of input per feature cell) of a feature map."""

    channels: int
    stride: int


def get_activation_fn(activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function named ``activation``: "relu", "gelu" or "glu"."""
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    if activation == "glu":
        return F.glu
    raise ValueError(f"Unknown activation {activation!r}; valid choices are relu, gelu, glu.")


def with_pos_embed(tensor: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """``tensor + pos``, or ``tensor`` when there is no positional embedding."""
    return tensor if pos is None else tensor + pos


#: Groups of Detectron2's "GN" norm (Wu & He, 2018's default, used by Mask2Former and the
#: released FrozenSeg); ``channels`` must be a multiple of it.
GN_NUM_GROUPS = 32


def get_norm(norm: str, channels: int) -> nn.Module | None:
    """Build a normalisation layer by name: "GN" (GroupNorm, ``GN_NUM_GROUPS`` groups) or "" (none)."""
    if norm == "":
        return None
    if norm == "GN":
        return nn.GroupNorm(GN_NUM_GROUPS, channels)
    raise ValueError(f"Unknown norm {norm!r}; valid choices are 'GN' and ''.")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by optional ``norm`` and ``activation`` submodules.

    Keeps Detectron2's attribute names (``weight``, ``norm.weight``) so released state dicts load.
    """

    def __init__(
        self,
        *args,
        norm: nn.Module | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class MLP(nn.Module):
    """A plain multi-layer perceptron with ReLU between layers (``layers.{i}`` naming)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def add_fpn_convs(
    module: nn.Module,
    in_channels: Sequence[int],
    conv_dim: int,
    norm: str,
    *,
    coarsest_without_lateral: bool = False,
) -> tuple[list[Conv2d | None], list[Conv2d]]:
    """Build Detectron2-style FPN convs and register them on ``module`` (released key names).

    Level ``i = 1, 2, ...`` (``in_channels`` listed fine to coarse) gets ``adapter_i``, a 1x1
    lateral conv ``in_channels[i-1] -> conv_dim`` with norm and no activation, and ``layer_i``, a
    3x3 output conv ``conv_dim -> conv_dim`` with norm and ReLU. Convs have a bias only when
    ``norm == ""``; weights are c2-xavier initialised. With ``coarsest_without_lateral``
    (MaskFormer's ``BasePixelDecoder``) the coarsest level has no adapter and its output conv
    reads the ``in_channels[-1]`` input channels directly.

    Returns:
        ``(laterals, outputs)`` ordered coarse to fine (a missing lateral is ``None``).
    """
    use_bias = norm == ""
    laterals: list[Conv2d | None] = []
    outputs: list[Conv2d] = []
    for idx, channels in enumerate(in_channels):
        has_lateral = not (coarsest_without_lateral and idx == len(in_channels) - 1)
        lateral = (
            Conv2d(channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim))
            if has_lateral
            else None
        )
        output = Conv2d(
            conv_dim if has_lateral else channels,
            conv_dim,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=use_bias,
            norm=get_norm(norm, conv_dim),
            activation=F.relu,
        )
        if lateral is not None:
            c2_xavier_fill(lateral)
            module.add_module(f"adapter_{idx + 1}", lateral)
        c2_xavier_fill(output)
        module.add_module(f"layer_{idx + 1}", output)
        laterals.append(lateral)
        outputs.append(output)
    return laterals[::-1], outputs[::-1]
