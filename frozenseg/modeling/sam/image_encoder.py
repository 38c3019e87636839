"""The frozen SAM image encoder of FrozenSeg (docs/models/frozenseg.md §3).

Only SAM's image encoder is used by the segmentation model. It is segment-anything's own
``ImageEncoderViT`` (or MobileSAM's TinyViT for ``vit_t``) stored as the attribute
``image_encoder``, so that its state-dict keys are segment-anything's names
(``image_encoder.*``; ``sam.image_encoder.*`` once the meta-architecture stores this module as
``model.sam``). The encoder is frozen: no parameter requires gradients, ``train()`` keeps it in
eval mode and ``forward`` runs without gradients. Its architecture, including the output width,
is the entry of :data:`~.specs.SAM_SPECS` named by MODEL.SAM_NAME.

Fast path (MODEL.FAST_INFERENCE, on by default): a segment-anything ViT runs through
:func:`~.fast_vit.fast_vit_forward`, the project's own forward over the same parameters (fused
attention with the relative-position bias, windowing done once); it equals the upstream forward
up to float rounding. Off, or for MobileSAM, ``forward`` is ``image_encoder(images)`` as is.

Provenance: the inference preprocessing (pad the normalised batch to /32, then resize to
1024x1024 without keeping the aspect ratio) is the released FrozenSeg behaviour.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.config.config import configurable
from frozenseg.layers.switches import FastPathModule, FrozenEncoderModule
from frozenseg.structures.image_list import ImageList

from ..precision import autocast_call, frozen_encoders_dtype
from .build import build_image_encoder
from .checkpoint import load_sam_weights, read_sam_checkpoint
from .fast_vit import fast_vit_forward, supports_fast_path
from .specs import SAM_PIXEL_MEAN, SAM_PIXEL_STD, sam_spec

__all__ = ["SAMImageEncoder"]

logger = logging.getLogger(__name__)

# Padding applied to the normalised batch before the resize to the SAM input size (inference).
SAM_SIZE_DIVISIBILITY = 32
# Parts of a full SAM that the segmentation model does not use.
_SAM_UNUSED_PREFIXES = ("prompt_encoder.", "mask_decoder.")


class SAMImageEncoder(FastPathModule, FrozenEncoderModule, nn.Module):
    """Frozen SAM image encoder: (B, 3, S, S) normalised images -> (B, out_chans, S/16, S/16).

    S = ``image_size`` (MODEL.SAM_IMAGE_SIZE, 1024 for released models, giving a 64x64 map).
    Use ``preprocess`` to turn RGB 0..255 images into the encoder's input.
    """

    @configurable
    def __init__(
        self,
        name: str,
        checkpoint: str = "",
        image_size: int = 1024,
        device: torch.device | str | None = None,
        fast_inference: bool = True,
        compute_dtype: torch.dtype | None = None,
    ):
        """
        Args:
            name: a key of ``SAM_SPECS``: ``vit_b``, ``vit_l``, ``vit_h`` (segment-anything),
                ``vit_t`` (MobileSAM, needs ``pip install mobilesam-mirror``) or ``tiny`` (a
                small random SAM). Its spec fixes the architecture and ``out_chans``.
            checkpoint: path of a SAM checkpoint: the official full-SAM file (keys
                ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), or a file whose
                keys carry a ``sam.`` prefix (a FrozenSeg checkpoint), or the encoder's own
                state dict. Only the image encoder is loaded (strictly). "" keeps random weights.
            image_size: input side S of the encoder, pixels (a multiple of 16).
            device: where to put the encoder (default: where it was built).
            fast_inference: run segment-anything ViTs through the exact fast forward
                (:mod:`.fast_vit`); False runs ``ImageEncoderViT.forward`` itself. An
                attribute, so it can be switched on a built model.
            compute_dtype: autocast dtype of the encoder's forward (output cast back to
                float32), None for float32 (MODEL.FROZEN_ENCODERS_DTYPE, see
                :mod:`frozenseg.modeling.precision`). An attribute too.
        """
        super().__init__()
        name = str(name)
        spec = sam_spec(name)
        if image_size % 16 != 0:
            raise ValueError(f"MODEL.SAM_IMAGE_SIZE must be a multiple of 16, got {image_size}.")
        self.name = name
        self.image_size = int(image_size)
        self.out_chans = spec.out_chans
        self.image_encoder = build_image_encoder(name, self.image_size)
        self.fast_inference = bool(fast_inference)
        self.compute_dtype = compute_dtype
        self._warned_training_size = False

        if checkpoint:
            self.load_checkpoint(checkpoint)
        if device is not None:
            self.to(device)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @classmethod
    def from_config(cls, cfg, load_checkpoint: bool = True) -> dict:
        """Keyword arguments from MODEL.SAM_NAME, MODEL.SAM_CHECKPOINT (ignored when
        ``load_checkpoint`` is False: random weights, e.g. before loading MODEL.WEIGHTS) and
        MODEL.SAM_IMAGE_SIZE; the fast path from MODEL.FAST_INFERENCE, the dtype from
        MODEL.FROZEN_ENCODERS_DTYPE."""
        return {
            "name": cfg.MODEL.SAM_NAME,
            "checkpoint": cfg.MODEL.SAM_CHECKPOINT if load_checkpoint else "",
            "image_size": cfg.MODEL.SAM_IMAGE_SIZE,
            "fast_inference": cfg.MODEL.FAST_INFERENCE,
            "compute_dtype": frozen_encoders_dtype(cfg),
        }

    # ------------------------------------------------------------------------------------------
    # Frozen behaviour
    # ------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "SAMImageEncoder":
        """Always stays in eval mode (the encoder is frozen)."""
        return super().train(False)

    # ------------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------------
    def load_checkpoint(self, path: str) -> None:
        """Load the image-encoder weights from a SAM checkpoint file (see ``__init__``)."""
        state_dict, resolved = read_sam_checkpoint(
            path,
            self.name,
            hint=' Set MODEL.SAM_CHECKPOINT to "" to keep random SAM weights when MODEL.WEIGHTS '
            "contains the SAM weights (sam.image_encoder.*).",
        )
        self.load_sam_state_dict(state_dict, source=resolved)
        logger.info("Loaded SAM %s image encoder from %s", self.name, resolved)

    def load_sam_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Strictly load the image encoder from a full-SAM / ``sam.``-prefixed / encoder dict."""
        load_sam_weights(
            self.image_encoder,
            state_dict,
            name=self.name,
            expected=f"the model is {self.name} (out_chans={self.out_chans}, image_size={self.image_size})",
            part="image_encoder.",
            source=source,
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Released FrozenSeg checkpoints carry the full SAM: accept them and drop the parts the
        # segmentation model does not use (prompt encoder, mask decoder).
        unused = [k for k in state_dict if k.startswith(tuple(prefix + p for p in _SAM_UNUSED_PREFIXES))]
        if unused:
            for k in unused:
                state_dict.pop(k)
            logger.info(
                "Ignoring %d unused SAM keys (%sprompt_encoder.*, %smask_decoder.*): only the "
                "SAM image encoder is part of the model.",
                len(unused),
                prefix,
                prefix,
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------------------------------
    # Preprocessing and forward
    # ------------------------------------------------------------------------------------------
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) RGB 0..255 -> float32 normalised with SAM's mean/std."""
        image = image.float()
        mean = torch.tensor(SAM_PIXEL_MEAN, device=image.device).view(3, 1, 1)
        std = torch.tensor(SAM_PIXEL_STD, device=image.device).view(3, 1, 1)
        return (image - mean) / std

    def preprocess(
        self, images: torch.Tensor | Sequence[torch.Tensor], training: bool
    ) -> torch.Tensor:
        """RGB 0..255 images -> (B, 3, S, S) normalised encoder input (S = image_size).

        Args:
            images: a (B, 3, H, W) tensor or a list of (3, H_i, W_i) tensors, float RGB 0..255.
                For the release behaviour at inference pass the *unpadded* images (a list) or a
                batch of equally sized images: padding happens after normalisation, with zeros.
            training: training path (docs/models/frozenseg.md §3): the LSJ crops are already S x S and are stacked
                as they are. If they are not all S x S, the inference path is used instead and a
                warning is logged once.
        Inference path (release behaviour): normalise, pad the batch at the bottom/right with
        zeros to a multiple of 32, then resize bilinearly (align_corners=False) to exactly
        S x S (the aspect ratio is not kept).
        """
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"Expected images (B, 3, H, W), got {tuple(images.shape)}.")
            normed = self.normalize(images)
            tensors = list(normed)
        else:
            if len(images) == 0:
                raise ValueError("SAMImageEncoder.preprocess needs at least one image.")
            tensors = [self.normalize(x) for x in images]
            normed = None
        s = self.image_size
        if training:
            if all(tuple(t.shape[-2:]) == (s, s) for t in tensors):
                return normed if normed is not None else torch.stack(tensors)
            if not self._warned_training_size:
                logger.warning(
                    "SAM preprocessing in training expects %dx%d images (LSJ crops, "
                    "INPUT.IMAGE_SIZE = MODEL.SAM_IMAGE_SIZE); got sizes %s. Falling back to the "
                    "inference path (pad to /32, resize to %dx%d).",
                    s,
                    s,
                    sorted({tuple(t.shape[-2:]) for t in tensors}),
                    s,
                    s,
                )
                self._warned_training_size = True
        padded = ImageList.from_tensors(tensors, SAM_SIZE_DIVISIBILITY, pad_value=0.0).tensor
        if tuple(padded.shape[-2:]) == (s, s):
            return padded
        return F.interpolate(padded, size=(s, s), mode="bilinear", align_corners=False)

    def int8_modules(self) -> dict[str, nn.Module]:
        """The ViT (or MobileSAM) image encoder: every linear layer of SAM is frozen."""
        return {"image_encoder": self.image_encoder}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images (from ``preprocess``) -> (B, out_chans, S/16, S/16)
        float32 (computed under autocast when ``compute_dtype`` is set)."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"SAM image encoder expects (B, 3, {self.image_size}, {self.image_size}) inputs "
                f"(use preprocess()); got {tuple(images.shape)}."
            )
        if self.fast_inference and supports_fast_path(self.image_encoder):
            return autocast_call(partial(fast_vit_forward, self.image_encoder), images, self.compute_dtype)
        return autocast_call(self.image_encoder, images, self.compute_dtype)
