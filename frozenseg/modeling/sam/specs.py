"""The SAM architectures, as data: one :class:`SAMSpec` per ``MODEL.SAM_NAME`` (docs/models/frozenseg.md §3).

Everything that differs between the SAMs lives in :data:`SAM_SPECS`: the image encoder's
hyper-parameters, the width of its neck (the channels of the image embedding), the prompt
encoder / mask decoder widths, the native input side and the official checkpoint file. The
builders (:mod:`.build`), the checkpoint loader (:mod:`.checkpoint`), the model's frozen encoder
(:mod:`.image_encoder`) and the automatic mask generator (:mod:`.automatic`) read this table and
branch on nothing else.

Provenance: ``vit_b`` / ``vit_l`` / ``vit_h`` mirror ``segment_anything/build_sam.py`` (Kirillov
et al., 2023, "Segment Anything"); ``vit_t`` is MobileSAM (Zhang et al., 2023), whose TinyViT is
built by the ``mobile_sam`` package. ``tiny`` is a small random SAM for CPU tests and demos
(``configs/tiny``); no weights are released for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "ViTEncoderSpec",
    "MaskDecoderSpec",
    "SAMSpec",
    "SAM_SPECS",
    "VALID_SAM_NAMES",
    "SAMSettings",
    "CONFIG_SETTINGS",
    "sam_spec",
]

# SAM's pixel normalisation, RGB 0..255 (segment_anything/build_sam.py).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ViTEncoderSpec:
    """Hyper-parameters of segment-anything's ``ImageEncoderViT`` (besides the neck width).

    Fixed for every SAM ViT: LayerNorm eps 1e-6, qkv bias, relative positions.
    """

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    patch_size: int = 16
    mlp_ratio: float = 4.0
    window_size: int = 14


@dataclass(frozen=True)
class MaskDecoderSpec:
    """Hyper-parameters of SAM's ``PromptEncoder`` and ``MaskDecoder`` (a ``TwoWayTransformer``
    of width ``SAMSpec.out_chans``); the defaults are segment-anything's released values."""

    mask_in_chans: int = 16
    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class SAMSpec:
    """One SAM architecture.

    Attributes:
        out_chans: width of the image encoder's neck = channels C of the image embedding
            (B, C, S/16, S/16) = width of the prompt encoder and mask decoder.
        vit: the ``ImageEncoderViT`` hyper-parameters; None for MobileSAM's TinyViT, which the
            ``mobile_sam`` package builds (its input side is fixed to ``image_size``).
        decoder: the prompt encoder / mask decoder (used by the automatic mask generator only).
        image_size: native input side S in pixels (the side its position embedding and its
            checkpoint were made for).
        checkpoint_file: name of the official checkpoint file ("" when none is released).
        checkpoint_url: where the official file is published.
    """

    out_chans: int
    vit: ViTEncoderSpec | None
    decoder: MaskDecoderSpec = field(default_factory=MaskDecoderSpec)
    image_size: int = 1024
    checkpoint_file: str = ""
    checkpoint_url: str = ""

    @property
    def official_checkpoint(self) -> str:
        """The official checkpoint file and its URL, for error messages."""
        if not self.checkpoint_file:
            return "none (no weights are released for this SAM; it keeps random weights)"
        return f"{self.checkpoint_file} ({self.checkpoint_url})"


def _released_vit(vit: ViTEncoderSpec, checkpoint_file: str) -> SAMSpec:
    """A segment-anything release: neck 256, input 1024, default decoder, published file."""
    url = "https://dl.fbaipublicfiles.com/segment_anything/" + checkpoint_file
    return SAMSpec(out_chans=256, vit=vit, checkpoint_file=checkpoint_file, checkpoint_url=url)


SAM_SPECS: dict[str, SAMSpec] = {
    "vit_b": _released_vit(ViTEncoderSpec(768, 12, 12, (2, 5, 8, 11)), "sam_vit_b_01ec64.pth"),
    "vit_l": _released_vit(ViTEncoderSpec(1024, 24, 16, (5, 11, 17, 23)), "sam_vit_l_0b3195.pth"),
    "vit_h": _released_vit(ViTEncoderSpec(1280, 32, 16, (7, 15, 23, 31)), "sam_vit_h_4b8939.pth"),
    "vit_t": SAMSpec(
        out_chans=256,
        vit=None,
        checkpoint_file="mobile_sam.pt",
        checkpoint_url="MobileSAM, https://github.com/ChaoningZhang/MobileSAM, weights/mobile_sam.pt",
    ),
    "tiny": SAMSpec(
        out_chans=64,
        vit=ViTEncoderSpec(32, 2, 2, (1,)),
        decoder=MaskDecoderSpec(
            mask_in_chans=8, transformer_mlp_dim=64, transformer_num_heads=2, iou_head_hidden_dim=32
        ),
        image_size=256,
    ),
}
VALID_SAM_NAMES = tuple(SAM_SPECS)


@dataclass(frozen=True)
class SAMSettings:
    """Names of the settings that choose a SAM (config keys or command-line flags); error
    messages name them as the thing to fix."""

    name: str = "MODEL.SAM_NAME"
    checkpoint: str = "MODEL.SAM_CHECKPOINT"
    image_size: str = "MODEL.SAM_IMAGE_SIZE"


#: The config keys of the segmentation model's SAM.
CONFIG_SETTINGS = SAMSettings()


def sam_spec(name: str, settings: SAMSettings = CONFIG_SETTINGS) -> SAMSpec:
    """The spec of SAM ``name``; an unknown name is one ValueError naming ``settings.name``
    and the valid choices."""
    spec = SAM_SPECS.get(str(name))
    if spec is None:
        raise ValueError(
            f"Unknown SAM {settings.name} = {name!r}; choose one of {', '.join(VALID_SAM_NAMES)}."
        )
    return spec
