"""Inference benchmark: the machine's matrix-multiply rate, per-stage seconds, FLOPs and
efficiency, and the same model with its fast inference paths off (the upstream forward of the
frozen SAM encoder, the release's deformable-attention arithmetic).

Units. Seconds are wall time per image (median over the timed iterations). GFLOP counts the
multiply-adds of matrix products, convolutions, einsums and fused attention, 2 FLOP each;
element-wise operations, norms, softmax and sampling are not counted. A stage's FLOPs are
counted once per configuration, on the inputs of its first call, by the stage's own counter (for
SAM's ViT the formula of :func:`~frozenseg.modeling.sam.flops.sam_encoder_gflop`, the work of the
fast path), else with fvcore's ``FlopCountAnalysis`` (:func:`~frozenseg.utils.flops.fvcore_gflop`). Efficiency = stage GFLOP / stage seconds / the
measured matrix-multiply rate (:func:`matmul_gflops`, fp32 2048³ products), so a stage made of
large matrix products reaches about 1.

Stages come from the model (``benchmark_stages()`` of the model contract): each names the
submodule whose forward is timed (forward hooks) and how its FLOPs are counted. "postprocess" is
the rest of the forward pass (everything outside the listed modules; all of it for a model that
lists no stages).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..modeling.contract import BenchmarkStage, SegmentationModel
from ..modeling.sam.flops import sam_encoder_gflop, vit_encoder_gflop
from ..utils.flops import fvcore_gflop


__all__ = [
    "MATMUL_SIZE",
    "REST_STAGE",
    "StageTimer",
    "BenchmarkOptions",
    "matmul_gflops",
    "fvcore_gflop",
    "vit_encoder_gflop",
    "sam_encoder_gflop",
    "timed",
    "peak_memory_mb",
    "benchmark_model",
    "requery_figures",
    "requery_vocabulary",
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
# ------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------
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
            deformable-attention arithmetic; for OVSeg the reference crop loop and mask-prompt
            forward, open_clip's blocks as they are), alternating with the fast variant in
            every iteration.
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


def _sem_seg_agreement(fast: Any, upstream: Any) -> dict[str, float]:
    """``upstream_sem_seg_argmax_agreement`` (fraction of pixels whose arg-max class is the same)
    and ``upstream_sem_seg_max_rel_diff`` (max |difference| over max |upstream score|) of the two
    variants' ``sem_seg`` outputs on the same input; empty when the outputs have none."""
    if not isinstance(fast, list) or not isinstance(upstream, list):
        return {}
    pairs = [(a["sem_seg"], b["sem_seg"]) for a, b in zip(fast, upstream)
             if isinstance(a, dict) and isinstance(b, dict) and "sem_seg" in a and "sem_seg" in b]
    if not pairs:
        return {}
    same = sum((a.argmax(0) == b.argmax(0)).sum().item() for a, b in pairs)
    pixels = sum(a[0].numel() for a, _ in pairs)
    diff = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in pairs)
    return {"upstream_sem_seg_argmax_agreement": same / pixels, "upstream_sem_seg_max_rel_diff": diff}


def benchmark_model(
    model: SegmentationModel,
    inputs: list[dict],
    options: BenchmarkOptions,
) -> dict[str, Any]:
    """Time ``model(inputs)`` per stage and relate it to the machine's matrix-multiply rate.

    Args:
        model: a built model in eval mode, its vocabulary set.
        inputs: one batch (a list of input dicts of one image).
        options: iterations and variants.
    Returns:
        A flat dict: ``matmul_gflops`` (GFLOP/s), ``total_per_image_s``, per stage ``<stage>_s``,
        ``<stage>_gflop`` (None when not counted), ``<stage>_efficiency``, ``stages`` (their
        order), ``gflop_method`` per stage, ``sam_encoder_floor_s`` (SAM FLOPs at the measured
        rate) when the model has a ``sam_encoder`` stage (FrozenSeg), ``clip_on_crops_floor_s``
        likewise for OVSeg's CLIP on the proposal crops, and with ``compare_upstream``
        ``upstream_total_per_image_s``, ``upstream_<stage>_s`` and, for outputs with
        ``sem_seg``, ``upstream_sem_seg_argmax_agreement`` and ``upstream_sem_seg_max_rel_diff``
        (the two variants' last outputs on the same input).
    """
    stages: tuple[BenchmarkStage, ...] = model.benchmark_stages()
    names = [s.name for s in stages]
    device = next(model.parameters()).device
    batch = len(inputs)
    rate = matmul_gflops(device, seconds=options.matmul_seconds)
    logger.info("fp32 matrix-multiply rate: %.1f GFLOP/s (%d^3 products)", rate, MATMUL_SIZE)

    timer = StageTimer(device)
    for s in stages:
        timer.attach(s.name, model.get_submodule(s.module))
    variants = {"fast": True, "upstream": False} if options.compare_upstream else {"fast": True}
    autocast = (
        torch.autocast(device_type=device.type, dtype=options.amp_dtype)
        if options.amp_dtype is not None
        else contextlib.nullcontext()
    )
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    outputs: dict[str, Any] = {}  # each variant's latest output
    totals: dict[str, list[float]] = {v: [] for v in variants}
    gflop: dict[str, float] = {}  # per image, of the fast variant (counted on its first call)
    try:
        with torch.no_grad(), autocast:
            for i in range(options.warmup + options.iters):
                for variant, fast in variants.items():
                    model.set_fast_inference(fast)
                    timer.reset()
                    timer.first_call.clear()
                    _sync(device)
                    t0 = time.perf_counter()
                    outputs[variant] = model(inputs)
                    _sync(device)
                    total = time.perf_counter() - t0
                    if i >= options.warmup:
                        runs[variant].append(dict(timer.totals))
                        totals[variant].append(total / batch)
                    if options.count_gflop and not gflop:
                        gflop = {
                            s.name: (s.gflop or fvcore_gflop)(model.get_submodule(s.module), *timer.first_call[s.name]) / batch
                            for s in stages
                            if s.name in timer.first_call
                        }
                    logger.info("iteration %d (%s): %.2f s", i, variant, total)
    finally:
        model.set_fast_inference(True)
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
    for name in ("sam_encoder", "clip_on_crops"):  # the dominant stage's FLOPs at the measured rate
        if gflop.get(name):
            result[f"{name}_floor_s"] = gflop[name] / rate
    if options.compare_upstream:
        up = _median_stage_times(per_batch["upstream"], totals["upstream"], names)
        result["upstream_total_per_image_s"] = statistics.median(totals["upstream"])
        for name in [*names, REST_STAGE]:
            result[f"upstream_{name}_s"] = up[name]
        result["speedup_vs_upstream"] = result["upstream_total_per_image_s"] / result["total_per_image_s"]
        result.update(_sem_seg_agreement(outputs.get("fast"), outputs.get("upstream")))
    return result


# ------------------------------------------------------------------------------------------------
# Answering a new vocabulary from cached image features
# ------------------------------------------------------------------------------------------------
def _answer(model: SegmentationModel, inputs: list[dict], features: Sequence[Any]) -> list[dict]:
    """``classify_images`` with each semantic output read as the predictor reads it (one
    :meth:`~frozenseg.structures.SemanticScores.summarize` pass over the classes; the scores are
    computed lazily, so without it the semantic output would cost nothing)."""
    outputs = model.classify_images(inputs, features)
    for out in outputs:
        if "sem_seg_scores" in out:
            out["sem_seg_scores"].summarize()
    return outputs


def requery_vocabulary(n: int) -> list[str]:
    """``n`` class strings for :func:`requery_figures`: ADE20K-150's (with their synonyms, as
    ``--dataset-vocabulary openvocab_ade20k_panoptic_val`` gives them), then LVIS names, then
    "object number i"."""
    from ..data import dataset_vocabulary

    names = dataset_vocabulary("openvocab_ade20k_panoptic_val")
    if n > len(names):
        names = names + [c.replace("_", " ") for c in dataset_vocabulary("openvocab_lvis_v1_val")]
    return [names[i] if i < len(names) else f"object number {i}" for i in range(n)]


def requery_figures(
    model: SegmentationModel,
    inputs: list[dict],
    class_names: Sequence[str],
    iters: int = 1,
    device: torch.device | str = "cpu",
    total_per_image_s: float | None = None,
) -> dict[str, Any]:
    """Seconds per image of answering a new vocabulary from the images' cached
    :meth:`~frozenseg.modeling.contract.SegmentationModel.encode_images` features: text
    encoding, classification and post-processing (``classify_images``, the semantic scores
    summarised as the predictor does).

    Each of the ``iters`` timed rounds empties the model's text caches (memory, and a new
    temporary folder in place of its disk cache, so the user's cache is neither read nor filled;
    the encoded template prefixes are kept, as in a process that has built a vocabulary), sets the
    vocabulary ``class_names`` and times ``classify_images`` twice: first with the text
    embeddings to compute (``requery_per_image_s``), then again with them cached
    (``requery_cached_text_per_image_s``); medians over the rounds. The image features are
    computed once, untimed. The outputs are computed as the predictor and the web demo compute
    them: semantic scores streamed, without the full (K, H, W) map (``full_semantic_map`` off).
    The model's vocabulary and settings are restored afterwards.

    Returns:
        ``requery_classes`` (K), ``requery_synonyms`` (synonyms encoded, one prompt per
        template each), the two times and, given ``total_per_image_s`` (the whole image's
        time), their shares of it (``requery_share``, ``requery_cached_text_share``); or
        ``{"requery": <reason>}`` when the model does not split its forward or has no
        ``text_classifier_builder``.
    """
    import os
    import tempfile

    device = torch.device(device)
    per_image = 1.0 / max(1, len(inputs))
    builder = getattr(model, "text_classifier_builder", None)
    if builder is None:
        return {"requery": "the model has no text_classifier_builder"}
    vocabulary = model.vocabulary
    saved_cache_dir = builder.cache_dir
    saved_full_map = getattr(model, "full_semantic_map", None)
    new_text, cached_text = [], []
    with tempfile.TemporaryDirectory(prefix="frozenseg_requery_") as scratch, torch.no_grad():
        try:
            features = model.encode_images(inputs)
            if features is None:
                return {"requery": "the model does not split its forward"}
            if saved_full_map is not None:
                model.full_semantic_map = False
            for i in range(max(1, int(iters))):
                if saved_cache_dir:  # an empty disk cache per round
                    builder.cache_dir = os.path.join(scratch, str(i))
                builder.clear_cache(prefixes=False)  # as in a process that has built a vocabulary
                model.set_vocabulary(list(class_names))
                new_text.append(timed(lambda: _answer(model, inputs, features), device) * per_image)
                encoded = builder.last_build["encoded"]
                cached_text.append(timed(lambda: _answer(model, inputs, features), device) * per_image)
        finally:
            builder.cache_dir = saved_cache_dir
            if saved_full_map is not None:
                model.full_semantic_map = saved_full_map
            builder.clear_cache(prefixes=False)
            if vocabulary is not None:
                model.set_vocabulary(vocabulary.class_names, vocabulary.thing_classes)
    figures = {
        "requery_classes": len(class_names),
        "requery_synonyms": encoded,
        "requery_per_image_s": statistics.median(new_text),
        "requery_cached_text_per_image_s": statistics.median(cached_text),
    }
    if total_per_image_s:
        figures["requery_share"] = figures["requery_per_image_s"] / total_per_image_s
        figures["requery_cached_text_share"] = figures["requery_cached_text_per_image_s"] / total_per_image_s
    return figures
