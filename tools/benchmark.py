#!/usr/bin/env python
"""Time FrozenSeg inference per stage on a fixed-size input.

Builds the model from a config (random weights unless the config points to real ones), warms
up, then times inference of one image and reports seconds per image for the text classifier,
the SAM encoder, the CLIP backbone, the decoder (pixel decoder + transformer decoder) and the
rest (CLIP mask classification, ensemble and post-processing), plus peak memory.

Example:
    python tools/benchmark.py --config-file configs/coco/frozenseg/convnext_large_eval_ade20k.yaml \
        --device cpu --height 384 --width 512 --num-classes 6 \
        MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS "" MODEL.SAM_CHECKPOINT ""
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import statistics
import time
from collections import defaultdict

import torch

import frozenseg

logger = logging.getLogger("frozenseg.benchmark")

VOCABULARY = ["cat,kitten", "dog,puppy", "grass,lawn", "sky", "tree", "car,automobile", "person,people"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="model config (YAML)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to run on")
    p.add_argument("--amp", default="", choices=["", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--height", type=int, default=384, help="input height in pixels")
    p.add_argument("--width", type=int, default=512, help="input width in pixels")
    p.add_argument("--num-classes", type=int, default=6, help="vocabulary size (classes)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations")
    p.add_argument("--iters", type=int, default=3, help="timed iterations")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


class StageTimer:
    """Accumulates wall time of modules through forward pre/post hooks."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)
        self._start: dict[str, float] = {}
        self._handles = []

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def attach(self, name: str, module: torch.nn.Module):
        def pre(_m, _inp):
            self._sync()
            self._start[name] = time.perf_counter()

        def post(_m, _inp, _out):
            self._sync()
            self.totals[name] += time.perf_counter() - self._start.pop(name)

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def reset(self):
        self.totals.clear()


def vocabulary(n: int) -> list[str]:
    return [VOCABULARY[i] if i < len(VOCABULARY) else f"object number {i}" for i in range(n)]


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.DEVICE", args.device, "MODEL.FROZEN_SEG.TEXT_CACHE_DIR", "", *args.opts])
    device = torch.device(args.device)
    model = frozenseg.build_model(cfg)
    model.eval()
    timer = StageTimer(device)
    timer.attach("sam_encoder", model.sam)
    timer.attach("clip_backbone", model.backbone)
    timer.attach("decoder", model.sem_seg_head)

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    autocast = (
        torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )
    image = torch.randint(0, 256, (3, args.height, args.width), dtype=torch.uint8)
    inputs = [{"image": image, "height": args.height, "width": args.width}]
    classes = vocabulary(args.num_classes)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # Text classifier: a fresh (uncached) vocabulary, timed on its own.
    with torch.no_grad(), autocast:
        sync()
        t0 = time.perf_counter()
        model.text_classifier_builder.build(classes)
        sync()
        text_time = time.perf_counter() - t0
    model.set_vocabulary(classes)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals, stages = [], defaultdict(list)
    with torch.no_grad(), autocast:
        for i in range(args.warmup + args.iters):
            timer.reset()
            sync()
            t0 = time.perf_counter()
            model(inputs)
            sync()
            total = time.perf_counter() - t0
            if i >= args.warmup:
                totals.append(total)
                for k, v in timer.totals.items():
                    stages[k].append(v)
    med = {k: statistics.median(v) for k, v in stages.items()}
    total = statistics.median(totals)
    result = {
        "config": args.config_file,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "amp": args.amp or "fp32",
        "input": [args.height, args.width],
        "num_classes": args.num_classes,
        "text_classifier_s": text_time,
        "text_classifier_s_per_class": text_time / args.num_classes,
        "sam_encoder_s": med.get("sam_encoder", 0.0),
        "clip_backbone_s": med.get("clip_backbone", 0.0),
        "decoder_s": med.get("decoder", 0.0),
        "postprocess_s": total - sum(med.values()),
        "total_per_image_s": total,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "peak_memory_kind": "CUDA allocated" if device.type == "cuda" else "process max RSS",
    }
    for k, v in result.items():
        logger.info("%-28s %s", k, f"{v:.3f}" if isinstance(v, float) else v)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
