#!/usr/bin/env python
"""Cache SAM "everything" proposals of a registered dataset split for the SAM proposal ensemble.

For every image, the largest ``--max-masks`` automatic masks of SAM (with their mask logits,
predicted IoU and stability score) are written to ``<output>/<dataset>/<image id>.npz``. At
inference, ``TEST.USE_SAM_MASKS True`` with ``TEST.SAM_MASKS_DIR <output>`` makes the test mapper
attach them to the model input (docs/models/frozenseg.md §7.5). The defaults are the released settings; every
generator parameter is a flag.

How proposals and their logits are made: :mod:`frozenseg.modeling.sam.automatic`; the run loop
(resume, shards, failed images): :mod:`frozenseg.apps.sam_masks`; the file format:
:mod:`frozenseg.data.sam_mask_cache`. Exit status: 0 ok, 1 some images failed, 2 usage error.

Example::

    python tools/save_sam_masks.py --dataset openvocab_ade20k_panoptic_val \\
        --output output/sam_masks --sam-name vit_h \\
        --sam-checkpoint pretrained_checkpoint/sam_vit_h_4b8939.pth
    # the same, with the official file fetched once into the weights cache by name:
    python tools/save_sam_masks.py --dataset openvocab_ade20k_panoptic_val --sam-name vit_h \\
        --sam-checkpoint sam_vit_h
    # 4 GPUs:
    torchrun --nproc_per_node 4 tools/save_sam_masks.py --dataset ... --sam-checkpoint ...
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from frozenseg.data import DatasetCatalog
from frozenseg.data.sam_mask_cache import dataset_cache_dir
from frozenseg.apps.sam_masks import default_device, resolve_shard, save_sam_masks
from frozenseg.modeling.sam import VALID_SAM_NAMES, SAMCheckpointError, SAMSettings, load_sam
from frozenseg.modeling.sam.automatic import (
    RELEASED_GENERATOR_PARAMS,
    AutomaticMaskOptions,
    SamProposalSource,
)
from frozenseg.checkpoint.zoo import resolve_weights
from frozenseg.modeling.sam.checkpoint import default_checkpoint_path
from frozenseg.utils.cli import DefaultsHelpFormatter, int_at_least, run_device

logger = logging.getLogger("save_sam_masks")

#: The flags that choose the SAM, named in error messages.
CLI_SETTINGS = SAMSettings(name="--sam-name", checkpoint="--sam-checkpoint")
#: The generator settings exposed as flags (all but the cache's fixed output mode).
GENERATOR_FLAGS = tuple(k for k in RELEASED_GENERATOR_PARAMS if k != "output_mode")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Cache SAM automatic-mask proposals of a registered dataset (docs/models/frozenseg.md §7.5).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="registered dataset name, e.g. openvocab_ade20k_panoptic_val")
    p.add_argument("--output", default="output/sam_masks",
                   help="cache root (TEST.SAM_MASKS_DIR); files go to <output>/<dataset>/")
    p.add_argument("--sam-name", default="vit_h", choices=VALID_SAM_NAMES,
                   help="SAM variant (tiny: a small random SAM, no released weights)")
    p.add_argument("--sam-checkpoint", default=None,
                   help="SAM checkpoint: a path, or a released name (sam_vit_b, sam_vit_l, sam_vit_h; downloaded "
                        "once into the cache) (default pretrained_checkpoint/<official file>)")
    p.add_argument("--device", default=None, type=run_device,
                   help="torch device (default: cuda[:LOCAL_RANK] if available, else cpu)")
    g = p.add_argument_group("automatic mask generator (segment-anything)")
    for name in GENERATOR_FLAGS:  # --points-per-side etc., typed and defaulted by the released value
        default = RELEASED_GENERATOR_PARAMS[name]
        kind = int_at_least(1) if name == "points_per_side" else type(default)
        g.add_argument("--" + name.replace("_", "-"), type=kind, default=default)
    c = p.add_argument_group("cache")
    c.add_argument("--max-masks", type=int, default=50, help="keep the N largest masks per image")
    c.add_argument("--mask-size", type=int, default=256,
                   help="longest side of the stored logits (0: full image size)")
    c.add_argument("--logits", choices=("sam", "binary"), default="sam",
                   help="sam: recompute SAM's decoder logits of each kept mask; binary: ±placeholders")
    c.add_argument("--binary-logit", type=float, default=10.0, help="placeholder magnitude for --logits binary")
    c.add_argument("--overwrite", action="store_true", help="recompute images that are already cached")
    r = p.add_argument_group("sharding and progress")
    r.add_argument("--num-shards", type=int, default=None, help="default: $WORLD_SIZE or 1")
    r.add_argument("--shard-id", type=int, default=None, help="default: $RANK or 0")
    r.add_argument("--max-images", type=int, default=None, help="process at most N images of the shard")
    r.add_argument("--log-every", type=int, default=10, help="progress line every N images")
    r.add_argument("--seed", type=int, default=0, help="seed of a SAM without released weights (tiny)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 some images failed, 2 usage error)."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        num_shards, shard_id = resolve_shard(args.num_shards, args.shard_id)
        dataset_dicts = DatasetCatalog.get(args.dataset)
        device = args.device or default_device()
        checkpoint = (resolve_weights(args.sam_checkpoint, config_key="--sam-checkpoint", kind="sam")
                      if args.sam_checkpoint else default_checkpoint_path(args.sam_name))
        sam = load_sam(args.sam_name, checkpoint, device=device, seed=args.seed, settings=CLI_SETTINGS)
        options = AutomaticMaskOptions(
            generator={**{name: getattr(args, name) for name in GENERATOR_FLAGS}, "output_mode": "binary_mask"},
            max_masks=args.max_masks, mask_size=args.mask_size, logits=args.logits,
            binary_logit=args.binary_logit,
        )
        info = {"sam_name": args.sam_name, "sam_checkpoint": checkpoint,
                "seed": None if checkpoint else args.seed}
        source = SamProposalSource(sam, options, info=info)
        logger.info("SAM %s on %s; generator %s", args.sam_name, device, options.generator)
        summary = save_sam_masks(
            dataset_dicts, source, dataset_cache_dir(args.output, args.dataset), num_shards=num_shards,
            shard_id=shard_id, overwrite=args.overwrite, max_images=args.max_images, log_every=args.log_every,
            info={"dataset": args.dataset},
        )
    except (KeyError, ValueError, FileNotFoundError, ImportError, SAMCheckpointError) as e:
        logger.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    if source.low_match_count:
        logger.info(
            "%d kept masks match their recomputed SAM logits with IoU < 0.9 (typically masks that "
            "the generator's small-region clean-up changed); the stored logits are SAM's.",
            source.low_match_count,
        )
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
