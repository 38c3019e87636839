"""Synthetic datasets for the data tests: written once per session under a temporary root,
prepared with the real prepare scripts, and registered there; the default registration is
restored afterwards."""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (os.path.join(REPO, "datasets"), os.path.join(REPO, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)


def prepare_module(name: str):
    """Import ``datasets/<name>.py``."""
    return importlib.import_module(name)


def write_lvis(root: str) -> None:
    """A tiny LVIS v1 json (COCO url naming, categories with synonyms) over the COCO images."""
    os.makedirs(os.path.join(root, "lvis"), exist_ok=True)
    for split in ("train", "val"):
        with open(os.path.join(root, "coco", "annotations", f"instances_{split}2017.json")) as f:
            coco = json.load(f)
        imgs = [{"id": im["id"], "height": im["height"], "width": im["width"],
                 "coco_url": f"http://images.cocodataset.org/{split}2017/{im['file_name']}",
                 "not_exhaustive_category_ids": [], "neg_category_ids": [3]} for im in coco["images"]]
        cats = [{"id": c["id"], "name": c["name"].replace(" ", "_"), "synonyms": [c["name"].replace(" ", "_"), f"{c['name']}_thing"],
                 "frequency": "r"} for c in coco["categories"]]
        anns = [{k: v for k, v in a.items() if k != "iscrowd"} for a in coco["annotations"]]
        with open(os.path.join(root, "lvis", f"lvis_v1_{split}.json"), "w") as f:
            json.dump({"images": imgs, "annotations": anns, "categories": cats}, f)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    import make_synthetic_dataset as msd

    from frozenseg.data import register_all_builtin

    root = str(tmp_path_factory.mktemp("datasets"))
    msd.main(["all", "--root", root, "--num-train", "3", "--num-val", "2", "--seed", "0"])
    for name in ("prepare_ade20k_sem_seg", "prepare_ade20k_pan_seg", "prepare_ade20k_ins_seg",
                 "prepare_ade20k_full_sem_seg", "prepare_bdd_panoptic",
                 "prepare_coco_semantic_annos_from_panoptic_annos", "prepare_pascal_voc_sem_seg",
                 "prepare_pascal_ctx_sem_seg"):
        prepare_module(name).convert(root)
    write_lvis(root)
    register_all_builtin(root)
    yield root
    register_all_builtin()
