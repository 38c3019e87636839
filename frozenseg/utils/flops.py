"""FLOP counting with fvcore's jit analysis (the engine of ``FlopCountAnalysis``), over matrix
products, convolutions, einsums and fused attention: 2 FLOP per multiply-add; element-wise
operations, norms, softmax and sampling are not counted."""

from __future__ import annotations

import torch
from fvcore.nn import jit_handles
from fvcore.nn.jit_analysis import JitModelAnalysis
from torch import nn

__all__ = ["fvcore_gflop"]


def _sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """fvcore handle of ``aten::scaled_dot_product_attention``: multiply-adds of ``q kᵀ`` and of
    the weighted sum of ``v`` (q (..., L, E), k (..., S, E), v (..., S, Ev))."""
    q, k, v = (jit_handles.get_shape(t) for t in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


#: The operators fvcore counts here (multiply-adds); every other operator is skipped.
_FVCORE_HANDLES = {
    "aten::addmm": jit_handles.addmm_flop_jit,
    "aten::bmm": jit_handles.bmm_flop_jit,
    "aten::_convolution": jit_handles.conv_flop_jit,
    "aten::einsum": jit_handles.einsum_flop_jit,
    "aten::matmul": jit_handles.matmul_flop_jit,
    "aten::mm": jit_handles.matmul_flop_jit,
    "aten::linear": jit_handles.linear_flop_jit,
    "aten::scaled_dot_product_attention": _sdpa_flop_jit,
}


class _Bound(nn.Module):
    """``module(*args, **kwargs)`` as a module without inputs (fvcore traces tensors only; the
    captured arguments become constants of the trace)."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict):
        super().__init__()
        self.module = module
        self.args, self.kwargs = args, kwargs

    def forward(self):
        return self.module(*self.args, **self.kwargs)


def fvcore_gflop(module: nn.Module, args: tuple, kwargs: dict | None = None) -> float:
    """GFLOP (2 per multiply-add) of ``module(*args, **kwargs)``, counted by fvcore's jit
    analysis (the engine of ``FlopCountAnalysis``) over matrix products, convolutions, einsums
    and fused attention."""
    analysis = JitModelAnalysis(_Bound(module, tuple(args), dict(kwargs or {})), ())
    analysis.set_op_handle(**_FVCORE_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        return 2.0 * analysis.total() / 1e9
