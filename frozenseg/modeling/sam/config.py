"""The config keys of the frozen SAM image encoder (``add_sam_config``), added by the models
that use it."""

from __future__ import annotations

__all__ = ["add_sam_config"]


def add_sam_config(cfg) -> None:
    """Add ``MODEL.SAM_NAME``, ``MODEL.SAM_CHECKPOINT`` and ``MODEL.SAM_IMAGE_SIZE`` (in place)."""
    # A key of frozenseg.modeling.sam.SAM_SPECS, which fixes the architecture, including the
    # channels of the image embedding (256 for the released SAMs, 64 for tiny).
    cfg.MODEL.SAM_NAME = "vit_b"  # vit_b, vit_l, vit_h (segment-anything), vit_t (MobileSAM), or tiny
    # SAM checkpoint (the official sam_vit_*.pth file); "" keeps random weights (tests, or when
    # MODEL.WEIGHTS holds the SAM weights).
    cfg.MODEL.SAM_CHECKPOINT = "pretrained_checkpoint/sam_vit_b_01ec64.pth"
    cfg.MODEL.SAM_IMAGE_SIZE = 1024  # input side of the SAM encoder (fixed by SAM's position embedding)
