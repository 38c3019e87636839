"""The frozen CLIP backbone (spec §2): an open_clip model used as visual trunk and text encoder.

``CLIPBackbone`` wraps an open_clip ``CLIP`` model under the attribute ``clip_model`` (so its
state-dict keys are ``clip_model.*``, matching the released ``backbone.clip_model.*`` keys) and
exposes:

- ``forward(x)``: multi-scale visual features ``res2..res5`` (strides 4, 8, 16, 32) and the dense
  map ``clip_vis_dense`` used for CLIP's own mask classification;
- ``visual_prediction_forward(dense, mask_logits)``: one CLIP image embedding per mask;
- ``encode_text(tokens)`` / ``tokenize(texts)``: the text tower, accepting truncated token
  sequences (the causal mask makes the end-of-text feature independent of later padding).

Two visual towers are supported: ConvNeXt (open_clip ``TimmModel`` around a timm ``ConvNeXt``
trunk, e.g. ``convnext_large_d_320``) and ``ModifiedResNet`` (e.g. ``RN50x64``). The whole model
is frozen: no parameter requires grad, it stays in eval mode and runs under ``torch.no_grad``.

Provenance: the feature extraction, the ConvNeXt head on pooled vectors and the masked
attention pool follow FC-CLIP (Yu et al., 2023), which FrozenSeg builds on; this is a
re-implementation on open_clip's public module attributes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import NamedTuple, Optional, Sequence

import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from torch import nn
from torch.nn import functional as F

from ...config.config import configurable
from ...layers.blocks import ShapeSpec
from ...utils.registry import BACKBONE_REGISTRY
from ...utils.paths import resolve_path
from ..open_vocab import mask_pooling

__all__ = [
    "CLIPBackbone",
    "CLIPBackboneError",
    "UnknownCLIPModelError",
    "UnknownCLIPPretrainedTagError",
    "UnsupportedCLIPModelError",
    "CLIPWeightsNotFoundError",
    "CLIPWeightsUnavailableError",
    "CLIPWeightsLoadError",
]

logger = logging.getLogger(__name__)

_FEATURE_NAMES = ("res2", "res3", "res4", "res5")
_WEIGHT_FILE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".safetensors", ".npz", ".npy")
_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class CLIPBackboneError(Exception):
    """Base class of the errors raised while building the CLIP backbone."""


class UnknownCLIPModelError(CLIPBackboneError, ValueError):
    """``MODEL.FROZEN_SEG.CLIP_MODEL_NAME`` is not an open_clip model name."""


class UnknownCLIPPretrainedTagError(CLIPBackboneError, ValueError):
    """``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` is neither a known tag nor a file path."""


class UnsupportedCLIPModelError(CLIPBackboneError, ValueError):
    """The open_clip model has a tower FrozenSeg cannot use (only ConvNeXt / ModifiedResNet)."""


class CLIPWeightsNotFoundError(CLIPBackboneError, FileNotFoundError):
    """``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` names a local file that does not exist."""


class CLIPWeightsUnavailableError(CLIPBackboneError, RuntimeError):
    """The weights of a pretrained tag are not cached locally and cannot be downloaded."""


class CLIPWeightsLoadError(CLIPBackboneError, RuntimeError):
    """A local CLIP weights file exists but could not be loaded into the model."""


# ---------------------------------------------------------------------------------------------
# Weight resolution helpers
# ---------------------------------------------------------------------------------------------
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_mode() -> bool:
    """True when the Hugging Face offline switches are set (read at call time, not import)."""
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE")


def _hf_hub_cache_dir() -> str:
    """The Hugging Face hub cache directory as the environment says *now*."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return os.path.join(os.path.expanduser(hf_home), "hub")


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith(("~", "."))
        or value.lower().endswith(_WEIGHT_FILE_SUFFIXES)
    )


def _tag_download_hint(tag_cfg: dict) -> str:
    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        repo, fname = os.path.split(hf_hub)
        return f"https://huggingface.co/{repo} (file {fname or _HF_WEIGHTS_NAME})"
    if tag_cfg.get("url"):
        return tag_cfg["url"]
    return "the open_clip release"


def _cached_tag_file(tag_cfg: dict, cache_dir: Optional[str]) -> Optional[str]:
    """Find the weights of a pretrained tag in the local caches without any network access."""
    if tag_cfg.get("file") and os.path.isfile(tag_cfg["file"]):
        return tag_cfg["file"]
    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub is an open_clip dependency
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, fname = os.path.split(hf_hub)
            fname = fname or _HF_WEIGHTS_NAME
            candidates = [fname]
            if fname == _HF_WEIGHTS_NAME:
                candidates.insert(0, _HF_SAFE_WEIGHTS_NAME)
            elif fname.endswith((".bin", ".pth")):
                candidates.insert(0, fname[:-4] + ".safetensors")
            for candidate in candidates:
                found = try_to_load_from_cache(
                    repo, candidate, cache_dir=cache_dir or _hf_hub_cache_dir()
                )
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = tag_cfg.get("url", "")
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(target):
            return target
    return None


def _auto_quick_gelu(model_name: str, tag: Optional[str]) -> bool:
    """Whether the text tower should use QuickGELU.

    A known tag decides by its own open_clip record. Otherwise (local file, random weights, or
    weights supplied later by a checkpoint) QuickGELU is used iff *every* pretrained tag of the
    model was trained with it: ``RN50x64`` exists only as OpenAI weights (QuickGELU), and the
    released FrozenSeg loaded them through open_clip's OpenAI loader, which builds QuickGELU.
    """
    if tag is not None:
        return bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    cfgs = [open_clip.get_pretrained_cfg(model_name, t) for t in tags]
    return bool(cfgs) and all(c.get("quick_gelu", False) for c in cfgs)


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


# ---------------------------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------------------------
class CLIPBackbone(nn.Module):
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
    ):
        """
        Args:
            model_name: open_clip model name (``MODEL.FROZEN_SEG.CLIP_MODEL_NAME``).
            pretrained: open_clip pretrained tag or local weights file
                (``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS``); "" = random weights.
            model_config_file: optional open_clip model-config JSON registered first; its file
                stem is the model name (``MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE``).
            load_pretrained: False keeps random weights (meta-device builds, or when a
                checkpoint supplies the CLIP weights); the tag is still validated.
            device: where to build (None: CPU); ``"meta"`` builds without memory (shape checks, loading a
                state dict with ``assign=True``).
            cache_dir: open_clip download / cache directory (None: library defaults).
            quick_gelu: force QuickGELU in the text tower; None decides automatically
                (see ``_auto_quick_gelu``: True for RN50x64, False for convnext_large_d_320).
        """
        super().__init__()
        if model_config_file:
            cfg_path = resolve_path(model_config_file)
            if not cfg_path.is_file():
                raise FileNotFoundError(
                    f"CLIP model-config file {str(cfg_path)!r} (MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE) "
                    f"does not exist."
                )
            open_clip.add_model_config(cfg_path)
        self.model_name = model_name
        self.pretrained = pretrained or ""
        self.model_type = _check_model_config(model_name)
        device = torch.device(device) if device is not None else torch.device("cpu")
        is_meta = device.type == "meta"

        # --- resolve the weights -------------------------------------------------------------
        tag: Optional[str] = None
        weights_file: Optional[str] = None
        if self.pretrained:
            if open_clip.is_pretrained_cfg(model_name, self.pretrained):
                tag = self.pretrained
            else:
                path = os.path.expandvars(os.path.expanduser(self.pretrained))
                if os.path.isfile(path):
                    weights_file = path
                elif _looks_like_path(self.pretrained):
                    if load_pretrained and not is_meta:
                        raise CLIPWeightsNotFoundError(
                            f"CLIP weights file {path!r} (MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS) "
                            f"does not exist; point it to an existing open_clip weights file or to "
                            f"a pretrained tag of {model_name!r}."
                        )
                else:
                    tags = open_clip.list_pretrained_tags_by_model(model_name)
                    raise UnknownCLIPPretrainedTagError(
                        f"Unknown pretrained tag {self.pretrained!r} for CLIP model {model_name!r} "
                        f"(MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS); valid tags are: "
                        f"{', '.join(tags) if tags else '(none)'}, or give a local weights file path."
                    )
        if quick_gelu is None:
            quick_gelu = _auto_quick_gelu(model_name, tag)
        # a "-quickgelu" model config builds QuickGELU whatever the flag says
        self.quick_gelu = bool(quick_gelu) or bool(open_clip.get_model_config(model_name).get("quick_gelu", False))

        checkpoint_path: Optional[str] = None
        if load_pretrained and not is_meta:
            if tag is not None:
                checkpoint_path = self._resolve_tag(model_name, tag, cache_dir)
            elif weights_file is not None:
                checkpoint_path = weights_file
        elif load_pretrained and is_meta and self.pretrained:
            logger.info("Meta-device build of %s: pretrained weights are not loaded.", model_name)

        # --- build -------------------------------------------------------------------------------
        kwargs = dict(device=device, force_quick_gelu=self.quick_gelu, weights_only=True)
        if is_meta:
            with torch.device("meta"):
                model = open_clip.create_model(model_name, pretrained=None, **kwargs)
        else:
            try:
                model = open_clip.create_model(
                    model_name, pretrained=checkpoint_path, cache_dir=cache_dir, **kwargs
                )
            except Exception as e:
                if checkpoint_path is None:
                    raise
                raise CLIPWeightsLoadError(
                    f"Could not load CLIP weights from {checkpoint_path!r} into {model_name!r} "
                    f"({type(e).__name__}: {e}); expected an open_clip state dict (e.g. "
                    f"{_HF_WEIGHTS_NAME} or .safetensors) loadable with torch.load(weights_only=True)."
                ) from e
        self.weights_source = checkpoint_path or ("random" if not self.pretrained else "deferred")
        self.clip_model = model
        self._check_model_instance()
        self.clip_model.requires_grad_(False)
        self.clip_model.eval()
        self._tokenizer = None
        self._fingerprint_memo: Optional[tuple] = None
        logger.info(
            "Built frozen CLIP backbone %s (%s, weights: %s, quick_gelu=%s).",
            model_name, self.model_type, self.weights_source, self.quick_gelu,
        )

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``MODEL.FROZEN_SEG.CLIP_*``."""
        return {
            "model_name": cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME,
            "pretrained": cfg.MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS,
            "model_config_file": cfg.MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE,
        }

    @staticmethod
    def _resolve_tag(model_name: str, tag: str, cache_dir: Optional[str]) -> str:
        """Local path of a pretrained tag's weights: cache first, then download when online."""
        tag_cfg = open_clip.get_pretrained_cfg(model_name, tag)
        hint = (
            f"download {_tag_download_hint(tag_cfg)} on a machine with network access and set "
            f"MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS to the local file path (e.g. "
            f".../{_HF_WEIGHTS_NAME})"
        )
        cached = _cached_tag_file(tag_cfg, cache_dir)
        if cached is not None:
            return cached
        if _offline_mode():
            raise CLIPWeightsUnavailableError(
                f"The weights of CLIP {model_name!r} tag {tag!r} are not in the local cache and "
                f"downloads are disabled (HF_HUB_OFFLINE); {hint}."
            )
        try:
            path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
        except Exception as e:
            raise CLIPWeightsUnavailableError(
                f"The weights of CLIP {model_name!r} tag {tag!r} are not in the local cache and "
                f"could not be downloaded ({type(e).__name__}: {e}); {hint}."
            ) from e
        if not path or not os.path.isfile(path):
            raise CLIPWeightsUnavailableError(
                f"The weights of CLIP {model_name!r} tag {tag!r} could not be located; {hint}."
            )
        return path

    def _check_model_instance(self) -> None:
        m = self.clip_model
        visual = getattr(m, "visual", None)
        ok_text = all(
            hasattr(m, a)
            for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
        )
        if self.model_type == "convnext":
            ok_visual = isinstance(visual, TimmModel) and all(
                hasattr(visual.trunk, a) for a in ("stem", "stages", "norm_pre", "head")
            )
        else:
            ok_visual = isinstance(visual, ModifiedResNet)
        if not (ok_visual and ok_text):
            raise UnsupportedCLIPModelError(
                f"CLIP model {self.model_name!r} built as {type(m).__name__} with visual tower "
                f"{type(visual).__name__}; FrozenSeg needs a standard CLIP text tower with a timm "
                f"ConvNeXt (TimmModel) or ModifiedResNet visual tower."
            )

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

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-scale features of CLIP-normalised images.

        Args:
            x: (B, 3, H, W), normalised with the CLIP mean/std, H and W multiples of 32.
        Returns:
            ``res2..res5``: (B, C_i, H/s_i, W/s_i) with s = 4, 8, 16, 32 (channels from
            ``output_shape()``); ``clip_vis_dense``: (B, C_5, H/32, W/32), the map used for
            CLIP mask classification (ConvNeXt: ``trunk.norm_pre(res5)``; ResNet: res5).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CLIPBackbone expects images of shape (B, 3, H, W); got {tuple(x.shape)}.")
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(
                f"CLIPBackbone input size {tuple(x.shape[-2:])} must be a multiple of 32 (pad the batch)."
            )
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
            x = visual.act1(visual.bn1(visual.conv1(x)))
            x = visual.act2(visual.bn2(visual.conv2(x)))
            x = visual.act3(visual.bn3(visual.conv3(x)))
            x = visual.avgpool(x)
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

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text features (not normalised) at the end-of-text token, projected.

        Args:
            tokens: (N, L) token ids, L <= context length; may be truncated after the last
                end-of-text token (the causal mask makes the result identical).
        Returns:
            (N, D).
        """
        m = self.clip_model
        n, length = tokens.shape
        if length > m.positional_embedding.shape[0]:
            raise ValueError(
                f"Token length {length} exceeds the CLIP context length {m.positional_embedding.shape[0]}."
            )
        tokens = tokens.to(m.positional_embedding.device)
        cast_dtype = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast_dtype)  # (N, L, W)
        x = x + m.positional_embedding[:length].to(cast_dtype)
        attn_mask = m.attn_mask[:length, :length] if m.attn_mask is not None else None
        x = m.transformer(x, attn_mask=attn_mask)  # batch-first in and out
        x = m.ln_final(x)
        if getattr(m, "text_pool_type", "argmax") == "eos" and getattr(m, "text_eos_id", None) is not None:
            idx = (tokens == m.text_eos_id).int().argmax(dim=-1)
        else:
            idx = tokens.argmax(dim=-1)  # end-of-text has the largest id
        x = x[torch.arange(n, device=x.device), idx]
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x

    # ---- text: shared-prefix encoding -------------------------------------------------------
    # Many prompts start with the same tokens (SOT + template words, e.g. "a photo of a"). With
    # the causal mask the hidden states of those tokens are identical in every prompt and every
    # layer, so they are computed once (``encode_text_prefixes`` keeps their per-layer keys and
    # values) and only the remaining tokens of each prompt are run, attending to
    # [prefix keys/values ; causal own keys/values] (``encode_text_shared_prefix``). The blocks
    # are re-expressed with open_clip's public module attributes (ln_1, attn.in_proj_*, out_proj,
    # ls_1, ln_2, mlp, ls_2); ``supports_text_prefix_sharing`` says whether the text tower has
    # exactly that structure.

    class TextPrefixCache(NamedTuple):
        """Per-layer keys/values of G token prefixes (built by ``encode_text_prefixes``)."""

        kv: list  # one (k, v) per text block, each (G, heads, P, W / heads); P = max length
        lengths: torch.Tensor  # (G,) int64 valid length of each prefix (<= P)
        max_token: torch.Tensor  # (G,) int64 largest token id of each prefix (-1 if empty)

    def supports_text_prefix_sharing(self) -> bool:
        """True if the text tower is the standard causal CLIP transformer that the shared-prefix
        encoding re-implements (open_clip ``ResidualAttentionBlock``s with a packed
        ``nn.MultiheadAttention``, a causal mask and argmax (end-of-text) pooling)."""
        from open_clip.transformer import ResidualAttentionBlock, Transformer

        m = self.clip_model
        if getattr(m, "text_pool_type", "argmax") != "argmax":
            return False
        transformer = getattr(m, "transformer", None)
        mask = getattr(m, "attn_mask", None)
        if not isinstance(transformer, Transformer) or type(transformer).forward is not Transformer.forward:
            return False
        if not isinstance(mask, torch.Tensor) or mask.device.type == "meta" or mask.dim() != 2:
            return False
        n = mask.shape[0]
        causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
        if mask.shape[1] != n or not (bool((mask[causal] == 0).all()) and bool(torch.isneginf(mask[~causal]).all())):
            return False
        for blk in transformer.resblocks:
            attn = getattr(blk, "attn", None)
            if not (
                isinstance(blk, ResidualAttentionBlock)
                and type(blk).forward is ResidualAttentionBlock.forward
                and type(blk).attention is ResidualAttentionBlock.attention
                and not hasattr(blk, "ln_1_kv")
                and isinstance(attn, nn.MultiheadAttention)
                and attn._qkv_same_embed_dim
                and attn.in_proj_weight is not None
                and attn.bias_k is None
                and attn.bias_v is None
                and not attn.add_zero_attn
                and not (attn.training and attn.dropout > 0)
            ):
                return False
        return True

    def _text_blocks_with_past(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        past_kv: Optional[list],
        past_valid: Optional[torch.Tensor],
        pool_index: Optional[torch.Tensor],
    ):
        """Text blocks on ``tokens`` (B, S) at ``positions`` (B, S), attending to the past keys /
        values ``past_kv`` (per block (k, v), each (B, heads, P, hd); ``past_valid`` (B, P) marks
        the real ones) and causally to themselves.

        ``pool_index`` None: returns the tokens' per-block (k, v), each (B, heads, S, hd).
        ``pool_index`` (B,): returns ``ln_final`` of the last block's output at that position
        (B, W); the last block runs its queries, out-projection and MLP only there.
        """
        m = self.clip_model
        cast_dtype = m.transformer.get_cast_dtype()
        b, s = tokens.shape
        dev = tokens.device
        x = m.token_embedding(tokens).to(cast_dtype)
        x = x + m.positional_embedding[positions].to(cast_dtype)
        own = torch.ones(s, s, dtype=torch.bool, device=dev).tril()
        if past_kv is not None:
            p = past_valid.shape[1]
            mask = torch.cat([past_valid[:, None, :].expand(b, s, p), own.expand(b, s, s)], dim=-1)
        else:
            mask = own.expand(b, s, s)
        mask = mask[:, None]  # (B, 1, S, P + S)
        rows = torch.arange(b, device=dev)
        blocks = m.transformer.resblocks
        kv_out = []
        for i, blk in enumerate(blocks):
            attn = blk.attn
            heads = attn.num_heads
            width = x.shape[-1]
            hd = width // heads
            w, bias = attn.in_proj_weight, attn.in_proj_bias
            h = blk.ln_1(x)
            last = i == len(blocks) - 1
            if last and pool_index is not None:
                kv = F.linear(h, w[width:], bias[width:] if bias is not None else None)
                k, v = kv.view(b, s, 2, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
                x = x[rows, pool_index][:, None]  # (B, 1, W)
                q = F.linear(h[rows, pool_index][:, None], w[:width], bias[:width] if bias is not None else None)
                q = q.view(b, 1, heads, hd).transpose(1, 2)
                mask = mask[rows, :, pool_index][:, :, None]  # (B, 1, 1, P + S)
            else:
                qkv = F.linear(h, w, bias)
                q, k, v = qkv.view(b, s, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, S, hd)
            if pool_index is None:
                kv_out.append((k, v))
                if last:
                    return kv_out  # the last block's outputs are not needed
            if past_kv is not None:
                pk, pv = past_kv[i]
                k = torch.cat([pk, k], dim=2)
                v = torch.cat([pv, v], dim=2)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            o = o.transpose(1, 2).reshape(b, q.shape[2], width)
            x = x + blk.ls_1(attn.out_proj(o))
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        return m.ln_final(x[:, 0])

    @torch.no_grad()
    def encode_text_prefixes(self, prefixes: Sequence[torch.Tensor]) -> "CLIPBackbone.TextPrefixCache":
        """Per-layer keys/values of G token prefixes (1-D token-id tensors, lengths may differ
        and may be 0), for ``encode_text_shared_prefix``."""
        if not self.supports_text_prefix_sharing():
            raise RuntimeError(f"The text tower of {self.model_name!r} does not support prefix sharing.")
        m = self.clip_model
        dev = m.positional_embedding.device
        ctx = m.positional_embedding.shape[0]
        prefixes = [torch.as_tensor(p).reshape(-1).long() for p in prefixes]
        g = len(prefixes)
        lengths = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
        p_max = int(lengths.max()) if g else 0
        if p_max >= ctx:
            raise ValueError(f"A text prefix of {p_max} tokens leaves no room in the context length {ctx}.")
        max_token = torch.tensor([int(p.max()) if len(p) else -1 for p in prefixes], dtype=torch.long)
        if p_max == 0:
            cast_dtype = m.transformer.get_cast_dtype()
            kv = []
            for blk in m.transformer.resblocks:
                heads, width = blk.attn.num_heads, blk.attn.embed_dim
                empty = torch.empty(g, heads, 0, width // heads, dtype=cast_dtype, device=dev)
                kv.append((empty, empty))
            return self.TextPrefixCache(kv, lengths.to(dev), max_token.to(dev))
        tokens = torch.zeros(g, p_max, dtype=torch.long)
        for j, p in enumerate(prefixes):
            tokens[j, : len(p)] = p
        tokens = tokens.to(dev)
        positions = torch.arange(p_max, device=dev).expand(g, p_max)
        # right padding is harmless: causal, and masked out as a key by the suffix pass
        kv = self._text_blocks_with_past(tokens, positions, None, None, None)
        return self.TextPrefixCache(kv, lengths.to(dev), max_token.to(dev))

    @torch.no_grad()
    def encode_text_shared_prefix(
        self,
        prefix_cache: "CLIPBackbone.TextPrefixCache",
        prefix_index: torch.Tensor,
        suffix_tokens: torch.Tensor,
    ) -> torch.Tensor:
        """``encode_text`` of the prompts ``prefix_g + suffix_b`` (g = ``prefix_index[b]``),
        reusing the cached prefix keys/values.

        Args:
            prefix_cache: from ``encode_text_prefixes``.
            prefix_index: (B,) index of each prompt's prefix in the cache.
            suffix_tokens: (B, S) the remaining token ids of each prompt, zero padded; each must
                contain the end-of-text token (the largest id of the prompt, which is pooled)
                and may be truncated after it.
        Returns:
            (B, D), equal to ``encode_text`` of the full prompts up to float rounding.
        """
        m = self.clip_model
        dev = m.positional_embedding.device
        ctx = m.positional_embedding.shape[0]
        suffix_tokens = suffix_tokens.to(dev).long()
        prefix_index = prefix_index.to(dev).long()
        b, s = suffix_tokens.shape
        if s == 0:
            raise ValueError("Empty suffix: the pooled end-of-text token must be in the suffix.")
        lengths = prefix_cache.lengths[prefix_index]  # (B,)
        pool_index = suffix_tokens.argmax(dim=-1)
        if bool((prefix_cache.max_token[prefix_index] >= suffix_tokens.max(dim=-1).values).any()):
            raise ValueError("The pooled (largest-id) token of a prompt lies in its shared prefix.")
        if bool((lengths + pool_index >= ctx).any()):
            raise ValueError(f"A prompt exceeds the CLIP context length {ctx}.")
        offsets = torch.arange(s, device=dev)
        positions = (lengths[:, None] + offsets).clamp(max=ctx - 1)  # clamped ones: padding only
        p_max = prefix_cache.kv[0][0].shape[2]
        past_valid = torch.arange(p_max, device=dev)[None, :] < lengths[:, None]
        past_kv = [(k[prefix_index], v[prefix_index]) for k, v in prefix_cache.kv]
        x = self._text_blocks_with_past(suffix_tokens, positions, past_kv, past_valid, pool_index)
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x

    def _text_tensors(self) -> list[tuple[str, torch.Tensor]]:
        m = self.clip_model
        named = []
        for prefix, mod in (
            ("token_embedding", m.token_embedding),
            ("transformer", m.transformer),
            ("ln_final", m.ln_final),
        ):
            named.extend((f"{prefix}.{k}", v) for k, v in mod.state_dict(keep_vars=True).items())
        named.append(("positional_embedding", m.positional_embedding))
        proj = m.text_projection
        if isinstance(proj, nn.Linear):
            named.extend((f"text_projection.{k}", v) for k, v in proj.state_dict(keep_vars=True).items())
        elif proj is not None:
            named.append(("text_projection", proj))
        return named

    def text_weights_fingerprint(self) -> Optional[str]:
        """SHA-256 of the text-tower weights (bytes, dtypes, shapes); None on the meta device.

        Computed once and memoised; recomputed when a text parameter is replaced or modified in
        place (tracked by tensor identity and version counters), e.g. after a checkpoint load.
        """
        tensors = self._text_tensors()
        state = []
        for _, t in tensors:
            try:
                version = t._version
            except Exception:  # inference tensors have no version counter
                version = -1
            state.append((id(t), t.data_ptr() if t.device.type != "meta" else 0, version))
        state = tuple(state)
        if self._fingerprint_memo is not None and self._fingerprint_memo[0] == state:
            return self._fingerprint_memo[1]
        if any(t.device.type == "meta" for _, t in tensors):
            return None
        h = hashlib.sha256()
        for name, t in tensors:
            t = t.detach()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        digest = h.hexdigest()
        self._fingerprint_memo = (state, digest)
        return digest

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
