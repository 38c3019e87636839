"""FrozenSeg's segmentation head (``sem_seg_head``): its two-branch pixel decoder, then the
masked-attention transformer decoder with the Feature and Query Injectors (docs/models/frozenseg.md
§4-§5), in the shared :class:`~frozenseg.modeling.heads.MaskFormerHead`."""

from __future__ import annotations

from ...modeling.heads import MaskFormerHead
from ...utils.registry import SEM_SEG_HEADS_REGISTRY
from . import pixel_decoder, transformer_decoder  # noqa: F401  (register the decoders)

__all__ = ["FrozenSegHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class FrozenSegHead(MaskFormerHead):
    """The shared head under FrozenSeg's released name: ``MSDeformAttnPixelDecoder`` reads the CLIP
    features and the SAM embedding (feature ``"sam"``), ``MultiScaleMaskedTransformerDecoder``
    attends to its multi-scale maps (``TRANSFORMER_IN_FEATURE`` "multi_scale_pixel_decoder").
    Submodule names (``pixel_decoder``, ``predictor``) are those of the released checkpoints."""
