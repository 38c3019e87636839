"""datasets/prepare_ade20k_full_sem_seg.py on the synthetic ADE20K 2021_17_01 release (fixed
design in ``frozenseg.data.synthetic.ADE_FULL_DESIGN``): class selection, label conversion,
resizing, vocabulary and the loader on the result."""

from __future__ import annotations

import json
import os
import pickle
from importlib import import_module as prepare_module

import numpy as np
import pytest
from PIL import Image

from frozenseg.data import DatasetCatalog, MetadataCatalog, dataset_vocabulary
from frozenseg.data.dataset_mappers import read_label_map
from frozenseg.data.synthetic import ADE_FULL_DESIGN, ade_full_bands, make_ade_full

# wall, building, person, sky, tree, car, road: in both splits, by training-image count then id
EXPECTED_OBJECTS = [1, 2, 4, 3, 5, 6, 300]
IGNORE = 65535


def _design(name):
    return next(d for d in ADE_FULL_DESIGN if d[1] == name)


def test_selection_vocabulary_and_provenance(synth_root):
    base = os.path.join(synth_root, "ADE20K_2021_17_01")
    with open(os.path.join(base, "ade20k_847_classes.json")) as f:
        prov = json.load(f)
    assert [p["ade_object_id"] for p in prov] == EXPECTED_OBJECTS
    assert [p["train_images"] for p in prov] == [3, 2, 2, 1, 1, 1, 1]
    vocab = dataset_vocabulary("openvocab_ade20k_full_sem_seg_val")
    assert vocab[:3] == ["wall", "building,edifice", "person,individual,someone,somebody,mortal,soul"]
    assert vocab[-1] == "road,route" and len(vocab) == 7
    assert MetadataCatalog.get("openvocab_ade20k_full_sem_seg_val").stuff_classes[2] == "person"


@pytest.mark.parametrize("split,name", [("validation", "ADE_val_00000002"), ("training", "ADE_train_00000001")])
def test_label_maps_exact(synth_root, split, name):
    _, _, _, h, w, objects = _design(name)
    lut = {obj: k for k, obj in enumerate(EXPECTED_OBJECTS)}
    expected = np.vectorize(lambda o: lut.get(o, IGNORE))(ade_full_bands(h, w, objects))
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
    assert [int(v) for v in lab[0, [0, 200, 400, 613]]] == [0, 1, 5, 2]
    assert not os.path.exists(os.path.join(base, "annotations_detectron2", "validation", "ADE_frame_00000001.tif"))


def test_loader_reads_prepared_dataset(synth_root):
    dicts = DatasetCatalog.get("openvocab_ade20k_full_sem_seg_val")
    assert sorted(os.path.basename(d["file_name"]) for d in dicts) == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]
    lab = read_label_map(dicts[0]["sem_seg_file_name"]).numpy()
    assert set(np.unique(lab).tolist()) <= set(range(7)) | {IGNORE}


def test_benchmark_size_rule():
    size = prepare_module("prepare_ade20k_full_sem_seg").benchmark_size
    assert size(512, 900) == (512, 900) and size(400, 300) == (400, 300)
    assert size(600, 720) == (512, 614) and size(1000, 700) == (731, 512)


def test_decode_object_classes():
    decode = prepare_module("prepare_ade20k_full_sem_seg").decode_object_classes
    seg = np.array([[[0, 0, 7], [0, 5, 0], [10, 44, 3], [29, 255, 0]]], np.uint8)
    assert decode(seg).tolist() == [[0, 5, 300, 2 * 256 + 255]]


def test_classes_file_overrides_selection(tmp_path):
    make_ade_full(str(tmp_path), seed=1)
    classes = tmp_path / "mine.txt"
    classes.write_text("3:sky,heaven\n9:zeppelin\n1:wall\n")
    prepare_module("prepare_ade20k_full_sem_seg").main(["--root", str(tmp_path), "--classes", str(classes)])
    base = tmp_path / "ADE20K_2021_17_01"
    assert (base / "ade20k_847_classes.txt").read_text().splitlines()[1:] == ["0:sky", "1:zeppelin", "2:wall"]
    lab = np.array(Image.open(base / "annotations_detectron2" / "validation" / "ADE_val_00000001.tif"))
    _, _, _, h, w, objects = _design("ADE_val_00000001")
    expected = np.vectorize({3: 0, 9: 1, 1: 2}.get)(ade_full_bands(h, w, objects), IGNORE)
    assert np.array_equal(lab, expected)


def test_bad_inputs(tmp_path):
    from _prepare_common import InputError

    mod = prepare_module("prepare_ade20k_full_sem_seg")
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
