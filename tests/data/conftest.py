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
    """Tiny LVIS v1 jsons over the COCO images (COCO url naming; the 1203 LVIS categories; the
    annotations are COCO's, whose ids 1..90 are valid LVIS ids) and the test-dev/challenge image
    lists over copies of the val images in ``coco/test2017``."""
    import shutil

    from frozenseg.data.released import released_categories

    cats = [dict(c, synonyms=[c["name"]], frequency="r") for c in released_categories("openvocab_lvis_v1_val")]
    os.makedirs(os.path.join(root, "lvis"), exist_ok=True)
    for split in ("train", "val"):
        with open(os.path.join(root, "coco", "annotations", f"instances_{split}2017.json")) as f:
            coco = json.load(f)
        imgs = [{"id": im["id"], "height": im["height"], "width": im["width"],
                 "coco_url": f"http://images.cocodataset.org/{split}2017/{im['file_name']}",
                 "not_exhaustive_category_ids": [], "neg_category_ids": [3]} for im in coco["images"]]
        anns = [{k: v for k, v in a.items() if k != "iscrowd"} for a in coco["annotations"]]
        with open(os.path.join(root, "lvis", f"lvis_v1_{split}.json"), "w") as f:
            json.dump({"images": imgs, "annotations": anns, "categories": cats}, f)
    os.makedirs(os.path.join(root, "coco", "test2017"), exist_ok=True)
    for im in coco["images"]:
        shutil.copy(os.path.join(root, "coco", "val2017", im["file_name"]), os.path.join(root, "coco", "test2017"))
    for part in ("dev", "challenge"):
        with open(os.path.join(root, "lvis", f"lvis_v1_image_info_test_{part}.json"), "w") as f:
            json.dump({"images": [{k: im[k] for k in ("id", "height", "width", "file_name")} for im in coco["images"]],
                       "categories": cats}, f)


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
