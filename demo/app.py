#!/usr/bin/env python
"""FrozenSeg web demo: upload an image, type what to look for, see the segmentation.

Examples::

    # the tiny random model (no downloads), on http://127.0.0.1:7860
    python demo/app.py

    # a released model on a GPU, reachable from other machines (no authentication!)
    python demo/app.py --config-file configs/coco/frozenseg/convnext_large_eval_ade20k.yaml \\
        --host 0.0.0.0 --port 7860 \\
        --opts MODEL.WEIGHTS frozenseg_convnext_large.pth MODEL.DEVICE cuda

The page is :mod:`frozenseg.apps.web_demo` over
:class:`frozenseg.engine.predictor.SegmentationPredictor`; ``docs/demo.md`` documents it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from frozenseg.engine.env import setup_logger
from frozenseg.engine.launch import configure_cpu_process
from frozenseg.engine.predictor import TASKS, SegmentationPredictor
from frozenseg.apps.web_demo import MAX_SIDE, WebDemo, serve
from frozenseg.utils.cli import file_size, memory_size
from frozenseg.utils.errors import UserInputError

logger = logging.getLogger("frozenseg.demo")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, os.pardir, "configs", "tiny", "frozenseg_tiny_convnext.yaml")
#: The example rows of the page: (image, vocabulary, task); the images are synthetic shapes scenes.
EXAMPLES = (
    (os.path.join(HERE, "examples", "shapes_sky_grass.png"), "sky; grass; square,box; triangle", "panoptic"),
    (os.path.join(HERE, "examples", "shapes_water.png"), "water; square,box; triangle", "semantic"),
)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="FrozenSeg web demo (a Gradio page).",
        epilog="Vocabulary on the page: classes separated by ';', synonyms by ',', e.g. \"cat,kitten; dog; grass\".",
    )
    p.add_argument("--config-file", default=os.path.normpath(DEFAULT_CONFIG), metavar="FILE",
                   help="a config file (default: the tiny random test model, configs/tiny/frozenseg_tiny_convnext.yaml)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--task", choices=TASKS, default="panoptic", help="the task selected when the page opens")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, metavar="PIXELS",
                   help=f"uploads with a longer side are resized to it (default {MAX_SIDE})")
    p.add_argument("--queue-size", type=int, default=16,
                   help="requests that may wait for the model; more are refused (default 16)")
    p.add_argument("--max-file-size", default="50mb", type=file_size, help="largest upload, e.g. 20mb (default 50mb)")
    p.add_argument("--memory-budget", type=memory_size, default=None, metavar="SIZE",
                   help="memory one request may need, e.g. 6gb; a request estimated above it is refused "
                        "(default: 80%% of the memory available when the demo starts)")
    p.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[],
        help="config overrides as KEY VALUE pairs, last on the command line, e.g. MODEL.WEIGHTS model.pth MODEL.DEVICE cuda",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Build the model once and serve the page until interrupted. Returns 2 when the model cannot
    be built (a config, weights or device problem) or the address cannot be served, reported in
    one line."""
    args = get_parser().parse_args(argv)
    setup_logger(names=("frozenseg",))
    try:
        predictor = SegmentationPredictor.from_config_file(args.config_file, opts=args.opts,
                                                           vocabulary=["object"], task="semantic")
        configure_cpu_process(predictor.cfg)
        demo = WebDemo(predictor, max_side=args.max_side, memory_budget=args.memory_budget)
    except (UserInputError, FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "CUDA" not in str(e):  # only the device's errors are the user's
            raise
        logger.error("Cannot start the web demo: %s", e)
        return 2
    # SIGTERM (a service manager, ``kill``) ends the server like Ctrl-C: the results folder of
    # this process is removed on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        serve(demo, examples=EXAMPLES, task=args.task, host=args.host, port=args.port,
              queue_size=args.queue_size, max_file_size=args.max_file_size)
    except OSError as e:  # the port is taken, the address is not this machine's
        logger.error("Cannot serve on %s:%d: %s; choose another --port or --host.", args.host, args.port, e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
