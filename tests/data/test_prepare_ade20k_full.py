"""frozenseg.data.prepare.ade20k_full (datasets/prepare_ade20k_full_sem_seg.py) on the synthetic
ADE20K 2021_17_01 release (fixed design in ``frozenseg.data.synthetic.ADE_FULL_DESIGN``): the
label maps follow the shipped 847-class list (objects matched by name), resizing, ``--classes``
and the loader on the result."""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from frozenseg.config import get_cfg
from frozenseg.data import DatasetCatalog, VocabularyError, builtin, dataset_vocabulary, register_all_builtin
from frozenseg.data.dataset_mappers import read_label_map
from frozenseg.data.prepare import ade20k_full
from frozenseg.data.prepare.common import InputError
from frozenseg.data.released import released_metadata
from frozenseg.data.synthetic import ADE_FULL_DESIGN, ade_full_bands, make_ade_full

# ADE object id -> trainId of the shipped list (zeppelin, 9, is not one of the 847 classes)
EXPECTED_TRAIN_IDS = {1: 0, 2: 1, 3: 2, 4: 11, 5: 3, 6: 14, 7: 188, 8: 130, 300: 4}
IGNORE = 65535
NAME = "openvocab_ade20k_full_sem_seg_val"


def _design(name):
    return next(d for d in ADE_FULL_DESIGN if d[1] == name)


def test_written_vocabulary_is_the_shipped_list_and_provenance(synth_root):
    base = os.path.join(synth_root, "ADE20K_2021_17_01")
    shipped = released_metadata(NAME)["stuff_classes"]
    from frozenseg.data.vocabulary import read_vocabulary_file

    written = read_vocabulary_file(os.path.join(base, "ade20k_847_classes.txt"))
    assert written == shipped and len(written) == 847
    assert dataset_vocabulary(NAME) == shipped  # the loader accepts the prepared label maps
    with open(os.path.join(base, "ade20k_847_classes.json")) as f:
        prov = json.load(f)
    assert len(prov) == 847
    assert {p["ade_object_id"]: p["trainId"] for p in prov if p["ade_object_id"]} == EXPECTED_TRAIN_IDS
    assert prov[188] == {"trainId": 188, "ade_object_id": 7, "name": "pot", "train_images": 1}
    assert prov[0]["train_images"] == 3 and prov[5]["ade_object_id"] is None


def test_match_objects_disambiguates_shared_first_names():
    match = ade20k_full.match_objects
    classes = ["pot,flowerpot", "bag,bags,gift bag", "pot", "bag,handbag,purse", "wall,walls"]
    names = ["pot", "bag, handbag, pocketbook, purse", "Pot,  Flowerpot", "bag", "wall", "zeppelin",
             "pot"]
    # the second plain "pot" (id 7) loses to id 1, which has more training images
    got = match(names, classes, Counter({1: 5, 7: 2}))
    assert got == {3: 0, 2: 3, 1: 2, 4: 1, 5: 4}


@pytest.mark.parametrize("split,name", [("validation", "ADE_val_00000002"), ("training", "ADE_train_00000001")])
def test_label_maps_exact(synth_root, split, name):
    _, _, _, h, w, objects = _design(name)
    expected = np.vectorize(lambda o: EXPECTED_TRAIN_IDS.get(o, IGNORE))(ade_full_bands(h, w, objects))
    path = os.path.join(synth_root, "ADE20K_2021_17_01", "annotations_detectron2", split, name + ".tif")
    lab = np.array(Image.open(path))
    assert lab.dtype == np.uint16 and np.array_equal(lab, expected)
    image = Image.open(path.replace("annotations_detectron2", "images_detectron2").replace(".tif", ".jpg"))
    assert image.size == (w, h)


def test_large_image_resized_to_512_and_frame_is_training(synth_root):
    base = os.path.join(synth_root, "ADE20K_2021_17_01")
    lab = np.array(Image.open(os.path.join(base, "annotations_detectron2", "training", "ADE_frame_00000001.tif")))
    assert lab.shape == (512, 614)  # 600x720 -> shorter side 512, 720/600*512 = 614.4
    # four bands (wall, building, car, person) survive nearest-neighbour resizing in order
    assert [int(v) for v in lab[0, [0, 200, 400, 613]]] == [0, 1, 14, 11]
    assert not os.path.exists(os.path.join(base, "annotations_detectron2", "validation", "ADE_frame_00000001.tif"))


def test_loader_reads_prepared_dataset(synth_root):
    dicts = DatasetCatalog.get(NAME)
    assert sorted(os.path.basename(d["file_name"]) for d in dicts) == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]
    labels = set()
    for d in dicts:
        labels |= set(np.unique(read_label_map(d["sem_seg_file_name"]).numpy()).tolist())
    assert labels == {0, 1, 2, 3, 4, 11, 14, 130, IGNORE}


def test_benchmark_size_rule():
    size = ade20k_full.benchmark_size
    assert size(512, 900) == (512, 900) and size(400, 300) == (400, 300)
    assert size(600, 720) == (512, 614) and size(1000, 700) == (731, 512)


def test_decode_object_classes():
    decode = ade20k_full.decode_object_classes
    seg = np.array([[[0, 0, 7], [0, 5, 0], [10, 44, 3], [29, 255, 0]]], np.uint8)
    assert decode(seg).tolist() == [[0, 5, 300, 2 * 256 + 255]]


def test_classes_file_overrides_the_shipped_list(tmp_path):
    make_ade_full(str(tmp_path), seed=1)
    base = tmp_path / "ADE20K_2021_17_01"
    with open(base / "index_ade20k.pkl", "rb") as f:
        index = pickle.load(f)
    index["objectnames"] += [f"object {i}" for i in range(301, 901)]  # room for 847 object ids
    with open(base / "index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f)
    # an exact list of 847 object ids in trainId order: sky, zeppelin, wall, then fillers
    ids = [3, 9, 1] + list(range(10, 854))
    classes = tmp_path / "mine.txt"
    classes.write_text("3:sky,heaven\n9:zeppelin\n1:wall\n" + "".join(f"{i}:object {i}\n" for i in ids[3:]))
    ade20k_full.main(["--root", str(tmp_path), "--classes", str(classes)])
    written = base / "ade20k_847_classes.txt"
    assert written.read_text().splitlines()[1:4] == ["0:sky,heaven", "1:zeppelin", "2:wall"]
    lab = np.array(Image.open(base / "annotations_detectron2" / "validation" / "ADE_val_00000002.tif"))
    _, _, _, h, w, objects = _design("ADE_val_00000002")
    expected = np.vectorize({i: k for k, i in enumerate(ids)}.get)(ade_full_bands(h, w, objects), IGNORE)
    assert np.array_equal(lab, expected) and (lab == 1).any() and (lab == 290 + 3).any()  # road, 300
    previous = builtin._REGISTERED_ROOT.get(NAME)
    try:
        register_all_builtin(str(tmp_path))
        # label maps written for another list than the one in use: refused, with the fix named
        with pytest.raises(VocabularyError, match=r"DATASETS\.VOCABULARY_FILES .*ade20k_847_classes\.txt"):
            DatasetCatalog.get(NAME)
        cfg = get_cfg()
        cfg.DATASETS.VOCABULARY_FILES = (f"{NAME}:{written}",)
        assert dataset_vocabulary(NAME, cfg)[:2] == ["sky,heaven", "zeppelin"]
        assert len(DatasetCatalog.get(NAME)) == 2  # the override is in use: the label maps load
    finally:
        register_all_builtin(previous)


def test_bad_inputs(tmp_path):
    mod = ade20k_full
    make_ade_full(str(tmp_path), seed=2)
    bad = tmp_path / "bad.txt"
    bad.write_text("0:wall\n")
    with pytest.raises(InputError, match=r"ids \[0\] are not ADE20K object ids \(1\.\.300\)"):
        mod.convert(str(tmp_path), str(bad))
    index_file = tmp_path / "ADE20K_2021_17_01" / "index_ade20k.pkl"
    with open(index_file, "rb") as f:
        index = pickle.load(f)
    index["objectnames"] = index["objectnames"][:10]  # road (300) is now beyond the names
    with open(index_file, "wb") as f:
        pickle.dump(index, f)
    with pytest.raises(InputError, match="object class 300 is beyond the 10 objectnames"):
        mod.convert(str(tmp_path))
    with open(index_file, "wb") as f:
        pickle.dump({"filename": []}, f)
    with pytest.raises(InputError, match="must be a dict with 'filename', 'folder' and 'objectnames'"):
        mod.convert(str(tmp_path))
