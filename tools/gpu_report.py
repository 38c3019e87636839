#!/usr/bin/env python
"""The prepared GPU check: inference images/s (fp32, frozen encoders in
bf16, whole-forward bf16 autocast; test batch sizes 1 and 4), a full-model training step (fp32
and SOLVER.AMP bf16, with peak memory) and CUDA-vs-CPU parity (TF32 off) of the released
ConvNeXt-L + SAM vit_b configuration with random weights (nothing is downloaded). Writes
``report.json`` and ``report.md`` under --output-dir after every section; see
frozenseg/apps/gpu_report.py for what each figure is. Usage on a GPU machine::

    python tools/gpu_report.py --output-dir $OUT

and on a CPU, with the tiny model (a smoke test of every section)::

    python tools/gpu_report.py --device cpu --config-file configs/tiny/frozenseg_tiny_convnext.yaml \\
        --height 64 --width 80 --train-size 128 --images 2 --parity-height 64 --parity-width 80 \\
        MODEL.SAM_IMAGE_SIZE 128
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from frozenseg.apps.gpu_report import GpuReportOptions, run_gpu_report
from frozenseg.utils.errors import exit_on_user_error

RELEASED_CONFIG = "configs/coco/frozenseg/convnext_large_eval_ade20k.yaml"
OVSEG_CONFIG = "configs/ovseg/ovseg_swinB_vitL_bs32_120k.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    d = GpuReportOptions(config_file=RELEASED_CONFIG)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=RELEASED_CONFIG,
                   help="model config (the released ConvNeXt-L config, which the release also trains with)")
    p.add_argument("--output-dir", default=os.environ.get("OUT") or "gpu_report",
                   help="where report.json and report.md go (default: $OUT if set, else ./gpu_report)")
    p.add_argument("--device", default=d.device, help="cuda, cuda:N or cpu")
    p.add_argument("--height", type=int, default=d.height, help="inference input height, pixels")
    p.add_argument("--width", type=int, default=d.width, help="inference input width, pixels")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(d.batch_sizes), help="test batch sizes")
    p.add_argument("--num-classes", type=int, default=d.num_classes, help="vocabulary size of the eval sections")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed batches per inference variant")
    p.add_argument("--images", type=int, default=d.images, help="timed images per inference variant")
    p.add_argument("--train-size", type=int, default=d.train_size, help="side of the training crops, pixels")
    p.add_argument("--train-batch", type=int, default=d.train_batch, help="images per training step")
    p.add_argument("--train-warmup", type=int, default=d.train_warmup, help="untimed training steps per variant")
    p.add_argument("--train-steps", type=int, default=d.train_steps, help="timed training steps per variant")
    p.add_argument("--parity-height", type=int, default=d.parity_height, help="parity input height, pixels")
    p.add_argument("--parity-width", type=int, default=d.parity_width, help="parity input width, pixels")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help="time budget: sections (and variants) that would start later are skipped")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random weights and inputs")
    p.add_argument("--requery-classes", type=int, default=d.requery_classes,
                   help="classes of the new vocabulary of the requery section")
    p.add_argument("--ovseg-config-file", default=OVSEG_CONFIG, metavar="FILE",
                   help="OVSeg config of the ovseg section ('' skips it)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = GpuReportOptions(
        config_file=args.config_file, opts=tuple(args.opts), device=args.device, height=args.height,
        width=args.width, batch_sizes=tuple(args.batch_sizes), num_classes=args.num_classes,
        warmup=args.warmup, images=args.images, train_size=args.train_size, train_batch=args.train_batch,
        train_warmup=args.train_warmup, train_steps=args.train_steps, parity_height=args.parity_height,
        parity_width=args.parity_width, max_seconds=args.max_seconds, seed=args.seed,
        requery_classes=args.requery_classes, ovseg_config_file=args.ovseg_config_file,
    )
    with exit_on_user_error("gpu_report.py"):
        report = run_gpu_report(options, args.output_dir)
    failed = [n for n, s in report["sections"].items() if s["status"] != "ok"]
    logging.info("Wrote %s/report.json and report.md; sections not ok: %s", args.output_dir, failed or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
