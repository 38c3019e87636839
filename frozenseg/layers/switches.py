"""Switches of shared modules that a model sets after it is built: the exact fast inference path
(``MODEL.FAST_INFERENCE``), and the precision and int8 layers of the frozen encoders
(``MODEL.FROZEN_ENCODERS_DTYPE``, ``MODEL.INT8_CPU``). The model contract
(:class:`frozenseg.modeling.contract.SegmentationModel`) walks its modules for these mixins."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FastPathModule", "FrozenEncoderModule"]


class FastPathModule:
    """Mixin of a module with an exact fast inference path (``MODEL.FAST_INFERENCE``): its forward
    reads ``fast_inference`` at every call; the fast path equals the reference arithmetic up to
    float rounding. :meth:`SegmentationModel.set_fast_inference` switches every such module."""

    fast_inference: bool = True


class FrozenEncoderModule:
    """Mixin of a frozen (never trained) encoder: it runs its forward under autocast with
    ``compute_dtype`` (None: float32; ``MODEL.FROZEN_ENCODERS_DTYPE``) and returns float32, and it
    names the submodules whose ``nn.Linear`` layers may be quantised to int8
    (``MODEL.INT8_CPU``)."""

    compute_dtype: torch.dtype | None = None

    def int8_modules(self) -> dict[str, nn.Module]:
        """``{name relative to this module: submodule}`` whose linear layers may be quantised
        (default none)."""
        return {}
