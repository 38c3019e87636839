"""Synthetic datasets for the data tests: written once per session under a temporary root,
prepared with the real converters of the prepare scripts, and registered there; the default
registration is restored afterwards."""

from __future__ import annotations

import json
import os

import pytest

from frozenseg.data.prepare import ade20k, ade20k_full, bdd, coco, pascal

#: The conversions the synthetic raw layouts go through, in the order the scripts are run
PREPARE = (ade20k.convert_sem_seg, ade20k.convert_pan_seg, ade20k.convert_ins_seg, ade20k_full.convert,
           bdd.convert, coco.convert_panoptic_to_sem_seg, pascal.convert_voc_sem_seg, pascal.convert_ctx_sem_seg)


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


VOC20 = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
         "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
         "train", "tvmonitor"]


def write_fake_ovseg_repo(root, voc=VOC20):
    """An ov-seg-like checkout under ``root`` (a Path): the registration files with class lists of
    the right lengths in the forms the release uses (dicts with "name", tuples of strings), next
    to unrelated code. Returns ``root``."""
    d = root / "open_vocab_seg" / "data" / "datasets"
    d.mkdir(parents=True)
    full = [{"name": f"thing {i}, alias", "id": i, "trainId": i} for i in range(847)]
    (d / "register_ade20k_full.py").write_text(
        f"import os\nADE20K_SEM_SEG_FULL_CATEGORIES = {full!r}\n\ndef register(root):\n    return os.path.join(root)\n")
    (d / "register_pascal_context.py").write_text(
        f"PASCALCONTEX59_NAMES = {tuple(f'c59_{i}' for i in range(59))!r}\n"
        f"PASCALCONTEX459_NAMES = {tuple(f'c459 {i} ' for i in range(459))!r}\nOTHER = [1, 2]\n")
    stuff = [{"color": [0, 0, 0], "id": i, "name": f"stuff-{i}"} for i in range(171)]
    (d / "register_coco_stuff.py").write_text(f"COCO_CATEGORIES = {stuff!r}\n")
    (d / "register_voc_seg.py").write_text(f"PASCALVOC20_NAMES = {tuple(voc)!r}\n")
    return root


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    from frozenseg.data import register_all_builtin
    from frozenseg.data.prepare import ovseg
    from frozenseg.data.synthetic import make_layouts

    root = str(tmp_path_factory.mktemp("datasets"))
    make_layouts(root, seed=0, num_train=3, num_val=2)
    for convert in PREPARE:
        convert(root)
    write_lvis(root)
    ovseg.convert(root, str(write_fake_ovseg_repo(tmp_path_factory.mktemp("ov-seg"))))
    register_all_builtin(root)
    yield root
    register_all_builtin()
