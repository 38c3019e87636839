#!/usr/bin/env python
"""Write COCO Captions files for the synthetic shapes dataset: the input of
``tools/mine_mask_noun_pairs.py`` in the CPU-sized run of OVSeg's stages B1-C
(docs/getting_started.md, "OVSeg's stages B1-C on a CPU").

Each image gets one caption naming its things (counted, in class order) and its stuff (largest
area first), read from the image's panoptic segments, e.g. "Two circles and a star with water
and sky." Outputs, under ``<root>/synthetic_shapes/``:

* ``{train,val}/captions.json``: COCO Captions (``images`` with ``id``, ``file_name`` relative to
  ``{train,val}/images/``, ``height``, ``width``; ``annotations`` with ``id``, ``image_id``,
  ``caption``);
* ``nouns.txt``: the class names, one per line, for ``--extra-nouns`` (the shipped noun
  vocabulary lacks "circle" and "square").

A missing shapes dataset is generated first, with the size and seed of its first use by
``train_net.py`` (240 training and 60 validation images, seed 0). Usage::

    python tools/make_synthetic_captions.py --root datasets
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter

from frozenseg.utils.cli import DefaultsHelpFormatter
from frozenseg.utils.file_io import atomic_write

logger = logging.getLogger("make_synthetic_captions")

_NUMBERS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _count(name: str, n: int) -> str:
    word = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"{word} {name}" if n == 1 else f"{word} {name}s"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(segments: list[dict], categories: dict[int, dict]) -> str:
    """The caption of one image from its panoptic ``segments_info`` (module doc)."""
    things = Counter(s["category_id"] for s in segments if categories[s["category_id"]]["isthing"])
    stuff = sorted((s for s in segments if not categories[s["category_id"]]["isthing"]), key=lambda s: -s["area"])
    thing_words = [_count(categories[c]["name"], things[c]) for c in sorted(things)]
    stuff_words = list(dict.fromkeys(categories[s["category_id"]]["name"] for s in stuff))
    if thing_words and stuff_words:
        text = f"{_join(thing_words)} with {_join(stuff_words)}"
    else:
        text = _join(thing_words or stuff_words or ["nothing"])
    return text[0].upper() + text[1:] + "."


def write_captions(dataset_dir: str) -> dict[str, int]:
    """Write ``captions.json`` of each split and ``nouns.txt`` under ``dataset_dir``
    (``.../synthetic_shapes``); returns the number of images captioned per split."""
    counts, names = {}, {}
    for split in ("train", "val"):
        with open(os.path.join(dataset_dir, split, "panoptic.json"), encoding="utf-8") as f:
            panoptic = json.load(f)
        categories = {c["id"]: c for c in panoptic["categories"]}
        names.update((c["id"], c["name"]) for c in panoptic["categories"])
        segments = {a["image_id"]: a["segments_info"] for a in panoptic["annotations"]}
        images = [{k: img[k] for k in ("id", "file_name", "height", "width")} for img in panoptic["images"]]
        annotations = [
            {"id": k + 1, "image_id": img["id"], "caption": caption(segments.get(img["id"], []), categories)}
            for k, img in enumerate(images)
        ]
        path = os.path.join(dataset_dir, split, "captions.json")
        with atomic_write(path, "w") as f:
            json.dump({"info": {"description": "synthetic shapes captions"}, "images": images,
                       "annotations": annotations}, f)
        counts[split] = len(images)
        logger.info("Wrote %s (%d images, e.g. %r).", path, len(images), annotations[0]["caption"] if annotations else "")
    with atomic_write(os.path.join(dataset_dir, "nouns.txt"), "w") as f:
        f.write("".join(f"{names[i]}\n" for i in sorted(names)))
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    ap.add_argument("--root", default=os.getenv("DETECTRON2_DATASETS", "datasets"),
                    help="the datasets folder (the shapes dataset is <root>/synthetic_shapes; "
                         "default: $DETECTRON2_DATASETS, else datasets)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset_dir = os.path.join(args.root, "synthetic_shapes")
    if not all(os.path.isfile(os.path.join(dataset_dir, s, "panoptic.json")) for s in ("train", "val")):
        from frozenseg.data import synthetic

        logger.info("No shapes dataset under %s: generating it (%d train / %d val images, seed 0).", args.root,
                    synthetic.SHAPES_NUM_TRAIN, synthetic.SHAPES_NUM_VAL)
        synthetic.make_shapes(args.root, 0, synthetic.SHAPES_NUM_TRAIN, synthetic.SHAPES_NUM_VAL)
    write_captions(dataset_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
