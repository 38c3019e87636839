#!/usr/bin/env python
"""Training and evaluation of every model of the package, FrozenSeg and OVSeg alike: the config's
``MODEL.META_ARCHITECTURE`` selects the model and its config keys (Detectron2's ``train_net.py``
conventions).

Train:          python train_net.py --config-file CONFIG [--num-gpus N] [KEY VALUE ...]
Resume:         python train_net.py --config-file CONFIG --resume
Evaluate:       python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model.pth
Released model: python train_net.py --model frozenseg_convnext_large --eval-only [KEY VALUE ...]
Multi-machine:  add --num-machines M --machine-rank R --dist-url tcp://<machine 0>:<port>
torchrun:       torchrun --nproc_per_node N train_net.py --config-file CONFIG

The default run trains the tiny model on the synthetic "shapes" dataset (generated on first use)
and evaluates it: ``python train_net.py --config-file configs/synthetic/frozenseg_tiny_shapes.yaml``.
See docs/getting_started.md.

``--model NAME`` names released weights (``tools/download_weights.py`` lists them): MODEL.WEIGHTS is
set to the name, whose file is downloaded once into the cache (``$FROZENSEG_CACHE``, default
``~/.cache/frozenseg``) and verified, and the name's config is used unless ``--config-file`` is given.

An error caused by the input (a missing file, a mistyped key or value, a file that is not a
checkpoint, ...) ends in one sentence on stderr and exit status 2; ``--debug`` (or
``FROZENSEG_DEBUG=1``) shows its traceback. Other failures keep their traceback (exit status 1).
"""

from __future__ import annotations

import logging
import os

import torch

from frozenseg.checkpoint import FrozenSegCheckpointer
from frozenseg.data.synthetic_setup import ensure_synthetic_datasets
from frozenseg.engine import (
    DefaultTrainer,
    build_inference_model,
    comm,
    default_argument_parser,
    default_setup,
    launch,
    merge_results,
    setup_cfg,
)
from frozenseg.utils.errors import DEBUG_ENV, exit_on_user_error

logger = logging.getLogger("train_net")


class Trainer(DefaultTrainer):
    """The trainer of every model; override the ``build_*`` class methods here to customise."""


def setup(args):
    """Config from the command line, frozen, with the run set up (logging, config.yaml, seed)."""
    cfg = setup_cfg(args)
    default_setup(cfg, args)
    return cfg


def main(args):
    """Train (and evaluate at the end), or only evaluate with ``--eval-only``."""
    cfg = setup(args)
    ensure_synthetic_datasets(cfg)
    if args.eval_only:
        # the file to evaluate: the last checkpoint of OUTPUT_DIR with --resume, else MODEL.WEIGHTS
        probe = FrozenSegCheckpointer(torch.nn.Identity(), save_dir=cfg.OUTPUT_DIR)
        weights = probe.get_checkpoint_file() if args.resume and probe.has_checkpoint() else cfg.MODEL.WEIGHTS
        model = build_inference_model(cfg, weights)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results = merge_results(results, Trainer.test_with_TTA(cfg, model))
        comm.synchronize()
        return results

    trainer = Trainer(cfg, resume=args.resume)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    """Parse ``argv`` and run :func:`main` in every process of the job."""
    args = default_argument_parser().parse_args(argv)
    logger.info("Command Line Args: %s", args)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # also seen by spawned processes
    with exit_on_user_error("train_net.py"):
        return launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )


if __name__ == "__main__":
    cli()
