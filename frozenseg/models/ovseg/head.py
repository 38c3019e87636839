"""OVSeg's segmentation head (``sem_seg_head``): MaskFormer-v1's pixel decoder
(``BasePixelDecoder``) and the open-vocabulary DETR predictor reading the raw backbone feature
``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE`` (docs/models/ovseg.md §2.3-2.6).

Provenance: MaskFormer-v1's ``MaskFormerHead`` (Cheng et al., NeurIPS 2021) as OVSeg (Liang et
al., CVPR 2023) registers it, ``OpenVocabMaskFormerHead``. Independent implementation.
"""

from __future__ import annotations

from ...layers import ShapeSpec
from ...modeling.heads import MULTI_SCALE_PIXEL_DECODER, MaskFormerHead
from ...utils.registry import SEM_SEG_HEADS_REGISTRY
from . import pixel_decoder, transformer_predictor  # noqa: F401  (register the decoders)

__all__ = ["OpenVocabMaskFormerHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class OpenVocabMaskFormerHead(MaskFormerHead):
    """The shared :class:`~frozenseg.modeling.heads.MaskFormerHead` under the released name; the
    released configs set ``TRANSFORMER_IN_FEATURE`` "res5", ``PIXEL_DECODER_NAME``
    "BasePixelDecoder" and (by default) ``TRANSFORMER_DECODER_NAME``
    "OpenVocabTransformerPredictor"."""

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """As the shared head's, refusing ``TRANSFORMER_IN_FEATURE`` "multi_scale_pixel_decoder":
        MaskFormer-v1's pixel decoder gives the mask features only."""
        if cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE == MULTI_SCALE_PIXEL_DECODER:
            raise ValueError(
                f"OpenVocabMaskFormerHead reads a backbone feature; set MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE to "
                f"one of {sorted(input_shape)} (released: 'res5'), not {MULTI_SCALE_PIXEL_DECODER!r}."
            )
        return super().from_config(cfg, input_shape)
