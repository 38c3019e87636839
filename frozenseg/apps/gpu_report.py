"""The prepared GPU check (``tools/gpu_report.py``): one run records

* ``environment``: torch, CUDA and cuDNN versions, the device's name and memory, the TF32 flags;
* ``inference``: images/s of the eval forward on ``height`` x ``width`` random images, per
  precision variant (``fp32``; ``frozen_bf16``: MODEL.FROZEN_ENCODERS_DTYPE bfloat16;
  ``autocast_bf16``: the whole forward under ``torch.autocast``) and test batch size, after
  warm-up, synchronised; with the peak allocated memory and each bf16 variant's ``sem_seg``
  agreement with fp32 on the same images;
* ``training``: seconds per optimiser step of the full model (the trainer's own step:
  :class:`~frozenseg.engine.train_loop.SimpleTrainer`) on ``train_batch`` random
  ``train_size``² crops with random masks, in fp32 and with SOLVER.AMP bfloat16 (also with the
  frozen encoders in bf16), with the peak allocated memory;
* ``parity``: the eval outputs on ``device`` against the CPU for the same weights and input with
  TF32 off (max absolute / relative ``sem_seg`` difference, arg-max and panoptic agreement);
* ``requery``: a new vocabulary of ``requery_classes`` classes never encoded before, on an image
  whose vocabulary-free features are cached (text encoding + classification + post-processing,
  as the predictor's image cache answers it), the same again with the text embeddings cached,
  and the whole image for comparison;
* ``ovseg``: images/s and the requery times of the OVSeg config ``ovseg_config_file`` (skipped
  when it is empty), fp32, batch 1.

The model is built once from the config with random frozen weights (fixed seed; nothing is
downloaded). Every section runs in its own ``try``: a failure (out of memory, a CUDA error, a
bad value) is recorded and the next section runs; sections that would start after
``max_seconds`` are skipped. ``report.json`` and ``report.md`` are rewritten after every section,
so a run cut short keeps what it measured. With ``device="cpu"`` and a tiny config every section
runs on a CPU (the parity section then compares the CPU with itself: all differences 0).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..utils.errors import UserInputError
from ..utils.file_io import atomic_write
from .benchmark import peak_memory_mb, requery_figures, requery_vocabulary, timed
from ..engine.events import EventStorage
from ..engine.setup import load_config
from ..modeling.build import build_model
from ..engine.optimizer import build_optimizer, clip_gradients
from ..engine.train_loop import SimpleTrainer, amp_settings

__all__ = ["GpuReportOptions", "SECTIONS", "run_gpu_report", "compare_outputs", "report_markdown", "requery_times"]

logger = logging.getLogger(__name__)

#: The vocabulary of the eval sections (comma-separated synonyms; the first ``num_classes``).
VOCABULARY = ["cat,kitten", "dog,puppy", "grass,lawn", "sky", "tree", "car,automobile", "person,people", "road"]
#: Inference variants: name -> (frozen encoders' dtype, autocast dtype of the whole forward).
INFERENCE_VARIANTS = {
    "fp32": (None, None),
    "frozen_bf16": (torch.bfloat16, None),
    "autocast_bf16": (None, torch.bfloat16),
}
#: Training variants: name -> (frozen encoders' dtype, SOLVER.AMP dtype or None).
TRAINING_VARIANTS = {
    "fp32": (None, None),
    "amp_bf16": (None, "bfloat16"),
    "amp_bf16_frozen_bf16": (torch.bfloat16, "bfloat16"),
}
#: Exceptions a section records as its failure before the next section runs (out of memory is
#: a RuntimeError; UserInputError covers the package's one-sentence errors).
SECTION_ERRORS = (RuntimeError, ValueError, OSError, UserInputError)


@dataclass(frozen=True)
class GpuReportOptions:
    """What one report measures (pixels, counts, seconds)."""

    config_file: str
    opts: tuple[str, ...] = ()
    device: str = "cuda"
    height: int = 640
    width: int = 853
    batch_sizes: tuple[int, ...] = (1, 4)
    num_classes: int = 6
    warmup: int = 2
    images: int = 10
    train_size: int = 1024
    train_batch: int = 4
    train_warmup: int = 1
    train_steps: int = 3
    parity_height: int = 384
    parity_width: int = 512
    max_seconds: float = 480.0
    seed: int = 0
    requery_classes: int = 150
    ovseg_config_file: str = ""
    ovseg_opts: tuple[str, ...] = ()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _random_image(h: int, w: int, seed: int) -> torch.Tensor:
    """(3, h, w) uint8 RGB noise from ``seed``."""
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _panoptic_categories(panoptic: tuple[torch.Tensor, list[dict]]) -> torch.Tensor:
    """(H, W) int64 category of every pixel of a ``panoptic_seg`` output (-1 = no segment)."""
    ids, segments = panoptic
    out = torch.full(ids.shape, -1, dtype=torch.int64, device=ids.device)
    for s in segments:
        out[ids == s["id"]] = int(s["category_id"])
    return out


def compare_outputs(reference: dict, output: dict) -> dict[str, float]:
    """How close ``output`` is to ``reference`` (two eval results of one image):
    ``sem_seg_max_abs_diff``, ``sem_seg_max_rel_diff`` (max |diff| / max |reference|),
    ``sem_seg_argmax_agreement`` (fraction of pixels with the same arg-max class) and, when both
    have ``panoptic_seg``, ``panoptic_agreement`` (fraction of pixels with the same category)."""
    ref, out = reference["sem_seg"].detach().float().cpu(), output["sem_seg"].detach().float().cpu()
    diff = (out - ref).abs().max().item()
    figures = {
        "sem_seg_max_abs_diff": diff,
        "sem_seg_max_rel_diff": diff / max(ref.abs().max().item(), 1e-12),
        "sem_seg_argmax_agreement": (out.argmax(0) == ref.argmax(0)).double().mean().item(),
    }
    if "panoptic_seg" in reference and "panoptic_seg" in output:
        a = _panoptic_categories(reference["panoptic_seg"]).cpu()
        b = _panoptic_categories(output["panoptic_seg"]).cpu()
        figures["panoptic_agreement"] = (a == b).double().mean().item()
    return figures


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------
class _Run:
    """The state the sections share: the config, the model (built on first use) and the clock."""

    def __init__(self, options: GpuReportOptions):
        self.options = options
        self.device = torch.device(options.device)
        self.cfg = load_config(options.config_file, options.opts, device=options.device, freeze=True)
        self.start = time.perf_counter()
        self._model: nn.Module | None = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        return self.elapsed > self.options.max_seconds

    @property
    def model(self) -> nn.Module:
        """The model with random weights from ``seed`` (frozen parts included: no weight file is
        read), eval mode, the report's vocabulary."""
        if self._model is None:
            torch.manual_seed(self.options.seed)
            model = build_model(self.cfg, device=self.device, load_frozen_weights=False).eval()
            model.set_vocabulary(VOCABULARY[: self.options.num_classes])
            self._model = model
        return self._model


def _environment(run: _Run) -> dict[str, Any]:
    device = run.device
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device.type,
        "cpu_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "config": run.options.config_file,
        "opts": list(run.options.opts),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({
            "gpu": props.name,
            "gpu_memory_gib": props.total_memory / 2**30,
            "compute_capability": f"{props.major}.{props.minor}",
            "bf16_supported": torch.cuda.is_bf16_supported(),
        })
    return env


def _inference(run: _Run) -> dict[str, Any]:
    """images/s per variant and batch size; the bf16 variants' agreement with fp32."""
    o, model, device = run.options, run.model, run.device
    images = [_random_image(o.height, o.width, o.seed + i) for i in range(max(o.batch_sizes))]
    rows: list[dict[str, Any]] = []
    reference: dict | None = None
    for batch, (variant, (frozen, autocast)) in itertools.product(o.batch_sizes, INFERENCE_VARIANTS.items()):
        row: dict[str, Any] = {"variant": variant, "batch": batch}
        rows.append(row)
        if run.out_of_time():
            row["status"] = "skipped: time budget spent"
            continue
        inputs = [{"image": images[i], "height": o.height, "width": o.width} for i in range(batch)]
        model.set_frozen_encoders_dtype(frozen)
        try:
            _reset_peak(device)
            whole = torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext()
            with torch.no_grad(), whole:
                first = model(inputs)[0]
                for _ in range(o.warmup - 1):
                    model(inputs)
                batches = math.ceil(o.images / batch)
                seconds = timed(lambda: [model(inputs) for _ in range(batches)], device)
            row.update(status="ok", images=batches * batch, seconds=seconds,
                       images_per_s=batches * batch / seconds, peak_memory_mb=peak_memory_mb(device)[0])
            if reference is None and variant == "fp32":
                reference = first
            elif reference is not None:
                row.update(compare_outputs(reference, first))
        except torch.cuda.OutOfMemoryError as e:
            row["status"] = f"out of memory: {str(e).splitlines()[0]}"
            torch.cuda.empty_cache()
        finally:
            model.set_frozen_encoders_dtype(None)
    return {"input": [o.height, o.width], "num_classes": o.num_classes, "warmup_batches": o.warmup,
            "peak_memory_kind": peak_memory_mb(device)[1], "rows": rows}


def _training_batch(run: _Run) -> list[dict]:
    """``train_batch`` random ``train_size``² crops with three random rectangular masks each."""
    from ..structures import Instances

    o = run.options
    g = torch.Generator().manual_seed(o.seed)
    num_classes = run.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    batch = []
    for i in range(o.train_batch):
        inst = Instances((o.train_size, o.train_size))
        masks = torch.zeros(3, o.train_size, o.train_size, dtype=torch.bool)
        for m in masks:
            y0, x0 = torch.randint(0, o.train_size // 2, (2,), generator=g).tolist()
            m[y0 : y0 + o.train_size // 2, x0 : x0 + o.train_size // 3] = True
        inst.gt_masks = masks
        inst.gt_classes = torch.randint(0, num_classes, (3,), generator=g)
        batch.append({"image": _random_image(o.train_size, o.train_size, o.seed + 100 + i), "instances": inst})
    return batch


def _run_steps(trainer: SimpleTrainer, storage: EventStorage, start: int, count: int) -> None:
    """Optimiser steps ``start .. start + count - 1`` of ``trainer``."""
    for it in range(start, start + count):
        trainer.iter = storage.iter = it
        trainer.run_step()


def _training(run: _Run) -> dict[str, Any]:
    """Seconds per optimiser step and peak memory per variant (the trainer's own step)."""
    o, model, device = run.options, run.model, run.device
    batch = _training_batch(run)
    rows: list[dict[str, Any]] = []
    for variant, (frozen, amp) in TRAINING_VARIANTS.items():
        row: dict[str, Any] = {"variant": variant, "batch": o.train_batch}
        rows.append(row)
        if run.out_of_time():
            row["status"] = "skipped: time budget spent"
            continue
        cfg = run.cfg.clone()
        cfg.defrost()
        cfg.SOLVER.AMP.ENABLED = amp is not None
        cfg.SOLVER.AMP.DTYPE = amp or "float16"
        amp_dtype, _ = amp_settings(cfg, device)
        model.set_frozen_encoders_dtype(frozen)
        trainer = None
        try:
            _reset_peak(device)
            trainer = SimpleTrainer(
                model, itertools.repeat(batch), build_optimizer(cfg, model), amp_dtype=amp_dtype,
                clip_fn=lambda params, cfg=cfg: clip_gradients(cfg, params), seed=o.seed,
            )
            with EventStorage(0) as storage:
                _run_steps(trainer, storage, 0, o.train_warmup)
                seconds = timed(lambda: _run_steps(trainer, storage, o.train_warmup, o.train_steps), device)
                loss = storage.history("total_loss").latest()
            row.update(status="ok", steps=o.train_steps, seconds_per_step=seconds / o.train_steps,
                       images_per_s=o.train_steps * o.train_batch / seconds, total_loss=loss,
                       peak_memory_mb=peak_memory_mb(device)[0])
        except torch.cuda.OutOfMemoryError as e:
            row["status"] = f"out of memory: {str(e).splitlines()[0]}"
        finally:
            trainer = None  # frees the optimiser state before the next variant
            model.zero_grad(set_to_none=True)
            model.eval()
            model.set_frozen_encoders_dtype(None)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"crop": [o.train_size, o.train_size], "warmup_steps": o.train_warmup,
            "peak_memory_kind": peak_memory_mb(device)[1], "rows": rows}


def _parity(run: _Run) -> dict[str, Any]:
    """The model's eval outputs on its device against a CPU copy's, same input, TF32 off."""
    o, model = run.options, run.model
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cpu_model = copy.deepcopy(model).to("cpu").eval()
        inputs = [{"image": _random_image(o.parity_height, o.parity_width, o.seed + 7)}]
        with torch.no_grad():
            out = model(inputs)[0]
            ref = cpu_model(inputs)[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    return {"input": [o.parity_height, o.parity_width], "against": "cpu", "tf32": False,
            **compare_outputs(ref, out)}


def requery_times(model: nn.Module, inputs: list[dict], num_classes: int, device: torch.device) -> dict[str, Any]:
    """Seconds per image of the whole eval forward, and of answering a new vocabulary of
    ``num_classes`` classes from the image's cached features, with its text embeddings to
    compute and then cached (:func:`~frozenseg.apps.benchmark.requery_figures`), with their
    shares of the whole forward."""
    with torch.no_grad():
        total = timed(lambda: model(inputs), device)
    return {"total_per_image_s": total, **requery_figures(
        model, inputs, requery_vocabulary(num_classes), iters=1, device=device, total_per_image_s=total)}


def _requery(run: _Run) -> dict[str, Any]:
    o = run.options
    inputs = [{"image": _random_image(o.height, o.width, o.seed), "height": o.height, "width": o.width}]
    run.model(inputs)  # warm-up: the first call also builds the text classifier
    return {"input": [o.height, o.width], **requery_times(run.model, inputs, o.requery_classes, run.device)}


def _ovseg(run: _Run) -> dict[str, Any]:
    o = run.options
    if not o.ovseg_config_file:
        return {"skipped": "no ovseg_config_file given"}
    cfg = load_config(o.ovseg_config_file, o.ovseg_opts, device=o.device, freeze=True)
    torch.manual_seed(o.seed)
    model = build_model(cfg, device=run.device, load_frozen_weights=False).eval()
    model.set_vocabulary([v.split(",")[0] for v in VOCABULARY[: o.num_classes]])
    inputs = [{"image": _random_image(o.height, o.width, o.seed), "height": o.height, "width": o.width}]
    _reset_peak(run.device)
    with torch.no_grad():
        model(inputs)  # warm-up
        seconds = timed(lambda: [model(inputs) for _ in range(o.images)], run.device)
    result = {"config": o.ovseg_config_file, "input": [o.height, o.width], "images": o.images,
              "images_per_s": o.images / seconds, "peak_memory_mb": peak_memory_mb(run.device)[0]}
    return {**result, **requery_times(model, inputs, o.requery_classes, run.device)}


#: The report's sections, in the order they run.
SECTIONS: dict[str, Callable[[_Run], dict[str, Any]]] = {
    "environment": _environment,
    "inference": _inference,
    "training": _training,
    "parity": _parity,
    "requery": _requery,
    "ovseg": _ovseg,
}


# ------------------------------------------------------------------------------------------------
# Running and writing
# ------------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: one heading per section, its rows as a table."""
    lines = ["# GPU report", ""]
    for name, section in report["sections"].items():
        lines += [f"## {name}: {section['status']}", ""]
        if "error" in section:
            lines += [f"`{section['error']}`", ""]
        if "rows" in section:
            columns = list(dict.fromkeys(k for r in section["rows"] for k in r))
            lines += _table(section["rows"], columns) + [""]
        scalars = {k: v for k, v in section.items() if k not in ("status", "rows", "error")}
        lines += [f"- {k}: {_cell(v)}" for k, v in scalars.items()] + [""]
    return "\n".join(lines)


def _write(report: dict[str, Any], output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with atomic_write(os.path.join(output_dir, "report.json"), mode="w") as f:
        json.dump(report, f, indent=2)
    with atomic_write(os.path.join(output_dir, "report.md"), mode="w") as f:
        f.write(report_markdown(report))


def run_gpu_report(options: GpuReportOptions, output_dir: str) -> dict[str, Any]:
    """Run every section of :data:`SECTIONS` (see the module docstring) and write
    ``report.json`` / ``report.md`` under ``output_dir`` after each one; returns the report
    (``{"options": ..., "sections": {name: {"status": "ok" | "failed" | "skipped", ...}}}``)."""
    run = _Run(options)
    report: dict[str, Any] = {"options": asdict(options),
                              "sections": {}}
    for name, section in SECTIONS.items():
        if run.out_of_time():
            result = {"status": "skipped", "reason": f"time budget of {options.max_seconds:.0f} s spent"}
        else:
            logger.info("GPU report: section %s (%.0f s elapsed)", name, run.elapsed)
            t0 = time.perf_counter()
            try:
                result = {"status": "ok", **section(run)}
            except SECTION_ERRORS as e:
                logger.exception("GPU report: section %s failed", name)
                result = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                if run.device.type == "cuda":
                    torch.cuda.empty_cache()
            result["section_seconds"] = time.perf_counter() - t0
        report["sections"][name] = result
        report["elapsed_s"] = run.elapsed
        _write(report, output_dir)
    return report
