"""OVSeg's CLIP adapter module (``clip_adapter.*`` of the released checkpoints; docs/models/ovseg.md §2.5,
§2.8-2.10, §4.3).

State: ``clip_model.*`` (frozen open_clip CLIP with ``visual.mask_embedding``),
``non_object_embedding`` (1, D) (trainable, the no-object text row), ``pixel_mean`` /
``pixel_std`` (1, 3, 1, 1) (255 x CLIP statistics, persistent buffers as released).

Fast path (``MODEL.FAST_INFERENCE``, on by default; a :class:`~frozenseg.layers.switches.FastPathModule`
switch, so ``model.set_fast_inference`` reaches it): the crops are cut by the fast path of
:func:`~.regions.prepare_clip_regions` (bit-identical crops) and, without gradients, encoded by
:func:`~.mask_prompt.fast_encode_image_with_mask_prompts` (the same features up to float
rounding). Off, both run the reference code that follows the release step by step.

Provenance: ``MaskFormerClipAdapter`` of the OVSeg release (Liang et al., CVPR 2023).
Independent implementation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ....config import configurable
from ....layers.switches import FastPathModule
from ....modeling.open_vocab import get_classification_logits
from ..transformer_predictor import OVSEG_LOGIT_TEMPERATURE
from .clip_model import OpenCLIPTextEncoder, build_ovseg_clip_model, check_clip_state, ovseg_clip_arch
from .mask_prompt import check_plain_vit, encode_image_with_mask_prompts, mask_prompt_depth
from .regions import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, ClipRegions, mask_fill_color, prepare_clip_regions

__all__ = ["OVSegClipAdapter"]


class OVSegClipAdapter(FastPathModule, nn.Module):
    """Classifies OVSeg's mask proposals with the (mask-prompted) CLIP image encoder."""

    @configurable
    def __init__(
        self,
        *,
        clip_model: nn.Module,
        tokenizer_name: str,
        mask_thr: float,
        mask_fill: str = "mean",
        mask_expand_ratio: float = 1.0,
        mask_matting: bool = False,
        mask_prompt_fwd: bool = False,
        allow_zero_mask_prompts: bool = False,
        fast_inference: bool = True,
    ):
        """
        Args:
            clip_model: open_clip CLIP with a plain ViT visual tower (frozen here); with
                ``mask_prompt_fwd`` its ``visual`` must carry ``mask_embedding``.
            tokenizer_name: open_clip model name of its tokenizer.
            mask_thr: binarisation threshold of the mask probabilities (``MASK_THR``).
            mask_fill: "mean" or "zero" background (``MASK_FILL``).
            mask_expand_ratio: crop box scale (``MASK_EXPAND_RATIO``).
            mask_matting: blend crops with the soft masks (``MASK_MATTING``).
            mask_prompt_fwd: replace background patch tokens by mask prompts (``MASK_PROMPT_FWD``).
            allow_zero_mask_prompts: with ``mask_prompt_fwd``, accept CLIP weights without
                ``visual.mask_embedding`` (zero prompts, docs/models/ovseg.md quirk 18; ``ALLOW_ZERO_MASK_PROMPTS``).
            fast_inference: the exact fast path of the module docstring (``MODEL.FAST_INFERENCE``);
                an attribute, so it can be switched on a built model.
        """
        super().__init__()
        check_plain_vit(clip_model.visual)
        if mask_prompt_fwd and mask_prompt_depth(clip_model.visual) == 0:
            raise ValueError(
                "MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD is True but the CLIP model has no mask prompts; set "
                "MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH >= 1 (3 released) or MASK_PROMPT_FWD False."
            )
        self.clip_model = clip_model.requires_grad_(False)
        embed_dim = clip_model.text_projection.shape[-1]
        self.non_object_embedding = nn.Parameter(torch.empty(1, embed_dim))
        nn.init.normal_(self.non_object_embedding, std=clip_model.transformer.width**-0.5)
        self.register_buffer("pixel_mean", torch.tensor([255.0 * c for c in CLIP_PIXEL_MEAN]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([255.0 * c for c in CLIP_PIXEL_STD]).view(1, 3, 1, 1))
        self.text_encoder = OpenCLIPTextEncoder(clip_model, tokenizer_name)
        self.mask_thr = mask_thr
        self.mask_fill = mask_fill_color(mask_fill)
        self.mask_expand_ratio = mask_expand_ratio
        self.mask_matting = mask_matting
        self.mask_prompt_fwd = mask_prompt_fwd
        self.allow_zero_mask_prompts = allow_zero_mask_prompts
        self.input_size = clip_model.visual.image_size[0]
        self.fast_inference = bool(fast_inference)

    @classmethod
    def from_config(cls, cfg, *, load_clip_weights: bool = True) -> dict:
        """Builds the CLIP model of ``MODEL.CLIP_ADAPTER.{CLIP_MODEL_NAME, MASK_PROMPT_DEPTH,
        CLIP_WEIGHTS}`` (``load_clip_weights`` False: random weights, no file read) and reads
        the other ``MODEL.CLIP_ADAPTER`` keys and ``MODEL.FAST_INFERENCE``."""
        ca = cfg.MODEL.CLIP_ADAPTER
        if not ca.REGION_RESIZED:
            raise ValueError("Only resized CLIP crops are supported; set MODEL.CLIP_ADAPTER.REGION_RESIZED True.")
        clip_model = build_ovseg_clip_model(
            ca.CLIP_MODEL_NAME,
            ca.MASK_PROMPT_DEPTH,
            ca.CLIP_WEIGHTS,
            load_weights=load_clip_weights,
            mask_prompts_required=ca.MASK_PROMPT_FWD and not ca.ALLOW_ZERO_MASK_PROMPTS,
        )
        return {
            "clip_model": clip_model,
            "tokenizer_name": ovseg_clip_arch(ca.CLIP_MODEL_NAME),
            "mask_thr": ca.MASK_THR,
            "mask_fill": ca.MASK_FILL,
            "mask_expand_ratio": ca.MASK_EXPAND_RATIO,
            "mask_matting": ca.MASK_MATTING,
            "mask_prompt_fwd": ca.MASK_PROMPT_FWD,
            "allow_zero_mask_prompts": ca.ALLOW_ZERO_MASK_PROMPTS,
            "fast_inference": cfg.MODEL.FAST_INFERENCE,
        }

    def check_state(self, state, source: str, prefix: str) -> None:
        """Refuse CLIP weights under ``prefix`` in ``state`` that do not fit this adapter's CLIP
        (width, mask-prompt depth, mask prompts required by ``mask_prompt_fwd``), with one
        sentence; see :func:`~frozenseg.models.ovseg.clip_adapter.clip_model.check_clip_state`."""
        check_clip_state(
            state,
            self.clip_model,
            source,
            prefix=prefix,
            mask_prompts_required=self.mask_prompt_fwd and not self.allow_zero_mask_prompts,
        )

    def train(self, mode: bool = True) -> "OVSegClipAdapter":
        """The frozen CLIP always stays in eval mode."""
        super().train(mode)
        self.clip_model.eval()
        return self

    def with_non_object(self, text_classifier: torch.Tensor) -> torch.Tensor:
        """(K', D) normalised text rows -> (K' + 1, D) with the normalised no-object row last."""
        void = F.normalize(self.non_object_embedding, dim=-1).to(text_classifier)
        return torch.cat([text_classifier, void], dim=0)

    def encode_regions(self, regions: torch.Tensor, region_masks: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) CLIP-normalised crops and (N, 1, S, S) masks -> (N, D) normalised image
        features (mask prompts with ``mask_prompt_fwd``, else the plain CLIP forward; the fast
        forward with ``fast_inference`` when gradients are off)."""
        masks = region_masks if self.mask_prompt_fwd else None
        features = encode_image_with_mask_prompts(self.clip_model.visual, regions, masks, fast=self.fast_inference)
        return F.normalize(features, dim=-1)

    def crop_regions(self, image: torch.Tensor, mask_probs: torch.Tensor) -> ClipRegions:
        """The CLIP inputs of the valid proposals with this adapter's settings (docs/models/ovseg.md §2.8; see
        :func:`~frozenseg.models.ovseg.clip_adapter.regions.prepare_clip_regions`).

        Args:
            image: (3, H, W) resized, unpadded input image, RGB 0..255.
            mask_probs: (Q, H, W) sigmoid mask probabilities cropped to (H, W).
        """
        return self._crop(image, mask_probs, unnormalised=True)

    def _crop(self, image: torch.Tensor, mask_probs: torch.Tensor, unnormalised: bool) -> ClipRegions:
        """:meth:`crop_regions`; ``unnormalised`` False skips the 0..255 crops on the fast path
        (the forward encodes the normalised ones only)."""
        return prepare_clip_regions(
            image,
            mask_probs,
            mask_thr=self.mask_thr,
            fill=self.mask_fill,
            expand_ratio=self.mask_expand_ratio,
            mask_matting=self.mask_matting,
            size=self.input_size,
            pixel_mean=self.pixel_mean.flatten().tolist(),
            pixel_std=self.pixel_std.flatten().tolist(),
            fast=self.fast_inference,
            unnormalised=unnormalised,
        )

    def classify(self, features: torch.Tensor, text_classifier: torch.Tensor,
                 num_templates: Sequence[int] | None = None) -> torch.Tensor:
        """CLIP logits (N, K + 1) = 100 * cos(image feature, row) of the crops' (N, D) features
        against the (K' + 1, D) rows (no-object last; ``num_templates`` rows per class, None =
        one row per class); (0, K + 1) when there is no crop."""
        return get_classification_logits(features, text_classifier, OVSEG_LOGIT_TEMPERATURE, num_templates)

    @torch.no_grad()
    def forward(
        self,
        image: torch.Tensor,
        mask_probs: torch.Tensor,
        text_classifier: torch.Tensor | None = None,
        num_templates: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP logits of the valid proposals of one image, or their features.

        Args:
            image: (3, H, W) resized, unpadded input image, RGB 0..255.
            mask_probs: (Q, H, W) sigmoid mask probabilities cropped to (H, W).
            text_classifier: (K' + 1, D) normalised rows, no-object last (:meth:`with_non_object`);
                None: return the crops' features instead of logits (the vocabulary-free part,
                classified later with :meth:`classify`).
            num_templates: rows per class; None = one row per class.
        Returns:
            clip_logits (N, K + 1) = 100 * cos(image feature, row), or the (N, D) normalised
            features without a text classifier, and valid (Q,) bool; N = 0 when no mask has a
            pixel above ``mask_thr`` (CLIP is then not run).
        """
        crops = self._crop(image, mask_probs, unnormalised=False)
        if crops.regions.shape[0] == 0:
            features = image.new_zeros((0, self.non_object_embedding.shape[-1]), dtype=torch.float32)
        else:
            features = self.encode_regions(crops.regions, crops.region_masks)
        if text_classifier is None:
            return features, crops.valid
        return self.classify(features, text_classifier, num_templates), crops.valid
