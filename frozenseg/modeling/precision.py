"""Reduced-precision forwards of the frozen encoders (MODEL.FROZEN_ENCODERS_DTYPE).

The frozen SAM image encoder and the frozen CLIP visual trunk may run under
``torch.autocast`` with a lower-precision dtype (bfloat16 on CUDA or CPU, float16 on CUDA), in
inference and in training alike: they are never trained, so only their forward's rounding
changes. Their outputs are cast back to float32 before the trainable decoder, which therefore
sees the same dtypes as without the option. It is independent of ``SOLVER.AMP`` (autocast of the
whole training step): with both on, the frozen encoders run under this dtype and the rest under
the training autocast.

What stays float32: CLIP's mask-pooled classification head (a LayerNorm and one projection per
mask, run on the float32 dense map), the text tower (its embeddings are cached on disk) and
everything outside the two encoders. The measured effect on the outputs: docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

from ..utils.errors import ConfigValueError

__all__ = ["FROZEN_ENCODER_DTYPES", "frozen_encoders_dtype", "check_frozen_encoders_dtype", "autocast_call"]

#: Values of MODEL.FROZEN_ENCODERS_DTYPE and their autocast dtype (None: float32, no autocast).
FROZEN_ENCODER_DTYPES: dict[str, torch.dtype | None] = {
    "": None,
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

T = TypeVar("T", torch.Tensor, dict)


def check_frozen_encoders_dtype(dtype: torch.dtype | None, device: torch.device | str) -> None:
    """Raise :class:`ConfigValueError` when the frozen encoders cannot run in ``dtype`` on
    ``device``: float16 off CUDA, bfloat16 on a GPU without it."""
    device = torch.device(device)
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigValueError(
            f"MODEL.FROZEN_ENCODERS_DTYPE float16 needs CUDA but the model runs on {device.type}; "
            "use bfloat16 (or \"\" for float32) on a CPU."
        )
    if dtype is torch.bfloat16 and device.type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigValueError(
            "MODEL.FROZEN_ENCODERS_DTYPE bfloat16 is not supported by this GPU; use float16 (or \"\" for float32)."
        )


def frozen_encoders_dtype(cfg) -> torch.dtype | None:
    """The autocast dtype of MODEL.FROZEN_ENCODERS_DTYPE (None: float32), checked against
    MODEL.DEVICE and MODEL.INT8_CPU (the int8 layers take float32 inputs only)."""
    name = str(cfg.MODEL.FROZEN_ENCODERS_DTYPE).lower()
    if name not in FROZEN_ENCODER_DTYPES:
        raise ConfigValueError(
            f"Unknown MODEL.FROZEN_ENCODERS_DTYPE {cfg.MODEL.FROZEN_ENCODERS_DTYPE!r}; use one of "
            f"{', '.join(repr(k) for k in FROZEN_ENCODER_DTYPES)}."
        )
    dtype = FROZEN_ENCODER_DTYPES[name]
    if dtype is not None and cfg.MODEL.INT8_CPU:
        raise ConfigValueError(
            "MODEL.INT8_CPU and MODEL.FROZEN_ENCODERS_DTYPE both change the frozen encoders' "
            "precision; set MODEL.FROZEN_ENCODERS_DTYPE \"\" to use int8 (or MODEL.INT8_CPU False)."
        )
    if dtype is not None and str(cfg.MODEL.DEVICE) != "meta":
        check_frozen_encoders_dtype(dtype, cfg.MODEL.DEVICE)
    return dtype


def _to_float32(x: T) -> T:
    if isinstance(x, dict):
        return {k: _to_float32(v) for k, v in x.items()}
    return x.float() if x.is_floating_point() else x


def autocast_call(fn: Callable[[torch.Tensor], T], x: torch.Tensor, dtype: torch.dtype | None) -> T:
    """``fn(x)`` under ``torch.autocast(x.device.type, dtype)`` with the floating tensors of its
    output (a tensor or a dict of tensors) cast to float32; ``fn(x)`` as it is when ``dtype`` is
    None (no autocast of its own: an enclosing one, e.g. SOLVER.AMP, still applies)."""
    if dtype is None:
        return fn(x)
    check_frozen_encoders_dtype(dtype, x.device)
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        out = fn(x)
    return _to_float32(out)
