"""The frozen SAM image encoder of FrozenSeg (spec §3).

Only SAM's image encoder is used by the segmentation model. It is segment-anything's own
``ImageEncoderViT`` (or MobileSAM's TinyViT for ``vit_t``) stored as the attribute
``image_encoder``, so that its state-dict keys are segment-anything's names
(``image_encoder.*``; ``sam.image_encoder.*`` once the meta-architecture stores this module as
``model.sam``). The encoder is frozen: no parameter requires gradients, ``train()`` keeps it in
eval mode and ``forward`` runs without gradients.

Provenance: the encoder table mirrors ``segment_anything/build_sam.py`` (Kirillov et al., 2023,
"Segment Anything"); ``vit_t`` is MobileSAM (Zhang et al., 2023). The inference preprocessing
(pad the normalised batch to /32, then resize to 1024x1024 without keeping the aspect ratio) is
the released FrozenSeg behaviour.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.config.config import configurable
from frozenseg.structures.image_list import ImageList

__all__ = [
    "SAMImageEncoder",
    "SAMEncoderSpec",
    "SAM_ENCODER_SPECS",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "SAM_CHECKPOINT_FILES",
    "VALID_SAM_NAMES",
    "build_vit_image_encoder",
]

logger = logging.getLogger(__name__)

# SAM's pixel normalisation, RGB 0..255 (segment_anything/build_sam.py).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
# Padding applied to the normalised batch before the resize to the SAM input size (inference).
SAM_SIZE_DIVISIBILITY = 32


@dataclass(frozen=True)
class SAMEncoderSpec:
    """Hyper-parameters of a segment-anything ``ImageEncoderViT``."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    patch_size: int = 16
    mlp_ratio: float = 4.0
    window_size: int = 14


# Mirrors segment_anything/build_sam.py (img 1024, patch 16, mlp 4, LayerNorm eps 1e-6,
# qkv_bias, relative positions, window 14, neck out_chans 256). "tiny" is a small random
# encoder for tests; it is not a released model.
SAM_ENCODER_SPECS: dict[str, SAMEncoderSpec] = {
    "vit_b": SAMEncoderSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SAMEncoderSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SAMEncoderSpec(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": SAMEncoderSpec(32, 2, 2, (1,)),
}
VALID_SAM_NAMES = tuple(SAM_ENCODER_SPECS) + ("vit_t",)

# Official checkpoint files (named in error messages; nothing is downloaded by this code).
SAM_CHECKPOINT_FILES = {
    "vit_b": "sam_vit_b_01ec64.pth (https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth)",
    "vit_l": "sam_vit_l_0b3195.pth (https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth)",
    "vit_h": "sam_vit_h_4b8939.pth (https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth)",
    "vit_t": "mobile_sam.pt (MobileSAM, https://github.com/ChaoningZhang/MobileSAM, weights/mobile_sam.pt)",
}

# Embedding width of each encoder, used to recognise which SAM a checkpoint holds.
_EMBED_DIM_TO_NAME = {spec.embed_dim: name for name, spec in SAM_ENCODER_SPECS.items()}
_SAM_UNUSED_PREFIXES = ("prompt_encoder.", "mask_decoder.")


def build_vit_image_encoder(name: str, out_chans: int = 256, image_size: int = 1024) -> nn.Module:
    """Build segment-anything's ``ImageEncoderViT`` for ``name`` in ``SAM_ENCODER_SPECS``.

    The output is (B, out_chans, image_size / 16, image_size / 16) for a (B, 3, image_size,
    image_size) input.
    """
    from segment_anything.modeling import ImageEncoderViT

    spec = SAM_ENCODER_SPECS[name]
    return ImageEncoderViT(
        depth=spec.depth,
        embed_dim=spec.embed_dim,
        img_size=image_size,
        mlp_ratio=spec.mlp_ratio,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=spec.num_heads,
        patch_size=spec.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=list(spec.global_attn_indexes),
        window_size=spec.window_size,
        out_chans=out_chans,
    )


def _build_mobile_sam_encoder(out_chans: int, image_size: int) -> nn.Module:
    """MobileSAM's TinyViT image encoder, built through mobile_sam's public builder."""
    try:
        import mobile_sam
    except ImportError as e:
        raise ImportError(
            "MODEL.SAM_NAME = 'vit_t' needs MobileSAM, which is not installed. Install it with "
            "`pip install mobilesam-mirror` (it provides the `mobile_sam` module), or choose "
            f"another MODEL.SAM_NAME among {list(SAM_ENCODER_SPECS)}."
        ) from e
    if out_chans != 256 or image_size != 1024:
        raise ValueError(
            "MobileSAM (vit_t) has a fixed image encoder: out_chans 256 and input 1024x1024; got "
            f"out_chans={out_chans}, image_size={image_size} (MODEL.SAM_IMAGE_SIZE)."
        )
    sam = mobile_sam.sam_model_registry["vit_t"](checkpoint=None)
    return sam.image_encoder


def _unwrap_checkpoint(obj) -> Mapping[str, torch.Tensor]:
    """The state dict inside a loaded file (plain dict, or wrapped under "model"/"state_dict")."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and all(isinstance(k, str) for k in inner):
                if not any(isinstance(v, torch.Tensor) for v in obj.values()):
                    return inner
        return obj
    raise ValueError(f"Expected a state dict in the SAM checkpoint, got {type(obj).__name__}.")


def _identify_sam(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Best guess of which SAM encoder a state dict (``image_encoder.``-relative keys) holds."""
    pos = state_dict.get("pos_embed")
    if pos is not None and pos.dim() == 4:
        return _EMBED_DIM_TO_NAME.get(int(pos.shape[-1]), f"a ViT with embed dim {pos.shape[-1]}")
    if any(k.startswith("layers.") for k in state_dict):
        return "vit_t (MobileSAM TinyViT)"
    return "an unknown encoder"


class SAMImageEncoder(nn.Module):
    """Frozen SAM image encoder: (B, 3, S, S) normalised images -> (B, out_chans, S/16, S/16).

    S = ``image_size`` (MODEL.SAM_IMAGE_SIZE, 1024 for released models, giving a 64x64 map).
    Use ``preprocess`` to turn RGB 0..255 images into the encoder's input.
    """

    @configurable
    def __init__(
        self,
        name: str,
        checkpoint: str = "",
        out_chans: int = 256,
        image_size: int = 1024,
        device: torch.device | str | None = None,
    ):
        """
        Args:
            name: one of ``vit_b``, ``vit_l``, ``vit_h`` (segment-anything), ``vit_t``
                (MobileSAM, needs ``pip install mobilesam-mirror``) or ``tiny`` (tests).
            checkpoint: path of a SAM checkpoint: the official full-SAM file (keys
                ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), or a file whose
                keys carry a ``sam.`` prefix (a FrozenSeg checkpoint), or the encoder's own
                state dict. Only the image encoder is loaded (strictly). "" keeps random weights.
            out_chans: channels of the encoder's neck (256 for the released SAMs).
            image_size: input side S of the encoder.
            device: where to put the encoder (default: where it was built).
        """
        super().__init__()
        name = str(name)
        if name not in VALID_SAM_NAMES:
            raise ValueError(
                f"Unknown SAM encoder MODEL.SAM_NAME={name!r}; valid choices: "
                f"{', '.join(VALID_SAM_NAMES)}."
            )
        if image_size % 16 != 0:
            raise ValueError(f"MODEL.SAM_IMAGE_SIZE must be a multiple of 16, got {image_size}.")
        self.name = name
        self.image_size = int(image_size)
        self.out_chans = int(out_chans)
        if name == "vit_t":
            self.image_encoder = _build_mobile_sam_encoder(self.out_chans, self.image_size)
        else:
            self.image_encoder = build_vit_image_encoder(name, self.out_chans, self.image_size)
        self._warned_training_size = False

        if checkpoint:
            self.load_checkpoint(checkpoint)
        if device is not None:
            self.to(device)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @classmethod
    def from_config(cls, cfg, out_chans: int | None = None) -> dict:
        """Keyword arguments from MODEL.SAM_NAME, MODEL.SAM_CHECKPOINT, MODEL.SAM_IMAGE_SIZE.

        ``out_chans`` defaults to 256, or to MODEL.SEM_SEG_HEAD.MASK_DIM for the ``tiny`` test
        encoder.
        """
        name = cfg.MODEL.SAM_NAME
        if out_chans is None:
            out_chans = cfg.MODEL.SEM_SEG_HEAD.MASK_DIM if name == "tiny" else 256
        return {
            "name": name,
            "checkpoint": cfg.MODEL.SAM_CHECKPOINT,
            "out_chans": out_chans,
            "image_size": cfg.MODEL.SAM_IMAGE_SIZE,
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
        resolved = os.path.abspath(os.path.expandvars(os.path.expanduser(path)))
        if not os.path.isfile(resolved):
            official = SAM_CHECKPOINT_FILES.get(self.name, "none (test encoder)")
            raise FileNotFoundError(
                f"SAM checkpoint not found: MODEL.SAM_CHECKPOINT = {path!r} (looked for "
                f"{resolved}). For MODEL.SAM_NAME = {self.name!r} the official file is "
                f"{official}; put it at that path or point MODEL.SAM_CHECKPOINT to it. Set "
                "MODEL.SAM_CHECKPOINT to \"\" to keep random SAM weights when MODEL.WEIGHTS "
                "contains the SAM weights (sam.image_encoder.*)."
            )
        obj = torch.load(resolved, map_location="cpu", weights_only=True)
        self.load_sam_state_dict(_unwrap_checkpoint(obj), source=resolved)
        logger.info("Loaded SAM %s image encoder from %s", self.name, resolved)

    def load_sam_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Strictly load the image encoder from a full-SAM / ``sam.``-prefixed / encoder dict."""
        src = f" in {source}" if source else ""
        sd = dict(state_dict)
        if any(k.startswith("sam.") for k in sd):
            sd = {k[len("sam.") :]: v for k, v in sd.items() if k.startswith("sam.")}
        if any(k.startswith("image_encoder.") for k in sd):
            dropped = [k for k in sd if not k.startswith("image_encoder.")]
            enc = {k[len("image_encoder.") :]: v for k, v in sd.items() if k.startswith("image_encoder.")}
            if dropped:
                logger.info(
                    "SAM checkpoint%s: using the image_encoder.* weights; %d keys of unused "
                    "parts (prompt_encoder, mask_decoder, ...) are ignored.",
                    src,
                    len(dropped),
                )
        else:
            enc = sd  # the encoder's own state dict
        own = self.image_encoder.state_dict()
        missing = sorted(set(own) - set(enc))
        unexpected = sorted(set(enc) - set(own))
        mismatched = [
            (k, tuple(enc[k].shape), tuple(own[k].shape))
            for k in own
            if k in enc and tuple(enc[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or mismatched:
            held = _identify_sam(enc)
            detail = []
            if mismatched:
                k, got, want = mismatched[0]
                detail.append(
                    f"{len(mismatched)} shape mismatches (e.g. {k}: checkpoint {got} vs model {want})"
                )
            if missing:
                detail.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
            if unexpected:
                detail.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
            raise RuntimeError(
                f"SAM checkpoint{src} does not fit MODEL.SAM_NAME = {self.name!r}: it looks like "
                f"{held}, while the model is {self.name} (out_chans={self.out_chans}, "
                f"image_size={self.image_size}). Check MODEL.SAM_NAME and MODEL.SAM_CHECKPOINT. "
                + "; ".join(detail)
                + "."
            )
        on_meta = any(t.is_meta for t in own.values())
        self.image_encoder.load_state_dict(enc, strict=True, assign=on_meta)

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
            training: training path (spec §3): the LSJ crops are already S x S and are stacked
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

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images (from ``preprocess``) -> (B, out_chans, S/16, S/16)."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"SAM image encoder expects (B, 3, {self.image_size}, {self.image_size}) inputs "
                f"(use preprocess()); got {tuple(images.shape)}."
            )
        return self.image_encoder(images)
