#!/usr/bin/env python
"""Write small synthetic datasets in the real raw layouts, deterministically from a seed.

The generators are :mod:`frozenseg.data.synthetic` (see there for the layouts: shapes, coco,
ade, ade_full, cityscapes, voc, pcontext, mapillary, bdd, semantic); this is their command line. All are
written under ``--root`` (default ``$DETECTRON2_DATASETS`` or ``./datasets``). Usage::

    python tools/make_synthetic_dataset.py shapes --root datasets --num-train 64 --num-val 16
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from frozenseg.data.synthetic import MAKERS, make_layouts
from frozenseg.utils.cli import int_at_least


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("layouts", nargs="+", choices=sorted(MAKERS) + ["all"])
    ap.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-train", type=int_at_least(0), default=8)
    ap.add_argument("--num-val", type=int_at_least(0), default=4)
    args = ap.parse_args(argv)
    if os.path.exists(args.root) and not os.path.isdir(args.root):
        ap.error(f"--root {args.root!r} is a file; give a folder (it is created when missing)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_layouts(args.root, None if "all" in args.layouts else args.layouts, seed=args.seed,
                 num_train=args.num_train, num_val=args.num_val)
    return 0


if __name__ == "__main__":
    sys.exit(main())
