"""Frozen SAM image encoder (spec §3)."""

from .image_encoder import (
    SAM_CHECKPOINT_FILES,
    SAM_ENCODER_SPECS,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    VALID_SAM_NAMES,
    SAMEncoderSpec,
    SAMImageEncoder,
    build_vit_image_encoder,
)

__all__ = [
    "SAMImageEncoder",
    "SAMEncoderSpec",
    "SAM_ENCODER_SPECS",
    "SAM_CHECKPOINT_FILES",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "VALID_SAM_NAMES",
    "build_vit_image_encoder",
]
