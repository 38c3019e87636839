"""OVSeg's Swin Transformer backbone (registered as ``"D2SwinTransformer"``, docs/models/ovseg.md §2.2, §4.3).

This is MaskFormer's detection/segmentation variant of Swin, which OVSeg uses with the Swin-B
settings (embed dim 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 12, patch 4). Module
names reproduce the released checkpoint keys (``backbone.`` stripped): ``patch_embed.{proj,norm}``,
``layers.{s}.blocks.{j}.{norm1, attn.{relative_position_bias_table, relative_position_index, qkv,
proj}, norm2, mlp.{fc1, fc2}}``, ``layers.{s}.downsample.{norm, reduction}`` for s = 0..2, and one
output LayerNorm ``norm{s}`` per stage.

Why not timm's Swin (timm 1.0.31, ``timm.models.swin_transformer``) with a key map: it computes a
different function on the inputs OVSeg sees, not only under different names.

- Padding order: timm's ``SwinTransformerBlock._attn`` rolls the (H, W) map and *then* pads it to
  window multiples; the release pads with zeros first (after ``norm1``) and rolls the padded
  (Hp, Wp) map, so the zero tokens sit at different places and take part in different windows.
  OVSeg's maps are rarely window multiples (a 640x864 input gives res2 160x216, 216 = 18 windows
  of 12) and the two differ there; on window multiples they agree (tested).
- timm shrinks the window to the feature size (and drops the shift) when a map is smaller than
  the window unless ``always_partition``, and fixes the shift mask at construction for one
  ``input_resolution`` unless ``dynamic_mask``; the release always uses the full window and
  builds the mask per forward for the padded size.
- timm's patch embedding requires (or dynamically pads) inputs whose size is a patch multiple;
  the release pads bottom/right to a multiple of the patch size.
- timm downsamples at the *start* of stages 1..3 (``layers.{s+1}.downsample``), keeps
  ``relative_position_index`` as a non-persistent buffer (the released files carry it) and has
  no per-stage output norms.

So the modules below are this project's own, with the release's computation; the window
attention, one block and the patch merging are tested against timm's modules (copied weights) on
window-multiple inputs where both compute the same thing, and the shifted block on a
non-multiple input against timm's block run on the zero-padded map (docs/models/ovseg.md §10 style evidence in
``tests/modeling/ovseg/test_backbones.py``). ``timm.layers.Mlp`` / ``DropPath`` are used as is.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.nn import functional as F

from ....config.config import configurable
from ....layers.blocks import ShapeSpec
from ....utils.registry import BACKBONE_REGISTRY

__all__ = ["D2SwinTransformer", "SwinBlock", "SwinStage", "WindowAttention", "PatchMerging"]

_STAGE_NAMES = ("res2", "res3", "res4", "res5")


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``window_size`` -> (B * nW, window_size**2, C), windows
    in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window_size**2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(ws², ws²) int64: row of the (2ws-1)² bias table for each (query, key) token pair of a
    window, ``(dy + ws - 1) * (2ws - 1) + (dx + ws - 1)`` with (dy, dx) = query - key position."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window_size - 1)
    return rel[0] * (2 * window_size - 1) + rel[1]


def shifted_window_mask(hp: int, wp: int, window_size: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive SW-MSA mask (nW, ws², ws²) for a padded (hp, wp) map rolled by ``-shift``:
    0 between tokens of the same region of the un-rolled map, -100 otherwise (the release's
    value)."""
    region = torch.zeros((1, hp, wp, 1), device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for ws in bounds:
            region[:, hs, ws, :] = label
            label += 1
    windows = window_partition(region, window_size).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window with a learned relative position bias.

    Attributes:
        relative_position_bias_table: ((2ws-1)², heads) learned bias.
        relative_position_index: (ws², ws²) int64 persistent buffer (saved in the released files).
    """

    def __init__(
        self,
        *,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(
                f"Swin stage width {dim} is not divisible by its {num_heads} heads; make "
                f"MODEL.SWIN.EMBED_DIM * 2**stage a multiple of MODEL.SWIN.NUM_HEADS[stage]."
            )
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B * nW, N = ws², C); mask: additive (nW, N, N) or None -> (B * nW, N, C)."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(bw, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention + MLP on a token sequence of an (H, W) map.

    The map is zero-padded bottom/right to window multiples *after* ``norm1`` and the padded map
    is rolled by ``-shift`` (the release's order); padded tokens are not masked.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"Swin shift {shift_size} must lie in [0, window size {window_size}).")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim=dim,
            window_size=window_size,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H*W, C) tokens of an (H, W) map; mask: the stage's shifted-window mask for the
        padded map (used only when this block shifts) -> (B, H*W, C)."""
        h, w = hw
        b, _, c = x.shape
        ws = self.window_size
        y = self.norm1(x).view(b, h, w, c)
        y = F.pad(y, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = y.shape[1:3]
        if self.shift_size > 0:
            y = torch.roll(y, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        y = self.attn(window_partition(y, ws), mask=mask if self.shift_size > 0 else None)
        y = window_reverse(y, ws, hp, wp)
        if self.shift_size > 0:
            y = torch.roll(y, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbour concatenation (odd sizes zero-padded bottom/right), LayerNorm(4C), then a
    bias-free linear 4C -> 2C: (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C)."""

    def __init__(self, *, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        # channel blocks in the release's order: (0,0), (1,0), (0,1), (1,1) as (row, column) offsets
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """``depth`` blocks alternating plain / shifted (shift = window // 2) windows, then an optional
    :class:`PatchMerging` (key ``downsample``)."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        drop_path: Sequence[float],
        downsample: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
    ):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim=dim) if downsample else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, H*W, C) -> (stage output (B, H*W, C), downsampled (B, H'*W', 2C) or None)."""
        ws = self.window_size
        hp, wp = math.ceil(hw[0] / ws) * ws, math.ceil(hw[1] / ws) * ws
        mask = shifted_window_mask(hp, wp, ws, self.shift_size, x.device) if len(self.blocks) > 1 else None
        for block in self.blocks:
            x = block(x, hw, mask)
        return x, (self.downsample(x, hw) if self.downsample is not None else None)


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch conv (input zero-padded bottom/right to patch multiples) and
    an optional LayerNorm: (B, C_in, H, W) -> (B, D, ceil(H/p), ceil(W/p))."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int, patch_norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        h, w = x.shape[-2:]
        x = self.proj(F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p)))
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


class D2SwinTransformer(nn.Module):
    """Swin Transformer returning LayerNorm-ed stage outputs ``res2..res5`` (NCHW).

    For an input (B, C_in, H, W), stage s (res{s+2}) has ``embed_dim * 2**s`` channels and size
    ceil(H / (patch * 2**s)) x ceil(W / (patch * 2**s)) (odd sizes round up at every merge):
    strides 4/8/16/32 and, for Swin-B, channels 128/256/512/1024 (docs/models/ovseg.md §2.2). No stage is frozen
    (the release ignores ``MODEL.BACKBONE.FREEZE_AT`` for Swin).

    Attributes:
        size_divisibility: 32, the total stride (the meta-architecture pads to it).
    """

    size_divisibility = 32

    @configurable
    def __init__(
        self,
        *,
        in_chans: int = 3,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        ape: bool = False,
        pretrain_img_size: int = 224,
        patch_norm: bool = True,
        out_features: Sequence[str] = _STAGE_NAMES,
    ):
        """
        Args:
            in_chans: input channels (3, RGB normalised by the meta-architecture).
            patch_size: side of the patch-embedding conv (pixels).
            embed_dim: channels of stage 0; stage s has ``embed_dim * 2**s``.
            depths: blocks per stage (4 stages).
            num_heads: attention heads per stage.
            window_size: attention window side (tokens).
            mlp_ratio: MLP hidden width / block width.
            qkv_bias: bias in the qkv projection.
            qk_scale: attention logit scale; None = head_dim ** -0.5.
            drop_rate: dropout after the patch embedding, in the MLPs and after attention.
            attn_drop_rate: dropout on attention weights.
            drop_path_rate: stochastic depth of the last block; linear from 0 over all blocks.
            ape: absolute position embedding (``absolute_pos_embed``), bicubically resized.
            pretrain_img_size: image side the absolute position embedding was trained for.
            patch_norm: LayerNorm after the patch embedding.
            out_features: subset of res2..res5 to return.
        """
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(
                f"Swin needs 4 stages; got MODEL.SWIN.DEPTHS {list(depths)} and NUM_HEADS "
                f"{list(num_heads)}: give both four entries."
            )
        unknown = [f for f in out_features if f not in _STAGE_NAMES]
        if unknown:
            raise ValueError(f"Unknown Swin output features {unknown}; choose from {list(_STAGE_NAMES)}.")
        self.ape = ape
        self.num_features = [embed_dim * 2**s for s in range(4)]
        self._out_features = list(out_features)
        self.patch_embed = PatchEmbed(
            patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, patch_norm=patch_norm
        )
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        starts = [sum(depths[:s]) for s in range(4)]
        self.layers = nn.ModuleList(
            SwinStage(
                dim=self.num_features[s],
                depth=depths[s],
                num_heads=num_heads[s],
                window_size=window_size,
                drop_path=rates[starts[s] : starts[s] + depths[s]],
                downsample=s < 3,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
            )
            for s in range(4)
        )
        for s in range(4):
            self.add_module(f"norm{s}", nn.LayerNorm(self.num_features[s]))
        self.apply(_init_weights)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``MODEL.SWIN.*``; input channels from ``MODEL.PIXEL_MEAN``."""
        swin = cfg.MODEL.SWIN
        return {
            "in_chans": len(cfg.MODEL.PIXEL_MEAN),
            "patch_size": swin.PATCH_SIZE,
            "embed_dim": swin.EMBED_DIM,
            "depths": list(swin.DEPTHS),
            "num_heads": list(swin.NUM_HEADS),
            "window_size": swin.WINDOW_SIZE,
            "mlp_ratio": swin.MLP_RATIO,
            "qkv_bias": swin.QKV_BIAS,
            "qk_scale": swin.QK_SCALE,
            "drop_rate": swin.DROP_RATE,
            "attn_drop_rate": swin.ATTN_DROP_RATE,
            "drop_path_rate": swin.DROP_PATH_RATE,
            "ape": swin.APE,
            "pretrain_img_size": swin.PRETRAIN_IMG_SIZE,
            "patch_norm": swin.PATCH_NORM,
            "out_features": list(swin.OUT_FEATURES),
        }

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and strides (input pixels per cell) of the returned features."""
        stride0 = self.patch_embed.patch_size
        return {
            name: ShapeSpec(channels=self.num_features[s], stride=stride0 * 2**s)
            for s, name in enumerate(_STAGE_NAMES)
            if name in self._out_features
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C_in, H, W) normalised images -> {name: (B, C_s, H_s, W_s)} for ``out_features``."""
        if x.dim() != 4 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(
                f"D2SwinTransformer expects images (B, {self.patch_embed.proj.in_channels}, H, W); "
                f"got shape {tuple(x.shape)}: pass a batched NCHW tensor."
            )
        x = self.patch_embed(x)
        hw = (x.shape[2], x.shape[3])
        if self.ape:
            x = x + F.interpolate(self.absolute_pos_embed, size=hw, mode="bicubic")
        x = self.pos_drop(x.flatten(2).transpose(1, 2))
        outs = {}
        for s, layer in enumerate(self.layers):
            out, x = layer(x, hw)
            name = _STAGE_NAMES[s]
            if name in self._out_features:
                out = getattr(self, f"norm{s}")(out)
                outs[name] = out.view(-1, hw[0], hw[1], self.num_features[s]).permute(0, 3, 1, 2).contiguous()
            hw = ((hw[0] + 1) // 2, (hw[1] + 1) // 2)
        return outs


def _init_weights(module: nn.Module) -> None:
    """The release's init: truncated-normal (std 0.02) linear weights, zero biases, unit
    LayerNorms (pretrained weights replace all of it)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


BACKBONE_REGISTRY.register(D2SwinTransformer, name="D2SwinTransformer")
