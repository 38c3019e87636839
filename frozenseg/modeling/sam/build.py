"""Build SAM's modules from :data:`~.specs.SAM_SPECS`: segment-anything's own classes (used
unmodified) for the ViTs, ``mobile_sam``'s public builder for MobileSAM (``vit_t``).

:func:`build_image_encoder` is the segmentation model's frozen encoder; :func:`build_sam` and
:func:`load_sam` give the full SAM (image encoder, prompt encoder, mask decoder) that the
automatic mask generator needs. For the ViTs, ``build_sam`` builds what
``segment_anything.sam_model_registry`` builds (same modules, same hyper-parameters; tested).
"""

from __future__ import annotations

import logging
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

from .checkpoint import default_checkpoint_path, load_sam_weights, read_sam_checkpoint
from .specs import (
    CONFIG_SETTINGS,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    VALID_SAM_NAMES,
    SAMSettings,
    SAMSpec,
    sam_spec,
)

__all__ = ["build_vit_image_encoder", "build_image_encoder", "build_sam", "load_sam"]

logger = logging.getLogger(__name__)


def _mobile_sam(settings: SAMSettings):
    """MobileSAM's full ``Sam`` (random weights), built through mobile_sam's public registry."""
    try:
        import mobile_sam
    except ImportError as e:
        raise ImportError(
            f"{settings.name} = 'vit_t' needs MobileSAM, which is not installed. Install it with "
            "`pip install mobilesam-mirror` (it provides the `mobile_sam` module), or choose "
            f"another {settings.name} among {list(n for n in VALID_SAM_NAMES if n != 'vit_t')}."
        ) from e
    return mobile_sam.sam_model_registry["vit_t"](checkpoint=None)


def build_vit_image_encoder(spec: SAMSpec, image_size: int) -> ImageEncoderViT:
    """segment-anything's ``ImageEncoderViT`` of ``spec`` (a ViT spec) for S = ``image_size``.

    The output is (B, spec.out_chans, S / 16, S / 16) for a (B, 3, S, S) input.
    """
    vit = spec.vit
    return ImageEncoderViT(
        depth=vit.depth,
        embed_dim=vit.embed_dim,
        img_size=image_size,
        mlp_ratio=vit.mlp_ratio,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=vit.num_heads,
        patch_size=vit.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=list(vit.global_attn_indexes),
        window_size=vit.window_size,
        out_chans=spec.out_chans,
    )


def build_image_encoder(name: str, image_size: int, settings: SAMSettings = CONFIG_SETTINGS) -> nn.Module:
    """The image encoder of SAM ``name`` (random weights) for (B, 3, S, S) inputs,
    S = ``image_size``: (B, 3, S, S) -> (B, spec.out_chans, S / 16, S / 16)."""
    spec = sam_spec(name, settings)
    if spec.vit is not None:
        return build_vit_image_encoder(spec, image_size)
    if image_size != spec.image_size:
        raise ValueError(
            f"MobileSAM ({settings.name} = {name!r}) has a fixed {spec.image_size}x"
            f"{spec.image_size} input; set {settings.image_size} to {spec.image_size} (got "
            f"{image_size})."
        )
    return _mobile_sam(settings).image_encoder


def build_sam(name: str, settings: SAMSettings = CONFIG_SETTINGS) -> Sam:
    """The full SAM ``name`` (random weights, eval mode) at its native input side."""
    spec = sam_spec(name, settings)
    if spec.vit is None:
        return _mobile_sam(settings).eval()
    side = spec.image_size
    embedding = side // spec.vit.patch_size
    dec = spec.decoder
    sam = Sam(
        image_encoder=build_vit_image_encoder(spec, side),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.out_chans,
            image_embedding_size=(embedding, embedding),
            input_image_size=(side, side),
            mask_in_chans=dec.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=dec.transformer_depth,
                embedding_dim=spec.out_chans,
                mlp_dim=dec.transformer_mlp_dim,
                num_heads=dec.transformer_num_heads,
            ),
            transformer_dim=spec.out_chans,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )
    return sam.eval()


def load_sam(
    name: str,
    checkpoint: str | None = None,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    settings: SAMSettings = CONFIG_SETTINGS,
) -> Sam:
    """The full SAM ``name`` with the weights of ``checkpoint``, on ``device``, in eval mode.

    ``checkpoint`` None or "" means ``pretrained_checkpoint/<official file>``; a SAM without
    released weights (``tiny``) then keeps random weights, drawn deterministically from ``seed``
    (the global RNG is left untouched).

    Raises:
        FileNotFoundError: the checkpoint file is missing (names the official file).
        SAMCheckpointError: the file holds another SAM or not the full SAM.
    """
    sam_spec(name, settings)  # an unknown name fails here, naming settings.name
    checkpoint = checkpoint or default_checkpoint_path(name)
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        sam = build_sam(name, settings)
    finally:
        torch.random.set_rng_state(rng_state)
    if checkpoint:
        state_dict, resolved = read_sam_checkpoint(checkpoint, name, settings)
        load_sam_weights(
            sam,
            state_dict,
            name=name,
            expected=f"the full SAM {name} (image encoder, prompt encoder and mask decoder) is needed",
            source=resolved,
            settings=settings,
        )
        logger.info("Loaded SAM %s from %s", name, resolved)
    else:
        logger.warning("SAM %r has random weights (seed %d): it proposes arbitrary masks.", name, seed)
    return sam.to(device).eval()
