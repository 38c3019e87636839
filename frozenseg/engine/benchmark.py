"""Inference benchmark (issue 14): the machine's matrix-multiply rate, per-stage seconds, FLOPs
and efficiency, and the same model with its fast inference paths off (the upstream forward of
the frozen SAM encoder, the release's deformable-attention arithmetic).

Units. Seconds are wall time per image (median over the timed iterations). GFLOP counts the
multiply-adds of matrix products, convolutions, einsums and fused attention, 2 FLOP each;
element-wise operations, norms, softmax and sampling are not counted. A stage's FLOPs are
counted once per configuration, on the inputs of its first call: by formula for SAM's ViT
(:func:`sam_vit_gflop`, the work of the fast path), with fvcore's ``FlopCountAnalysis``
(:func:`fvcore_gflop`) for the other stages. Efficiency = stage GFLOP / stage seconds / the
measured matrix-multiply rate (:func:`matmul_gflops`, fp32 2048³ products), so a stage made of
large matrix products reaches about 1.

Stages come from :data:`STAGES`, one table per meta-architecture: each row names the model
attribute whose forward is timed (forward hooks) and how its FLOPs are counted. "postprocess"
is the rest of the forward pass (everything outside the listed modules).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from fvcore.nn import jit_handles
from fvcore.nn.jit_analysis import JitModelAnalysis
from torch import nn

if TYPE_CHECKING:
    from ..modeling.sam import ViTEncoderSpec

__all__ = [
    "MATMUL_SIZE",
    "REST_STAGE",
    "Stage",
    "STAGES",
    "StageTimer",
    "BenchmarkOptions",
    "matmul_gflops",
    "fvcore_gflop",
    "vit_encoder_gflop",
    "sam_vit_gflop",
    "set_fast_inference",
    "timed",
    "peak_memory_mb",
    "benchmark_model",
]

logger = logging.getLogger(__name__)

#: Side of the square fp32 matrices of the matrix-multiply rate.
MATMUL_SIZE = 2048
#: Name of the remainder of the forward pass (total minus the listed stages).
REST_STAGE = "postprocess"


# ------------------------------------------------------------------------------------------------
# The machine's rate
# ------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    device: torch.device | str = "cpu", size: int = MATMUL_SIZE, seconds: float = 1.5, min_repeats: int = 3
) -> float:
    """The machine's fp32 matrix-multiply rate, GFLOP/s: the median rate of ``size``³ products
    (2·size³ FLOP each) repeated for ``seconds`` (at least ``min_repeats`` times) after one
    untimed product."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device)
    b = torch.randn(size, size, generator=g).to(device)
    torch.mm(a, b)
    _sync(device)
    rates: list[float] = []
    start = time.perf_counter()
    while len(rates) < min_repeats or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        rates.append(2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


# ------------------------------------------------------------------------------------------------
# FLOP counting
# ------------------------------------------------------------------------------------------------
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


def vit_encoder_gflop(
    vit: "ViTEncoderSpec",
    out_chans: int,
    image_size: int,
    batch: int = 1,
    padded_projections: bool = False,
) -> float:
    """GFLOP (2 per multiply-add) of segment-anything's ``ImageEncoderViT`` with relative
    positions, architecture ``vit`` and neck width ``out_chans``, on (batch, 3, S, S) inputs,
    S = ``image_size``.

    Counts the patch embedding, per block the qkv and output projections, ``q kᵀ`` and the
    weighted sum of ``v``, the two relative-position einsums and the MLP, and the neck's two
    convolutions. Windowed blocks attend within the zero-padded windows; ``padded_projections``
    also counts the qkv and output projections of the padding tokens (the upstream forward;
    the fast path projects the H×W tokens only).
    """
    t = image_size // vit.patch_size
    tokens = t * t
    c, heads = vit.embed_dim, vit.num_heads
    hd, mlp = c // heads, int(c * vit.mlp_ratio)
    macs = tokens * c * 3 * vit.patch_size**2  # patch embedding
    for i in range(vit.depth):
        window = 0 if i in vit.global_attn_indexes else vit.window_size
        if window:
            side = -(-t // window) * window
            windows, grid = (side // window) ** 2, window
        else:
            side, windows, grid = t, 1, t
        n = grid * grid
        projected = side * side if padded_projections else tokens
        macs += projected * c * 4 * c  # qkv (3C) and output projection (C)
        macs += windows * heads * n * n * 2 * hd  # q kᵀ and attn · v
        macs += windows * heads * n * grid * hd * 2  # relative positions (h and w)
        macs += tokens * c * mlp * 2  # MLP
    macs += tokens * c * out_chans + tokens * out_chans * out_chans * 9  # neck
    return 2.0 * batch * macs / 1e9


def sam_vit_gflop(sam: nn.Module, args: tuple, kwargs: dict | None = None) -> float:
    """GFLOP of the frozen SAM encoder's call ``sam(images)``: :func:`vit_encoder_gflop` of its
    spec (the fast path's work, or the upstream forward's when the fast path is off); fvcore
    for encoders without a ViT spec (MobileSAM)."""
    from ..modeling.sam import sam_spec

    vit = sam_spec(sam.name).vit
    if vit is None:
        return fvcore_gflop(sam, args, kwargs)
    return vit_encoder_gflop(
        vit, sam.out_chans, sam.image_size, batch=int(args[0].shape[0]), padded_projections=not sam.fast_inference
    )


# ------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One timed part of a meta-architecture's forward.

    Attributes:
        name: the stage's key (``<name>_s`` in the results).
        module: attribute path of the timed module on the model (``"sam"``,
            ``"clip_adapter.clip_model"``).
        gflop: ``(module, args, kwargs) -> GFLOP`` of one call (default fvcore).
        counted_by: how ``gflop`` counts, for the report ("fvcore" or "formula").
    """

    name: str
    module: str
    gflop: Callable[[nn.Module, tuple, dict], float] = fvcore_gflop
    counted_by: str = "fvcore"


#: The stages of each meta-architecture (``MODEL.META_ARCHITECTURE``), in forward order.
STAGES: dict[str, tuple[Stage, ...]] = {
    "FrozenSeg": (
        Stage("sam_encoder", "sam", sam_vit_gflop, "formula"),
        Stage("clip_backbone", "backbone"),
        Stage("decoder", "sem_seg_head"),
    ),
    # OVSeg (spec §2): the proposal generator's backbone and MaskFormer head, then the CLIP
    # adapter (crop, fill and resize the valid proposals, the mask-prompted ViT, scoring)
    "OVSeg": (
        Stage("backbone", "backbone"),
        Stage("head", "sem_seg_head"),
        Stage("clip_on_crops", "clip_adapter"),
    ),
}
STAGES["OVSegDEMO"] = STAGES["OVSeg"]


class StageTimer:
    """Wall time of modules' forwards (forward pre/post hooks; CUDA synchronised), and the
    arguments of each module's first call (for FLOP counting)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.totals: dict[str, float] = defaultdict(float)
        self.first_call: dict[str, tuple[tuple, dict]] = {}
        self._start: dict[str, float] = {}
        self._handles: list = []

    def attach(self, name: str, module: nn.Module) -> None:
        def pre(_m, args, kwargs):
            self.first_call.setdefault(name, (args, kwargs))
            _sync(self.device)
            self._start[name] = time.perf_counter()

        def post(_m, _args, _kwargs, _out):
            _sync(self.device)
            self.totals[name] += time.perf_counter() - self._start.pop(name)

        self._handles += [
            module.register_forward_pre_hook(pre, with_kwargs=True),
            module.register_forward_hook(post, with_kwargs=True),
        ]

    def reset(self) -> None:
        self.totals.clear()

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Wall seconds of one call ``fn()`` (CUDA synchronised)."""
    device = torch.device(device)
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def peak_memory_mb(device: torch.device | str = "cpu") -> tuple[float, str]:
    """(MiB, kind): the CUDA allocator's peak on a GPU, else the process's maximum resident set."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def set_fast_inference(model: nn.Module, enabled: bool) -> None:
    """Switch the exact fast paths (MODEL.FAST_INFERENCE) of every submodule that has one."""
    for m in model.modules():
        if hasattr(m, "fast_inference"):
            m.fast_inference = bool(enabled)


def _submodule(model: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        model = getattr(model, part)
    return model


# ------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkOptions:
    """What :func:`benchmark_model` runs.

    Attributes:
        warmup: untimed iterations per variant.
        iters: timed iterations per variant (medians are reported).
        compare_upstream: also time the model with every MODEL.FAST_INFERENCE path off
            (segment-anything's ``ImageEncoderViT.forward`` as it is, the release's
            deformable-attention arithmetic), alternating with the fast variant in every
            iteration.
        matmul_seconds: duration of the matrix-multiply rate measurement.
        amp_dtype: autocast dtype, or None for fp32.
        count_gflop: count each stage's FLOPs (off for models fvcore cannot trace, e.g. the
            int8 layers of MODEL.INT8_CPU; GFLOP and efficiency are then None).
    """

    warmup: int = 1
    iters: int = 3
    compare_upstream: bool = False
    matmul_seconds: float = 1.5
    amp_dtype: torch.dtype | None = None
    count_gflop: bool = True


def _median_stage_times(runs: list[dict[str, float]], totals: list[float], names: Sequence[str]) -> dict[str, float]:
    """Median seconds per stage; the rest stage is the median of total minus the stages."""
    out = {n: statistics.median(r.get(n, 0.0) for r in runs) for n in names}
    out[REST_STAGE] = statistics.median(t - sum(r.get(n, 0.0) for n in names) for r, t in zip(runs, totals))
    return out


def benchmark_model(
    model: nn.Module,
    inputs: list[dict],
    options: BenchmarkOptions,
    meta_architecture: str,
) -> dict[str, Any]:
    """Time ``model(inputs)`` per stage and relate it to the machine's matrix-multiply rate.

    Args:
        model: a built model in eval mode, its vocabulary set.
        inputs: one batch (a list of input dicts of one image).
        options: iterations and variants.
        meta_architecture: key of :data:`STAGES`.
    Returns:
        A flat dict: ``matmul_gflops`` (GFLOP/s), ``total_per_image_s``, per stage ``<stage>_s``,
        ``<stage>_gflop`` (None when not counted), ``<stage>_efficiency``, ``stages`` (their
        order), ``gflop_method`` per stage, ``sam_encoder_floor_s`` (SAM FLOPs at the measured
        rate) when the table has a SAM stage, and with ``compare_upstream``
        ``upstream_total_per_image_s`` and ``upstream_<stage>_s``.
    """
    if meta_architecture not in STAGES:
        raise ValueError(
            f"No benchmark stages for MODEL.META_ARCHITECTURE {meta_architecture!r}; add its row "
            f"to frozenseg.engine.benchmark.STAGES (known: {', '.join(STAGES)})."
        )
    stages = STAGES[meta_architecture]
    names = [s.name for s in stages]
    device = next(model.parameters()).device
    batch = len(inputs)
    rate = matmul_gflops(device, seconds=options.matmul_seconds)
    logger.info("fp32 matrix-multiply rate: %.1f GFLOP/s (%d^3 products)", rate, MATMUL_SIZE)

    timer = StageTimer(device)
    for s in stages:
        timer.attach(s.name, _submodule(model, s.module))
    variants = {"fast": True, "upstream": False} if options.compare_upstream else {"fast": True}
    autocast = (
        torch.autocast(device_type=device.type, dtype=options.amp_dtype)
        if options.amp_dtype is not None
        else contextlib.nullcontext()
    )
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    totals: dict[str, list[float]] = {v: [] for v in variants}
    gflop: dict[str, float] = {}  # per image, of the fast variant (counted on its first call)
    try:
        with torch.no_grad(), autocast:
            for i in range(options.warmup + options.iters):
                for variant, fast in variants.items():
                    set_fast_inference(model, fast)
                    timer.reset()
                    timer.first_call.clear()
                    _sync(device)
                    t0 = time.perf_counter()
                    model(inputs)
                    _sync(device)
                    total = time.perf_counter() - t0
                    if i >= options.warmup:
                        runs[variant].append(dict(timer.totals))
                        totals[variant].append(total / batch)
                    if options.count_gflop and not gflop:
                        gflop = {
                            s.name: s.gflop(_submodule(model, s.module), *timer.first_call[s.name]) / batch
                            for s in stages
                            if s.name in timer.first_call
                        }
                    logger.info("iteration %d (%s): %.2f s", i, variant, total)
    finally:
        set_fast_inference(model, True)
        timer.detach()

    per_batch = {v: [{k: t / batch for k, t in r.items()} for r in runs[v]] for v in variants}
    seconds = _median_stage_times(per_batch["fast"], totals["fast"], names)
    result: dict[str, Any] = {
        "matmul_gflops": rate,
        "stages": [*names, REST_STAGE],
        "gflop_method": {s.name: s.counted_by for s in stages} | {REST_STAGE: None},
        "total_per_image_s": statistics.median(totals["fast"]),
    }
    for name in [*names, REST_STAGE]:
        g = gflop.get(name)
        result[f"{name}_s"] = seconds[name]
        result[f"{name}_gflop"] = g
        result[f"{name}_efficiency"] = g / seconds[name] / rate if g and seconds[name] > 0 else None
    if gflop.get("sam_encoder"):
        result["sam_encoder_floor_s"] = gflop["sam_encoder"] / rate
    if options.compare_upstream:
        up = _median_stage_times(per_batch["upstream"], totals["upstream"], names)
        result["upstream_total_per_image_s"] = statistics.median(totals["upstream"])
        for name in [*names, REST_STAGE]:
            result[f"upstream_{name}_s"] = up[name]
        result["speedup_vs_upstream"] = result["upstream_total_per_image_s"] / result["total_per_image_s"]
    return result
