#!/usr/bin/env python
"""Mine (masked crop, mask, noun) pairs from COCO Captions with a trained OVSeg (docs/models/ovseg.md §3.B1), the
training data of the CLIP adaptation (``tools/train_clip_adapter.py``).

For each image (one caption by default, the release's "1cap" data), the trained proposal
generator's valid proposals are cut exactly as OVSeg's CLIP sees them, the caption's nouns are
extracted offline, and each noun is matched to a proposal with OVSeg's CLIP by this project's
rule (the release never published its own; every threshold is a flag). The rule:
:mod:`frozenseg.models.ovseg.adaptation.pair_mining`; the nouns: :mod:`frozenseg.models.ovseg.adaptation.caption_nouns`; the output
format (PNG crops with the release's fill (124, 116, 103), PNG masks, OpenCLIP's tab-separated
``pairs.tsv``): :mod:`frozenseg.models.ovseg.adaptation.mask_noun_pairs`. Resumable and shardable like
``tools/save_sam_masks.py``. Exit status: 0 ok, 1 some images failed, 2 usage error.

Example::

    python tools/mine_mask_noun_pairs.py --config-file configs/ovseg/ovseg_swinB_vitL_bs32_120k.yaml \\
        --captions datasets/coco/annotations/captions_train2017.json --image-root datasets/coco/train2017 \\
        --output output/coco_proposal_1cap MODEL.WEIGHTS output/ovseg_swinB/model_final.pth
    # 8 GPUs (one shard each; the last shard to finish writes pairs.tsv):
    torchrun --nproc_per_node 8 tools/mine_mask_noun_pairs.py ... (same arguments)
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import torch

from frozenseg.data.dataset_mappers.test_mapper import TestDatasetMapper
from frozenseg.data.sharded_jobs import default_device, resolve_shard
from frozenseg.engine.setup import build_inference_model, load_config
from frozenseg.modeling.build import meta_arch_class
from frozenseg.models.ovseg.adaptation.caption_nouns import NOUN_BACKENDS, NounExtractorUnavailable, build_noun_extractor
from frozenseg.models.ovseg.adaptation.mask_noun_pairs import load_coco_captions, write_pair_index
from frozenseg.models.ovseg.adaptation.pair_mining import EMPTY_WEIGHTS_WARNING, MatchingRule, mine_pairs, require_ovseg
from frozenseg.utils.cli import DefaultsHelpFormatter
from frozenseg.utils.errors import UserInputError

logger = logging.getLogger("mine_mask_noun_pairs")


def get_parser() -> argparse.ArgumentParser:
    rule = MatchingRule()
    p = argparse.ArgumentParser(
        description="Mine mask-noun pairs from COCO Captions with a trained OVSeg (docs/models/ovseg.md §3.B1).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--config-file", required=True, help="the OVSeg config of the trained proposal generator")
    p.add_argument("--captions", required=True, help="COCO Captions json (annotations/captions_train2017.json)")
    p.add_argument("--image-root", required=True, help="folder of its images (train2017/)")
    p.add_argument("--output", required=True, help="output folder (crops/, masks/, records/, pairs.tsv)")
    p.add_argument("--captions-per-image", type=int, default=1, help="first N captions per image; 0 = all")
    p.add_argument("--noun-backend", choices=NOUN_BACKENDS, default="vocabulary",
                   help="vocabulary: shipped noun list, no downloads; nltk: NLTK's tagger (needs its data); "
                        "auto: nltk when available")
    p.add_argument("--extra-nouns", default=None, help="file of extra vocabulary nouns, one per line")
    g = p.add_argument_group("matching rule (this project's; see frozenseg/models/ovseg/adaptation/pair_mining.py)")
    g.add_argument("--min-similarity", type=float, default=rule.min_similarity, help="CLIP cosine a match needs")
    g.add_argument("--margin", type=float, default=rule.margin, help="over the noun's second-best proposal")
    g.add_argument("--min-score", type=float, default=rule.min_score, help="proposal objectness 1 - p(no-object)")
    g.add_argument("--shared-proposals", action="store_true",
                   help="let several nouns of a caption take the same proposal (default: the most similar noun)")
    r = p.add_argument_group("run")
    r.add_argument("--device", default=None, help="torch device (default: cuda[:LOCAL_RANK] if available, else cpu)")
    r.add_argument("--overwrite", action="store_true", help="recompute images that are already done")
    r.add_argument("--index-only", action="store_true", help="only (re)write pairs.tsv from the records")
    r.add_argument("--num-shards", type=int, default=None, help="default: $WORLD_SIZE or 1")
    r.add_argument("--shard-id", type=int, default=None, help="default: $RANK or 0")
    r.add_argument("--max-images", type=int, default=None, help="process at most N images of the shard")
    r.add_argument("--log-every", type=int, default=50, help="progress line every N images")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=None,
                   help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 some images failed, 2 usage error)."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.index_only:
            path, count = write_pair_index(args.output)
            logger.info("Wrote %s (%d pairs).", path, count)
            return 0
        num_shards, shard_id = resolve_shard(args.num_shards, args.shard_id)
        dataset = load_coco_captions(args.captions, args.image_root, args.captions_per_image)
        extractor = build_noun_extractor(args.noun_backend, args.extra_nouns)
        cfg = load_config(args.config_file, list(args.opts or []), device=args.device or default_device())
        require_ovseg(meta_arch_class(cfg), args.config_file)
        if not cfg.MODEL.WEIGHTS:
            logger.warning(EMPTY_WEIGHTS_WARNING)
        model = build_inference_model(cfg)
        mapper = TestDatasetMapper.from_config(cfg)
        rule = MatchingRule(args.min_similarity, args.margin, not args.shared_proposals, args.min_score)
        info = {
            "captions": args.captions, "captions_per_image": args.captions_per_image,
            "noun_backend": extractor.name, "config_file": args.config_file, "weights": cfg.MODEL.WEIGHTS,
            "clip_model": cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME, "mask_thr": cfg.MODEL.CLIP_ADAPTER.MASK_THR,
            "mask_prompt_fwd": cfg.MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD,
            "input_size": [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST],
        }
        with torch.no_grad():
            summary = mine_pairs(
                dataset, model, args.output, extract_nouns=extractor,
                resize=lambda image: mapper.resize(image, strict=False), rule=rule, num_shards=num_shards,
                shard_id=shard_id, overwrite=args.overwrite, max_images=args.max_images, log_every=args.log_every,
                info=info,
            )
    except (KeyError, ValueError, FileNotFoundError, NounExtractorUnavailable, UserInputError) as e:
        logger.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
