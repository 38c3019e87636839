"""Frozen SAM (docs/models/frozenseg.md §3): the architectures as data (:mod:`.specs`), their builders
(:mod:`.build`), checkpoint files (:mod:`.checkpoint`), the segmentation model's frozen image
encoder (:mod:`.image_encoder`) with its exact fast ViT forward (:mod:`.fast_vit`), its config
keys (:mod:`.config`) and FLOP count (:mod:`.flops`), and SAM as a source of automatic mask
proposals (:mod:`.automatic`, imported on its own)."""

from .build import build_image_encoder, build_sam, build_vit_image_encoder, load_sam
from .checkpoint import SAMCheckpointError, default_checkpoint_path, read_sam_checkpoint
from .config import add_sam_config
from .flops import sam_encoder_gflop, vit_encoder_gflop
from .image_encoder import SAMImageEncoder
from .specs import (
    CONFIG_SETTINGS,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SAM_SPECS,
    VALID_SAM_NAMES,
    MaskDecoderSpec,
    SAMSettings,
    SAMSpec,
    ViTEncoderSpec,
    sam_spec,
)

__all__ = [
    "add_sam_config",
    "sam_encoder_gflop",
    "vit_encoder_gflop",
    "SAMImageEncoder",
    "SAMSpec",
    "ViTEncoderSpec",
    "MaskDecoderSpec",
    "SAMSettings",
    "CONFIG_SETTINGS",
    "SAM_SPECS",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "VALID_SAM_NAMES",
    "SAMCheckpointError",
    "sam_spec",
    "build_vit_image_encoder",
    "build_image_encoder",
    "build_sam",
    "load_sam",
    "default_checkpoint_path",
    "read_sam_checkpoint",
]
