#!/usr/bin/env python
"""Splice an adapted CLIP into an OVSeg checkpoint (docs/models/ovseg.md §3.C, the release's tool of the same
name): ``clip_adapter.clip_model.*`` of the checkpoint's model is replaced by the CLIP weights
(``clip_final.pth`` or an ``epoch_<k>.pt`` of ``tools/train_clip_adapter.py``, or any OpenCLIP
``{"state_dict"}`` checkpoint), ``visual.mask_embedding`` added when the CLIP has one; the result
is written atomically. A CLIP of another width or depth is refused. Rules:
:mod:`frozenseg.models.ovseg.adaptation.splice`. Exit status: 0 ok, 2 usage error.

Example::

    python tools/ovseg_replace_clip.py --ovseg output/ovseg_swinB/model_final.pth \\
        --clip output/clip_ft_mpt/clip_final.pth --output output/ovseg_swinB_ft_mpt.pth
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from frozenseg.models.ovseg.adaptation.splice import splice_clip_file
from frozenseg.utils.errors import exit_on_user_error


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Replace the CLIP of an OVSeg checkpoint (docs/models/ovseg.md §3.C).")
    p.add_argument("--ovseg", required=True, help="OVSeg checkpoint ({'model': ...} or a bare state dict)")
    p.add_argument("--clip", required=True, help="CLIP weights (clip_final.pth, epoch_<k>.pt, OpenCLIP checkpoint)")
    p.add_argument("--output", required=True, help="the new checkpoint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_user_error("ovseg_replace_clip.py"):
        splice_clip_file(args.ovseg, args.clip, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
