#!/usr/bin/env python
"""Peak memory of the predictor on one large photo with a large vocabulary.

Each case runs in a fresh process: build the predictor (model + the vocabulary's text
embeddings), reset the peak resident set size (Linux ``/proc/self/clear_refs``), segment one
synthetic photo of the given size, and report the peak RSS of the whole process while segmenting the
image, with the resident memory before it and what a full (K, H, W) float32 semantic map alone
would take::

    python tools/memory_benchmark.py --config-file configs/tiny/frozenseg_tiny_convnext.yaml \\
        --vocabulary openvocab_lvis_v1_val --size 4000x3000 --task panoptic semantic instance

``--vocabulary`` is a registered dataset's name, ``default`` (the demo's default vocabulary) or
a number N (N made-up class names). ``--json FILE`` writes the rows. Memory only: the times
printed are for orientation, not benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from frozenseg.utils.cli import int_at_least  # noqa: E402

GIB = 2**30


def _peak_rss_bytes() -> int:
    """VmHWM of this process (peak resident set size since start or the last reset), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _vocabulary(spec: str) -> list[str]:
    from frozenseg.data import dataset_vocabulary
    from frozenseg.data.vocabulary_sources import default_vocabulary

    if spec.isdigit():
        return [f"made-up class {i}" for i in range(int(spec))]
    if spec == "default":
        return list(default_vocabulary().class_names)
    return list(dataset_vocabulary(spec))


def _photo(width: int, height: int):
    """A smooth random RGB uint8 (height, width, 3) image: blobs of colour, like a photo's regions."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 12, 16, generator=g) * 255
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    return np.ascontiguousarray(image.permute(1, 2, 0).round().to(torch.uint8).numpy())


def child(args) -> dict:
    import torch

    from frozenseg.engine.predictor import SegmentationPredictor

    torch.set_num_threads(args.threads)
    width, height = args.size
    names = _vocabulary(args.vocabulary)
    t0 = time.perf_counter()
    predictor = SegmentationPredictor.from_config_file(args.config_file, opts=args.opts, vocabulary=names,
                                                       task=args.task)
    build_s = time.perf_counter() - t0
    photo = _photo(width, height)
    model_peak = _peak_rss_bytes()
    _reset_peak_rss()
    before = _peak_rss_bytes()
    t0 = time.perf_counter()
    pred = predictor(photo)
    image_s = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    return {
        "config": args.config_file, "task": args.task, "vocabulary": args.vocabulary, "classes": len(names),
        "width": width, "height": height, "segments": len(pred.segments),
        "peak_rss_gib": round(max(peak, model_peak) / GIB, 3),
        "image_peak_rss_gib": round(peak / GIB, 3),
        "before_image_rss_gib": round(before / GIB, 3),
        "full_semantic_map_gib": round(4 * len(names) * width * height / GIB, 2),
        "build_s": round(build_s, 1), "image_s": round(image_s, 1), "threads": args.threads,
    }


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"the size must be at least 1x1, got {text!r}")
    return w, h


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config-file", default="configs/tiny/frozenseg_tiny_convnext.yaml", metavar="FILE")
    p.add_argument("--vocabulary", default="default", help="a registered dataset, 'default', or a number of classes")
    p.add_argument("--size", type=_size, default=(1920, 1080), metavar="WxH", help="the photo's size in pixels")
    p.add_argument("--task", nargs="+", default=["panoptic"], choices=["panoptic", "semantic", "instance"])
    p.add_argument("--threads", type=int_at_least(1), default=2, help="torch threads")
    p.add_argument("--json", metavar="FILE", help="also write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.child:
        args.task = args.task[0]
        print(json.dumps(child(args)))
        return 0
    rows = []
    for task in args.task:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--config-file", args.config_file,
               "--vocabulary", args.vocabulary, "--size", f"{args.size[0]}x{args.size[1]}", "--task", task,
               "--threads", str(args.threads), *args.opts]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            tail = run.stderr.strip().splitlines()[-1:] or ["(no output)"]
            print(f"{task}: the measuring process failed (exit {run.returncode}): {tail[0]}", file=sys.stderr)
            return 1
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{task:9s} {r['classes']:5d} classes {r['width']}x{r['height']}: peak RSS {r['peak_rss_gib']:.2f} GiB "
              f"({r['before_image_rss_gib']:.2f} GiB before the image; a full semantic map alone would be "
              f"{r['full_semantic_map_gib']:.1f} GiB), {r['segments']} segments, {r['image_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
