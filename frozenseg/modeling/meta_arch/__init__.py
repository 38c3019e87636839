"""Meta-architectures (whole models registered in META_ARCH_REGISTRY): they wire the parts,
turn inputs into losses (training) or outputs (inference) and hold the active vocabulary. Not
here: the parts themselves or post-processing formulas (``modeling.postprocessing``,
``modeling.clip_adapter.ensemble``).
"""

from .frozenseg import FrozenSeg
from .ovseg import OVSeg, OVSegDEMO

__all__ = ["FrozenSeg", "OVSeg", "OVSegDEMO"]
