"""FrozenSeg (Chen et al., 2024): a frozen CLIP backbone and a frozen SAM image encoder feeding a
light, trainable Mask2Former-style decoder with SAM feature and query injection, and a proposal
ensemble with cached SAM "everything" masks. What the release does and what this package
reproduces: ``docs/models/frozenseg.md``.

Modules: :mod:`.config` (``add_frozenseg_config``), :mod:`.meta_arch` (``FrozenSeg``),
:mod:`.head` (pixel decoder + transformer decoder), :mod:`.pixel_decoder` (multi-scale deformable
encoder + FPN with its SAM branch), :mod:`.transformer_decoder` (masked attention with the
Feature and Query Injectors), :mod:`.criterion` (the point-sampled Mask2Former loss).
Importing the package registers its components.
"""

from .config import add_frozenseg_config
from .criterion import build_criterion
from .head import FrozenSegHead
from .meta_arch import FrozenSeg
from .pixel_decoder import (
    FrozenSegPixelDecoder,
    MSDeformAttnTransformerEncoder,
    MSDeformAttnTransformerEncoderLayer,
    MSDeformAttnTransformerEncoderOnly,
)
from .transformer_decoder import (
    CrossAttentionLayer,
    FFNLayer,
    FrozenSegTransformerDecoder,
    SelfAttentionLayer,
    unblock_fully_masked_rows,
)

__all__ = [
    "add_frozenseg_config",
    "build_criterion",
    "FrozenSeg",
    "FrozenSegHead",
    "FrozenSegPixelDecoder",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderLayer",
    "MSDeformAttnTransformerEncoderOnly",
    "CrossAttentionLayer",
    "FFNLayer",
    "FrozenSegTransformerDecoder",
    "SelfAttentionLayer",
    "unblock_fully_masked_rows",
]
