#!/usr/bin/env python
"""Adapt OVSeg's CLIP to masked images on mined mask-noun pairs (docs/models/ovseg.md §3.B2-3.B3): contrastive
training with the text tower locked, either fine-tuning the whole image tower
(``--mode finetune``) or learning only the mask prompts ``visual.mask_embedding``
(``--mode mask_prompt``). Defaults are the release's (lr 5e-6 / 0.05, AdamW (0.9, 0.98) eps 1e-6,
wd 0.2 / 0, 100 warm-up steps then cosine, 5 epochs, 32 pairs per process). The engine and every
rule: :mod:`frozenseg.models.ovseg.adaptation.clip_training`. Output: ``<output>/clip_final.pth``, a CLIP state
dict in OpenAI key names that ``MODEL.CLIP_ADAPTER.CLIP_WEIGHTS`` loads (or splice it into an
OVSeg checkpoint with ``tools/ovseg_replace_clip.py``). Exit status: 0 ok, 2 usage error.

Example (the release's two stages, 4 GPUs)::

    torchrun --nproc_per_node 4 tools/train_clip_adapter.py --mode finetune \\
        --pairs output/coco_proposal_1cap/pairs.tsv --output output/clip_ft --clip-model ViT-L/14 --amp
    torchrun --nproc_per_node 4 tools/train_clip_adapter.py --mode mask_prompt \\
        --pairs output/coco_proposal_1cap/pairs.tsv --output output/clip_ft_mpt \\
        --clip-weights output/clip_ft/clip_final.pth --amp
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import torch

from frozenseg.models.ovseg.adaptation.clip_training import MODES, AdaptationSettings, CLIPAdaptationTrainer, setup_run
from frozenseg.engine.launch import launch
from frozenseg.utils import comm
from frozenseg.utils.cli import DefaultsHelpFormatter
from frozenseg.utils.errors import exit_on_user_error

logger = logging.getLogger("train_clip_adapter")


def get_parser() -> argparse.ArgumentParser:
    d = AdaptationSettings("finetune")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--mode", choices=MODES, required=True,
                   help="finetune: the whole image tower; mask_prompt: only visual.mask_embedding")
    p.add_argument("--pairs", required=True, help="pair index: pairs.tsv of tools/mine_mask_noun_pairs.py (or an OpenCLIP CSV)")
    p.add_argument("--output", required=True, help="checkpoints, clip_final.pth, logs, metrics.json, TensorBoard")
    p.add_argument("--clip-model", default=d.clip_model, help="ViT-L/14, ViT-B/16 or an open_clip ViT name")
    p.add_argument("--clip-weights", default=d.clip_weights,
                   help="starting weights: a tag ('openai'), a file (e.g. a finetune run's clip_final.pth, or an OVSeg "
                        "checkpoint such as stage A's model_final.pth: its CLIP), or '' (random)")
    p.add_argument("--mask-prompt-depth", type=int, default=d.mask_prompt_depth,
                   help="image-encoder blocks with mask prompts")
    p.add_argument("--lr", type=float, default=None, help="default: 5e-6 (finetune), 0.05 (mask_prompt)")
    p.add_argument("--wd", type=float, default=None, help="default: 0.2 (finetune), 0 (mask_prompt)")
    p.add_argument("--beta1", type=float, default=d.betas[0], help="AdamW beta1")
    p.add_argument("--beta2", type=float, default=d.betas[1], help="AdamW beta2")
    p.add_argument("--eps", type=float, default=d.eps, help="AdamW epsilon")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warm-up steps")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the pairs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per process")
    p.add_argument("--workers", type=int, default=d.workers, help="data-loading processes per training process")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the data order and augmentation")
    p.add_argument("--amp", action="store_true", help="mixed precision (fp16 + gradient scaler on CUDA)")
    p.add_argument("--amp-dtype", default=d.amp_dtype, choices=("float16", "bfloat16"), help="autocast type with --amp")
    p.add_argument("--log-period", type=int, default=d.log_period, help="steps between log lines")
    p.add_argument("--resume", action="store_true", help="continue from the newest epoch checkpoint in --output")
    p.add_argument("--device", default=None, help="default: cuda:<local rank> when available, else cpu")
    p.add_argument("--num-gpus", type=int, default=1, help="processes on this machine (ignored under torchrun)")
    p.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    p.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine")
    p.add_argument("--dist-url", default="auto",
                   help="torch.distributed rendezvous ('auto': a free local port, one machine)")
    return p


def settings_from_args(args) -> AdaptationSettings:
    return AdaptationSettings(
        mode=args.mode, clip_model=args.clip_model, clip_weights=args.clip_weights,
        mask_prompt_depth=args.mask_prompt_depth, lr=args.lr, weight_decay=args.wd, betas=(args.beta1, args.beta2),
        eps=args.eps, warmup_steps=args.warmup, epochs=args.epochs, batch_size=args.batch_size, workers=args.workers,
        seed=args.seed, amp=args.amp, amp_dtype=args.amp_dtype, log_period=args.log_period,
    )


def run(args) -> str:
    """One process's training; returns the path of clip_final.pth."""
    setup_run(args.output)
    logger.info("Command line arguments: %s", args)
    device = args.device or (f"cuda:{comm.get_local_rank()}" if torch.cuda.is_available() else "cpu")
    trainer = CLIPAdaptationTrainer(settings_from_args(args), args.pairs, args.output, device=device, resume=args.resume)
    return trainer.train()


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    with exit_on_user_error("train_clip_adapter.py"):
        settings_from_args(args)  # refuse bad settings before launching processes
        launch(run, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
