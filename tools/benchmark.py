#!/usr/bin/env python
"""Time a model's inference per stage on a fixed-size input, against the machine's own rate.

Builds the model from a config (random weights unless the config points to real ones), measures
the machine's fp32 matrix-multiply rate, times the text classifier of a fresh vocabulary once,
then times inference of one random image per stage (seconds, GFLOP, efficiency = achieved
GFLOP/s / measured rate; see frozenseg.apps.benchmark for the units and how FLOPs are
counted). --compare-upstream also runs the frozen encoders' upstream forwards
(MODEL.FAST_INFERENCE off) in the same process, alternating with the fast path.
--requery-classes N (default 150; 0 skips it) then times answering a new vocabulary of N classes
(ADE20K-150's class strings with their synonyms, then LVIS names) from the image's cached
vocabulary-free features, with the text caches emptied (text encoding, classification and
post-processing): ``requery_per_image_s``, and again with those classes' text embeddings
cached, ``requery_cached_text_per_image_s``; each also as a share of ``total_per_image_s``. --int8 then
quantises the frozen encoders (MODEL.INT8_CPU, frozenseg.modeling.quantization), times the
same input again and reports the int8/fp32 time ratio and the argmax agreement of ``sem_seg``
(fraction of pixels whose arg-max class is unchanged).

For OVSeg configs (configs/ovseg/*.yaml) the CLIP on the proposal crops is the stage
``clip_on_crops`` (cropping, the mask-prompted ViT and the scoring); its efficiency and
``clip_on_crops_floor_s`` (its FLOPs at the measured rate) are reported, and --compare-upstream
times the reference crop loop and mask-prompt forward against the fast path.

Examples:
    python tools/benchmark.py --config-file configs/coco/frozenseg/convnext_large_eval_ade20k.yaml \\
        --device cpu --height 384 --width 512 --num-classes 6 --compare-upstream \\
        MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS "" MODEL.SAM_CHECKPOINT ""
    python tools/benchmark.py --config-file configs/ovseg/ovseg_R101c_vitB_bs32_120k.yaml \\
        --device cpu --height 320 --width 448 --num-classes 6 --compare-upstream \\
        MODEL.CLIP_ADAPTER.CLIP_WEIGHTS "" MODEL.WEIGHTS ""
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from frozenseg.apps import benchmark
from frozenseg.engine.launch import configure_cpu_process
from frozenseg.engine.setup import load_config
from frozenseg.modeling.build import build_model
from frozenseg.modeling.quantization import quantize_frozen_encoders
from frozenseg.utils.cli import int_at_least
from frozenseg.utils.errors import exit_on_user_error
from frozenseg.utils.file_io import atomic_write

logger = logging.getLogger("frozenseg.benchmark")

VOCABULARY = ["cat,kitten", "dog,puppy", "grass,lawn", "sky", "tree", "car,automobile", "person,people"]
AMP_DTYPES = {"": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="model config (YAML)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to run on")
    p.add_argument("--amp", default="", choices=list(AMP_DTYPES), help="autocast dtype")
    p.add_argument("--height", type=int_at_least(1), default=384, help="input height in pixels")
    p.add_argument("--width", type=int_at_least(1), default=512, help="input width in pixels")
    p.add_argument("--num-classes", type=int_at_least(1), default=6, help="vocabulary size (classes)")
    p.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed iterations (per variant)")
    p.add_argument("--iters", type=int_at_least(1), default=3, help="timed iterations (per variant)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (sets MODEL.CPU_THREADS; 0: auto, physical cores)")
    p.add_argument("--compare-upstream", action="store_true",
                   help="also time the frozen encoders' upstream forwards in the same run")
    p.add_argument("--requery-classes", type=int_at_least(0), default=150,
                   help="classes of the new vocabulary answered from the cached image features "
                        "(requery_per_image_s; 0: not measured)")
    p.add_argument("--int8", action="store_true",
                   help="then time the int8 CPU mode (MODEL.INT8_CPU) on the same input and compare")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def vocabulary(n: int) -> list[str]:
    return [VOCABULARY[i] if i < len(VOCABULARY) else f"object number {i}" for i in range(n)]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"
    return str(v)


def _int8_figures(model, inputs, options, fp32: dict) -> dict:
    """Quantise ``model``'s frozen encoders in place, time ``inputs`` again and compare the
    ``sem_seg`` arg-max with the fp32 model's (same process, same input)."""
    with torch.no_grad():
        reference = model(inputs)[0]["sem_seg"].argmax(0)
    layers = quantize_frozen_encoders(model)
    int8 = benchmark.benchmark_model(model, inputs, benchmark.BenchmarkOptions(
        warmup=options.warmup, iters=options.iters, amp_dtype=options.amp_dtype, count_gflop=False))
    with torch.no_grad():
        quantised = model(inputs)[0]["sem_seg"].argmax(0)
    return {
        **{f"int8_{name}_s": int8[f"{name}_s"] for name in int8["stages"]},
        "int8_total_per_image_s": int8["total_per_image_s"],
        "int8_time_ratio": int8["total_per_image_s"] / fp32["total_per_image_s"],
        "int8_argmax_agreement": (quantised == reference).double().mean().item(),
        "int8_linear_layers": len(layers),
    }


def _requery(model, inputs, args, total: float, device) -> dict:
    """The requery figures (:func:`frozenseg.apps.benchmark.requery_figures`, fast paths on,
    ``args.iters`` rounds) and their shares of ``total`` (the fast image time)."""
    model.set_fast_inference(True)
    return benchmark.requery_figures(model, inputs, benchmark.requery_vocabulary(args.requery_classes),
                                     iters=args.iters, device=device, total_per_image_s=total)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(args.config_file, args.opts, device=args.device, threads=args.threads)
    configure_cpu_process(cfg)
    device = torch.device(args.device)
    model = build_model(cfg).eval()
    classes = vocabulary(args.num_classes)
    model.set_vocabulary(classes)
    with torch.no_grad():  # the vocabulary encoded afresh (no cache), timed on its own
        text_s = benchmark.timed(lambda: model.encode_vocabulary(cached=False), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    image = torch.randint(0, 256, (3, args.height, args.width), dtype=torch.uint8)
    options = benchmark.BenchmarkOptions(
        warmup=args.warmup, iters=args.iters, compare_upstream=args.compare_upstream,
        amp_dtype=AMP_DTYPES[args.amp],
    )
    inputs = [{"image": image, "height": args.height, "width": args.width}]
    figures = benchmark.benchmark_model(model, inputs, options)
    if args.requery_classes:
        figures.update(_requery(model, inputs, args, figures["total_per_image_s"], device))
    if args.int8:
        figures.update(_int8_figures(model, inputs, options, figures))
    memory, memory_kind = benchmark.peak_memory_mb(device)
    result = {
        "config": args.config_file,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "amp": args.amp or "fp32",
        "input": [args.height, args.width],
        "num_classes": args.num_classes,
        "text_classifier_s": text_s,
        "text_classifier_s_per_class": text_s / args.num_classes,
        **figures,
        "peak_memory_mb": memory,
        "peak_memory_kind": memory_kind,
    }
    logger.info("fp32 matmul rate: %.1f GFLOP/s; %s", result["matmul_gflops"], result["device"])
    logger.info("%-16s %9s %9s %10s %12s", "stage", "seconds", "GFLOP", "efficiency",
                "upstream s" if args.compare_upstream else "")
    for name in result["stages"]:
        logger.info("%-16s %9s %9s %10s %12s", name, _fmt(result[f"{name}_s"]), _fmt(result[f"{name}_gflop"]),
                    _fmt(result[f"{name}_efficiency"]), _fmt(result.get(f"upstream_{name}_s", "")))
    logger.info("%-16s %9s %9s %10s %12s", "total per image", _fmt(result["total_per_image_s"]), "", "",
                _fmt(result.get("upstream_total_per_image_s", "")))
    for key in ("sam_encoder_floor_s", "clip_on_crops_floor_s", "speedup_vs_upstream",
                "upstream_sem_seg_argmax_agreement", "upstream_sem_seg_max_rel_diff",
                "requery_classes", "requery_synonyms", "requery_per_image_s", "requery_share",
                "requery_cached_text_per_image_s", "requery_cached_text_share", "requery",
                "text_classifier_s", "peak_memory_mb",
                "int8_total_per_image_s", "int8_sam_encoder_s", "int8_clip_backbone_s", "int8_time_ratio",
                "int8_argmax_agreement", "int8_linear_layers"):
        if key in result:
            logger.info("%-28s %s", key, _fmt(result[key]))
    if args.json:
        with atomic_write(args.json, mode="w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    with exit_on_user_error("benchmark.py"):
        main()
