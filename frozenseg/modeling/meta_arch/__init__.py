"""Meta-architectures (whole models registered in META_ARCH_REGISTRY): they wire the parts,
turn inputs into losses (training) or outputs (inference) and hold the active vocabulary. Not
here: the parts themselves or post-processing formulas (``modeling.postprocessing``).
"""

from .frozenseg import FrozenSeg

__all__ = ["FrozenSeg"]
