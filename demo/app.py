#!/usr/bin/env python
"""FrozenSeg web demo: upload an image, type what to look for, see the segmentation.

Examples::

    # released weights by name (downloaded once into the cache; the name picks its config), on
    # http://127.0.0.1:7860
    python demo/app.py --model frozenseg_convnext_large --opts MODEL.DEVICE cuda

    # your own model, reachable from other machines (no authentication!)
    python demo/app.py --config-file configs/coco/frozenseg/convnext_large_eval_ade20k.yaml \\
        --host 0.0.0.0 --port 7860 \\
        --opts MODEL.WEIGHTS /path/to/model_final.pth MODEL.DEVICE cuda

    # the tiny random test model (no weights, no downloads; its results are meaningless)
    python demo/app.py --tiny-random-model

Without one of ``--model``, ``--config-file`` and ``--tiny-random-model`` it stops with a usage
line listing the released names. The page is :mod:`frozenseg.apps.web_demo` over
:class:`frozenseg.engine.predictor.SegmentationPredictor`; ``docs/demo.md`` documents it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from frozenseg.apps.web_demo import MAX_SIDE, WebDemo, serve
from frozenseg.checkpoint.zoo import model_names
from frozenseg.engine.env import setup_logger
from frozenseg.engine.launch import configure_cpu_process
from frozenseg.engine.predictor import TASKS, SegmentationPredictor
from frozenseg.engine.setup import load_config, released_model_config
from frozenseg.utils.cli import file_size, memory_size
from frozenseg.utils.errors import UserInputError

logger = logging.getLogger("frozenseg.demo")

HERE = os.path.dirname(os.path.abspath(__file__))
#: The config of ``--tiny-random-model``.
TINY_CONFIG = os.path.normpath(os.path.join(HERE, os.pardir, "configs", "tiny", "frozenseg_tiny_convnext.yaml"))
#: The example rows of the page: (image, vocabulary, task). The images are 640x480 synthetic shapes
#: scenes (frozenseg.data.synthetic.make_scene with the shapes dataset's classes, stored as JPEG).
EXAMPLES = (
    (os.path.join(HERE, "examples", "shapes_sky_grass.jpg"), "sky; grass; square,box; triangle", "panoptic"),
    (os.path.join(HERE, "examples", "shapes_water.jpg"), "water; sand; circle,disc; star", "semantic"),
)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="FrozenSeg web demo (a Gradio page).",
        epilog="Vocabulary on the page: classes separated by ';', synonyms by ',', e.g. \"cat,kitten; dog; grass\" "
               "(OVSeg takes each class as one prompt, commas included).",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--model", default="", metavar="NAME",
        help=f"released weights by name ({', '.join(model_names())}): sets MODEL.WEIGHTS to it (downloaded "
             "once into the cache) and, without --config-file, uses its config")
    which.add_argument(
        "--tiny-random-model", action="store_true",
        help="serve the tiny random test model (configs/tiny/frozenseg_tiny_convnext.yaml; no weights, no "
             "downloads) to try the page; its results are meaningless")
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="a config file: your own model (with --opts MODEL.WEIGHTS FILE), or with --model "
                        "another config for its weights")
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
        help="config overrides as KEY VALUE pairs, last on the command line, e.g. MODEL.DEVICE cuda",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: exactly one way to choose the model (a usage error otherwise)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    if not (args.model or args.config_file or args.tiny_random_model):
        parser.error(f"choose the model: --model NAME for released weights ({', '.join(model_names())}), "
                     "--config-file FILE for your own, or --tiny-random-model to try the page with a random "
                     "model whose results are meaningless")
    if args.tiny_random_model and (args.config_file or "MODEL.WEIGHTS" in args.opts[::2]):
        parser.error("--tiny-random-model has its own config and no weights; to serve trained weights give "
                     "--model NAME or --config-file FILE --opts MODEL.WEIGHTS FILE instead")
    return args


def build_demo(args: argparse.Namespace) -> WebDemo:
    """The service of the command line ``args``: the model built once (released weights fetched
    into the cache by name), as :class:`~frozenseg.apps.web_demo.WebDemo`."""
    if args.tiny_random_model:
        config_file, defaults = TINY_CONFIG, []
    else:
        config_file, defaults = released_model_config(args.model, args.config_file)
    cfg = load_config(config_file, list(args.opts), defaults=defaults)
    predictor = SegmentationPredictor(cfg, vocabulary=["object"], task="semantic")
    configure_cpu_process(predictor.cfg)
    demo = WebDemo(predictor, max_side=args.max_side, memory_budget=args.memory_budget,
                   tiny_random_model=args.tiny_random_model)
    if demo.random_weights_notice:
        logger.warning("%s", demo.random_weights_notice)
    arch = type(predictor.model).__name__
    logger.info("Serving %s with %s (config %s)", demo.model_name if arch == demo.model_name else
                f"{demo.model_name} ({arch})", f"weights {cfg.MODEL.WEIGHTS}" if cfg.MODEL.WEIGHTS else
                "random weights", config_file)
    return demo


def main(argv: list[str] | None = None) -> int:
    """Build the model once and serve the page until interrupted. Returns 2 when the model cannot
    be built (a config, weights or device problem) or the address cannot be served, reported in
    one line."""
    args = parse_args(argv)
    setup_logger(names=("frozenseg",))
    try:
        demo = build_demo(args)
    except (UserInputError, FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not isinstance(e, UserInputError) and "CUDA" not in str(e):
            raise  # only the device's errors are the user's
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
