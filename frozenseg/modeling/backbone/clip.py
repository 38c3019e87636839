"""The frozen CLIP backbone (docs/models/frozenseg.md §2): an open_clip model used as visual trunk and text encoder.

``CLIPBackbone`` wraps an open_clip ``CLIP`` model under the attribute ``clip_model`` (so its
state-dict keys are ``clip_model.*``, matching the released ``backbone.clip_model.*`` keys) and
exposes:

- ``forward(x)``: multi-scale visual features ``res2..res5`` (strides 4, 8, 16, 32) and the dense
  map ``clip_vis_dense`` used for CLIP's own mask classification;
- ``visual_prediction_forward(dense, mask_logits)``: one CLIP image embedding per mask;
- ``encode_text(tokens)`` / ``tokenize(texts)`` and the shared-prefix text encoding, delegated
  to ``clip_text`` (the text-tower forwards and their assumptions about open_clip);
- ``text_cache_identity()``: the key of the text encoder for the text-classifier disk cache.

Two visual towers are supported: ConvNeXt (open_clip ``TimmModel`` around a timm ``ConvNeXt``
trunk, e.g. ``convnext_large_d_320``) and ``ModifiedResNet`` (e.g. ``RN50x64``). The whole model
is frozen: no parameter requires grad, it stays in eval mode and runs under ``torch.no_grad``.
Weights are resolved and loaded by ``clip_weights``. The tiny test models' open_clip
model-config JSONs ship in ``clip_models/`` (package data) and are registered by name.

Provenance: the feature extraction, the ConvNeXt head on pooled vectors and the masked
attention pool follow FC-CLIP (Yu et al., 2023), which FrozenSeg builds on; this is a
re-implementation on open_clip's public module attributes.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from torch import nn
from torch.nn import functional as F

from ...config.config import configurable
from ...layers.blocks import ShapeSpec
from ...layers.switches import FrozenEncoderModule
from ...utils.registry import BACKBONE_REGISTRY
from ..open_vocab import mask_pooling
from ..precision import autocast_call, frozen_encoders_dtype
from . import clip_text
from .clip_weights import (
    CLIPBackboneError,
    create_clip_model,
    resolve_pretrained,
    tag_weights_file,
    text_quick_gelu,
)
from .text_classifier import WeightsFingerprint

__all__ = [
    "CLIPBackbone",
    "UnknownCLIPModelError",
    "UnsupportedCLIPModelError",
    "shipped_model_config",
]

logger = logging.getLogger(__name__)

_FEATURE_NAMES = ("res2", "res3", "res4", "res5")
#: open_clip model-config JSONs shipped as package data, ``<model name>.json`` (the tiny models);
#: a directory of the installed package (open_clip registers files by path).
_SHIPPED_CONFIGS = Path(str(importlib.resources.files(__package__).joinpath("clip_models")))


class UnknownCLIPModelError(CLIPBackboneError, ValueError):
    """``MODEL.FROZEN_SEG.CLIP_MODEL_NAME`` is not an open_clip model name."""


class UnsupportedCLIPModelError(CLIPBackboneError, ValueError):
    """The open_clip model has a tower FrozenSeg cannot use (only ConvNeXt / ModifiedResNet)."""


def shipped_model_config(model_name: str) -> Optional[Path]:
    """The open_clip model-config JSON shipped with the package for ``model_name``
    (``frozenseg/modeling/backbone/clip_models/<model_name>.json``, e.g. the tiny test models),
    or None when the package ships none."""
    path = _SHIPPED_CONFIGS / f"{model_name}.json"
    return path if path.is_file() else None


def _register_model_config(model_name: str, model_config_file: str) -> None:
    """Register the open_clip model config of ``MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE``.

    A path (``~`` and ``$VARS`` expanded, relative to the working directory) registers that
    JSON, whose file stem is the model name; "" registers the JSON shipped for ``model_name``
    if the package has one (open_clip's own models need none).
    """
    if model_config_file:
        path = Path(os.path.expandvars(os.path.expanduser(model_config_file)))
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in _SHIPPED_CONFIGS.glob("*.json")))
            raise FileNotFoundError(
                f"CLIP model-config file {str(path)!r} (MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE) "
                f"does not exist; give an existing open_clip model-config JSON, or \"\" for "
                f"open_clip's models and the shipped ones ({shipped})."
            )
    else:
        path = shipped_model_config(model_name)
        if path is None:
            return
    open_clip.add_model_config(path)


def _check_model_config(model_name: str) -> str:
    """Validate the model name and its tower types from the config; returns the model type."""
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise UnknownCLIPModelError(
            f"Unknown CLIP model {model_name!r} in MODEL.FROZEN_SEG.CLIP_MODEL_NAME; valid "
            f"open_clip model names are: {', '.join(open_clip.list_models())} (or register a "
            f"model-config JSON with MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE)."
        )
    vision_cfg = model_cfg.get("vision_cfg", {})
    text_cfg = model_cfg.get("text_cfg", {})
    if "hf_model_name" in text_cfg or model_cfg.get("custom_text", False):
        raise UnsupportedCLIPModelError(
            f"CLIP model {model_name!r} has a custom (Hugging Face) text tower; FrozenSeg supports "
            f"only the standard CLIP text transformer (e.g. convnext_large_d_320, RN50x64)."
        )
    timm_name = vision_cfg.get("timm_model_name")
    if timm_name is not None:
        if not str(timm_name).startswith("convnext"):
            raise UnsupportedCLIPModelError(
                f"CLIP model {model_name!r} has the timm visual trunk {timm_name!r}; FrozenSeg "
                f"supports ConvNeXt trunks and ModifiedResNet (e.g. convnext_large_d_320, RN50x64)."
            )
        return "convnext"
    if isinstance(vision_cfg.get("layers"), (list, tuple)):
        return "resnet"
    raise UnsupportedCLIPModelError(
        f"CLIP model {model_name!r} has a ViT visual tower; FrozenSeg supports only ConvNeXt "
        f"(timm) and ModifiedResNet visual towers (e.g. convnext_large_d_320, RN50x64)."
    )


class CLIPBackbone(FrozenEncoderModule, clip_text.OpenCLIPTextEncoding, nn.Module):
    """Frozen open_clip CLIP model: visual features, mask classification and text encoding.

    Registered in ``BACKBONE_REGISTRY`` as ``"CLIP"`` (``MODEL.BACKBONE.NAME``).

    Attributes:
        clip_model: the open_clip ``CLIP`` model (state-dict keys ``clip_model.*``).
        model_name: open_clip model name.
        pretrained: the configured weights (tag, local file path, or "" for random).
        model_type: ``"convnext"`` or ``"resnet"``.
        size_divisibility: inputs must have H and W divisible by this (32).
    """

    size_divisibility = 32

    @configurable
    def __init__(
        self,
        *,
        model_name: str,
        pretrained: str = "",
        model_config_file: str = "",
        load_pretrained: bool = True,
        device: str | torch.device | None = "cpu",
        cache_dir: Optional[str] = None,
        quick_gelu: Optional[bool] = None,
        compute_dtype: Optional[torch.dtype] = None,
    ):
        """
        Args:
            model_name: open_clip model name (``MODEL.FROZEN_SEG.CLIP_MODEL_NAME``).
            pretrained: open_clip pretrained tag or local weights file
                (``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS``); "" = random weights.
            model_config_file: open_clip model-config JSON registered first; its file stem is
                the model name (``MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE``); "" registers the
                JSON the package ships for ``model_name``, if any (``shipped_model_config``).
            load_pretrained: False keeps random weights (meta-device builds, or when a
                checkpoint supplies the CLIP weights); the tag is still validated.
            device: where to build (None: CPU); ``"meta"`` builds without memory (shape checks, loading a
                state dict with ``assign=True``).
            cache_dir: open_clip download / cache directory (None: library defaults).
            quick_gelu: force QuickGELU in the text tower; None decides automatically
                (see ``clip_weights.text_quick_gelu``: True for RN50x64, False for
                convnext_large_d_320).
            compute_dtype: autocast dtype of the visual trunk's forward (``forward``; outputs
                cast back to float32), None for float32 (MODEL.FROZEN_ENCODERS_DTYPE, see
                :mod:`frozenseg.modeling.precision`). An attribute, so it can be switched on a
                built model.
        """
        super().__init__()
        self.compute_dtype = compute_dtype
        _register_model_config(model_name, model_config_file)
        self.model_name = model_name
        self.pretrained = pretrained or ""
        self.model_type = _check_model_config(model_name)
        device = torch.device(device) if device is not None else torch.device("cpu")
        is_meta = device.type == "meta"
        load = load_pretrained and not is_meta

        weights = resolve_pretrained(model_name, self.pretrained, require_file=load)
        if quick_gelu is None:
            quick_gelu = text_quick_gelu(model_name, weights.tag)
        # a "-quickgelu" model config builds QuickGELU whatever the flag says
        self.quick_gelu = bool(quick_gelu) or bool(open_clip.get_model_config(model_name).get("quick_gelu", False))

        checkpoint_path: Optional[str] = None
        if load:
            if weights.tag is not None:
                checkpoint_path = tag_weights_file(model_name, weights.tag, cache_dir)
            else:
                checkpoint_path = weights.file
        elif load_pretrained and is_meta and self.pretrained:
            logger.info("Meta-device build of %s: pretrained weights are not loaded.", model_name)

        model = create_clip_model(
            model_name, checkpoint_path=checkpoint_path, device=device, quick_gelu=self.quick_gelu,
            cache_dir=cache_dir,
        )
        self.weights_source = checkpoint_path or ("random" if not self.pretrained else "deferred")
        self.clip_model = model
        self._check_model_instance()
        self.clip_model.requires_grad_(False)
        self.clip_model.eval()
        self._tokenizer = None
        self._text_fingerprint = WeightsFingerprint()
        logger.info(
            "Built frozen CLIP backbone %s (%s, weights: %s, quick_gelu=%s).",
            model_name, self.model_type, self.weights_source, self.quick_gelu,
        )

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``MODEL.FROZEN_SEG.CLIP_*`` and MODEL.FROZEN_ENCODERS_DTYPE."""
        return {
            "model_name": cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME,
            "pretrained": cfg.MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS,
            "model_config_file": cfg.MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE,
            "compute_dtype": frozen_encoders_dtype(cfg),
        }

    def _check_model_instance(self) -> None:
        m = self.clip_model
        visual = getattr(m, "visual", None)
        if self.model_type == "convnext":
            ok_visual = isinstance(visual, TimmModel) and all(
                hasattr(visual.trunk, a) for a in ("stem", "stages", "norm_pre", "head")
            )
        else:
            ok_visual = isinstance(visual, ModifiedResNet)
        if not ok_visual:
            raise UnsupportedCLIPModelError(
                f"CLIP model {self.model_name!r} built as {type(m).__name__} with visual tower "
                f"{type(visual).__name__}; FrozenSeg needs a standard CLIP text tower with a timm "
                f"ConvNeXt (TimmModel) or ModifiedResNet visual tower."
            )
        try:
            clip_text.check_text_tower(m, prefix_sharing=False)
        except clip_text.UnsupportedTextTowerError as e:
            raise UnsupportedCLIPModelError(f"CLIP model {self.model_name!r}: {e}") from e

    # ---- frozen behaviour -------------------------------------------------------------------
    def train(self, mode: bool = True) -> "CLIPBackbone":
        """Set the wrapper's mode; the CLIP model itself always stays in eval mode."""
        super().train(mode)
        self.clip_model.eval()
        return self

    @property
    def device(self) -> torch.device:
        """Device of the CLIP weights."""
        return self.clip_model.logit_scale.device

    @property
    def dim_latent(self) -> int:
        """D, the joint image-text embedding dimension."""
        proj = self.clip_model.text_projection
        if isinstance(proj, nn.Linear):
            return proj.out_features
        return int(proj.shape[-1])

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned log temperature (a scalar parameter; use ``min(exp(.), 100)``)."""
        return self.clip_model.logit_scale

    # ---- visual -----------------------------------------------------------------------------
    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and strides of res2..res5, read from module attributes (no forward)."""
        visual = self.clip_model.visual
        if self.model_type == "convnext":
            info = visual.trunk.feature_info
            stage_info = {f["module"]: f for f in info}
            out = {}
            for i, name in enumerate(_FEATURE_NAMES):
                f = stage_info[f"stages.{i}"]
                out[name] = ShapeSpec(channels=int(f["num_chs"]), stride=int(f["reduction"]))
            return out
        stride = visual.conv1.stride[0] * _pool_stride(visual.avgpool)
        out = {}
        for name, layer in zip(_FEATURE_NAMES, (visual.layer1, visual.layer2, visual.layer3, visual.layer4)):
            stride *= int(layer[0].stride)
            out[name] = ShapeSpec(channels=int(layer[-1].conv3.out_channels), stride=int(stride))
        return out

    def dense_channels(self) -> int:
        """Channels C of ``clip_vis_dense`` (= res5 channels)."""
        return self.output_shape()["res5"].channels

    def int8_modules(self) -> dict[str, nn.Module]:
        """The visual trunk of a ConvNeXt CLIP (timm's ConvNeXt MLPs); a ResNet CLIP trunk has no
        linear layers, and the attention pool and the text tower stay float32."""
        if self.model_type == "convnext":
            return {"clip_model.visual.trunk": self.clip_model.visual.trunk}
        return {}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-scale features of CLIP-normalised images.

        Args:
            x: (B, 3, H, W), normalised with the CLIP mean/std, H and W multiples of 32.
        Returns:
            ``res2..res5``: (B, C_i, H/s_i, W/s_i) with s = 4, 8, 16, 32 (channels from
            ``output_shape()``); ``clip_vis_dense``: (B, C_5, H/32, W/32), the map used for
            CLIP mask classification (ConvNeXt: ``trunk.norm_pre(res5)``; ResNet: res5). All
            float32 (computed under autocast when ``compute_dtype`` is set).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CLIPBackbone expects images of shape (B, 3, H, W); got {tuple(x.shape)}.")
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(
                f"CLIPBackbone input size {tuple(x.shape[-2:])} must be a multiple of 32 (pad the batch)."
            )
        return autocast_call(self._trunk_features, x, self.compute_dtype)

    def _trunk_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``forward``'s features of a checked input, in the dtypes the trunk computes."""
        visual = self.clip_model.visual
        out: dict[str, torch.Tensor] = {}
        if self.model_type == "convnext":
            trunk = visual.trunk
            x = trunk.stem(x)
            for i, name in enumerate(_FEATURE_NAMES):
                x = trunk.stages[i](x)
                out[name] = x.contiguous()
            out["clip_vis_dense"] = trunk.norm_pre(x).contiguous()
        else:
            x = visual.stem(x)  # open_clip's own 3-conv stem + average pool (stride 4)
            for name, layer in zip(_FEATURE_NAMES, (visual.layer1, visual.layer2, visual.layer3, visual.layer4)):
                x = layer(x)
                out[name] = x.contiguous()
            out["clip_vis_dense"] = x.contiguous()
        return out

    @torch.no_grad()
    def visual_prediction_forward(
        self, dense: torch.Tensor, mask_logits: torch.Tensor
    ) -> torch.Tensor:
        """CLIP image embedding of every mask (not normalised).

        Args:
            dense: (B, C, h, w) ``clip_vis_dense``.
            mask_logits: (B, Q, h', w') mask logits; resized bilinearly to (h, w) when needed.
        Returns:
            (B, Q, D). ConvNeXt: mask pooling (``M > 0``), then ``trunk.head`` (pool, LayerNorm,
            flatten) and the projection ``visual.head`` on (B*Q, C, 1, 1) inputs. ResNet: the
            attention pool with the mask as attention mask (``_masked_attention_pool``).
        """
        if self.model_type == "convnext":
            pooled = mask_pooling(dense, mask_logits)  # (B, Q, C)
            b, q, c = pooled.shape
            x = pooled.reshape(b * q, c, 1, 1)
            x = self.clip_model.visual.trunk.head(x)
            x = self.clip_model.visual.head(x)
            return x.reshape(b, q, x.shape[-1])
        return self._masked_attention_pool(dense, mask_logits)

    def _masked_attention_pool(self, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """ModifiedResNet attention pool restricted to each mask.

        Per mask q: query = mean of all dense tokens + class positional embedding; keys/values =
        dense tokens + spatial positional embedding (resized bilinearly from the attnpool grid to
        (h, w)); tokens where the (bilinearly resized) mask logit is <= 0 are blocked. A mask that
        blocks every token is unblocked entirely (it then gets the whole-image embedding) so the
        output has no NaN; such masks are "invalid" for ``ENSEMBLE_ON_VALID_MASK`` anyway.

        Args:
            dense: (B, C, h, w); mask_logits: (B, Q, h', w').
        Returns:
            (B, Q, D).
        """
        attnpool = self.clip_model.visual.attnpool
        b, c, h, w = dense.shape
        if mask_logits.shape[-2:] != (h, w):
            mask_logits = F.interpolate(
                mask_logits.to(dense.dtype), size=(h, w), mode="bilinear", align_corners=False
            )
        q = mask_logits.shape[1]
        pos = attnpool.positional_embedding.to(dense.dtype)  # (1 + g*g, C)
        grid = int(round((pos.shape[0] - 1) ** 0.5))
        spatial = pos[1:].t().reshape(1, c, grid, grid)
        if (grid, grid) != (h, w):
            spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=False)
        spatial = spatial.reshape(c, h * w).t().unsqueeze(1)  # (hw, 1, C)

        tokens = dense.reshape(b, c, h * w).permute(2, 0, 1)  # (hw, B, C)
        key_value = tokens + spatial
        query = tokens.mean(dim=0, keepdim=True) + pos[:1, None, :]  # (1, B, C)
        query = query.expand(q, b, c)  # (Q, B, C)

        blocked = mask_logits.reshape(b, q, h * w) <= 0  # (B, Q, hw), True = blocked
        blocked = blocked & ~blocked.all(dim=-1, keepdim=True)  # empty mask: attend everywhere
        heads = attnpool.num_heads
        attn_mask = blocked.unsqueeze(1).expand(b, heads, q, h * w).reshape(b * heads, q, h * w)

        out, _ = F.multi_head_attention_forward(
            query=query,
            key=key_value,
            value=key_value,
            embed_dim_to_check=c,
            num_heads=heads,
            in_proj_weight=None,
            in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=attnpool.c_proj.weight,
            out_proj_bias=attnpool.c_proj.bias,
            training=False,
            need_weights=False,
            attn_mask=attn_mask,
            use_separate_proj_weight=True,
            q_proj_weight=attnpool.q_proj.weight,
            k_proj_weight=attnpool.k_proj.weight,
            v_proj_weight=attnpool.v_proj.weight,
        )
        return out.permute(1, 0, 2)  # (B, Q, D)

    # ---- text -------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """open_clip's tokenizer for this model (bundled BPE vocabulary; no download)."""
        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        return self._tokenizer

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise prompts: list of N strings -> (N, context_length=77) int64, zero padded."""
        return self.tokenizer(list(texts)).long()

    # encode_text and the shared-prefix methods: clip_text.OpenCLIPTextEncoding

    # ---- text: disk-cache identity -----------------------------------------------------------
    def text_weights_fingerprint(self) -> Optional[str]:
        """SHA-256 of the text-tower weights (bytes, dtypes, shapes); None on the meta device.

        Memoised; recomputed when a text parameter is replaced or modified in place (see
        ``text_classifier.WeightsFingerprint``), e.g. after a checkpoint load.
        """
        return self._text_fingerprint(clip_text.text_tensors(self.clip_model))

    def text_cache_identity(self) -> Optional[str]:
        """Key of this text encoder for persistent text-classifier caches (None: do not cache).

        Model name + QuickGELU flag + a hash of the actual text-tower weights, so different
        random inits, tags, files or checkpoint-supplied weights never share entries, while the
        same weights reached by different routes do.
        """
        fp = self.text_weights_fingerprint()
        if fp is None:
            return None
        return f"{self.model_name}|quick_gelu={int(self.quick_gelu)}|text-sha256={fp}"


BACKBONE_REGISTRY.register(CLIPBackbone, name="CLIP")  # the released MODEL.BACKBONE.NAME


def _pool_stride(pool: nn.Module) -> int:
    s = getattr(pool, "stride", None) or getattr(pool, "kernel_size", 1)
    return int(s[0] if isinstance(s, (tuple, list)) else s)
