"""frozenseg.data.prepare.bdd (datasets/prepare_bdd_panoptic.py): exact conversion of a hand-made
BDD100K bitmask, and the registered loader on the converted synthetic release."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from frozenseg.data import DatasetCatalog
from frozenseg.data.dataset_mappers import read_panoptic_ids
from frozenseg.data.prepare import bdd
from frozenseg.data.prepare.common import InputError


def _bitmask():
    """3x4 RGBA bitmask: road (7) in two stuff instances, a car (35, instance 1) with the crowd
    bit, a second car (instance 2), a person (31, instance 300) whose right pixel has the ignore
    bit, and unlabelled pixels."""
    cat = np.array([[7, 7, 35, 35], [7, 7, 35, 0], [31, 31, 35, 7]], np.uint8)
    attr = np.array([[0, 0, 2, 2], [0, 0, 0, 0], [0, 1, 0, 0]], np.uint8)
    inst = np.array([[1, 1, 1, 1], [2, 2, 2, 0], [300, 300, 2, 5]])
    return np.stack([cat, attr, inst // 256, inst % 256], -1).astype(np.uint8)


def test_bitmask_segments_exact():
    mod = bdd
    thing_ids = {c["id"] for c in mod.categories() if c["isthing"]}
    assert thing_ids == set(range(31, 41))
    pan, infos = mod.bitmask_segments(_bitmask(), thing_ids, 40, "x.png")
    # segments by (category, instance): road (all of its pixels), person 300, car 1, car 2
    assert pan.tolist() == [[1, 1, 3, 3], [1, 1, 4, 0], [2, 0, 4, 1]]
    assert [(s["id"], s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in infos] == [
        (1, 7, 0, 5, [0, 0, 4, 3]), (2, 31, 0, 1, [0, 2, 1, 1]),
        (3, 35, 1, 2, [2, 0, 2, 1]), (4, 35, 0, 2, [2, 1, 1, 2])]


def test_bad_bitmasks():
    mod = bdd
    with pytest.raises(InputError, match="x.png is not an RGBA bitmask"):
        mod.bitmask_segments(_bitmask()[..., :3], {35}, 40, "x.png")
    b = _bitmask()
    b[0, 0, 0] = 41
    with pytest.raises(InputError, match="x.png: category 41 is outside 0..40"):
        mod.bitmask_segments(b, {35}, 40, "x.png")


def test_converted_release_loads(synth_root):
    import os

    with open(os.path.join(synth_root, "bdd100k", "labels", "pan_seg", "panoptic_val.json")) as f:
        data = json.load(f)
    assert [c["id"] for c in data["categories"]] == list(range(1, 41))
    crowd = [s for a in data["annotations"] for s in a["segments_info"] if s["iscrowd"]]
    assert crowd and all(s["category_id"] >= 31 for s in crowd)  # the first thing of each image
    for d in DatasetCatalog.get("bdd10k_40_panoptic_val"):
        ids = read_panoptic_ids(d["pan_seg_file_name"]).numpy()
        bitmask = np.array(Image.open(d["pan_seg_file_name"].replace("panoptic_val", "bitmasks/val")))
        for s in d["segments_info"]:  # every segment covers pixels of its own category only
            assert set(np.unique(bitmask[..., 0][ids == s["id"]]).tolist()) == {s["category_id"] + 1}
