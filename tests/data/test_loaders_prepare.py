"""Every registered loader on its synthetic layout; every prepare script on synthetic raw data."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from frozenseg.data import DatasetCatalog, DatasetNotFoundError, MetadataCatalog, dataset_vocabulary
from frozenseg.data.builtin import BUILTIN_DATASETS, register_all_builtin
from frozenseg.data.dataset_mappers import read_label_map, read_panoptic_ids

from importlib import import_module as prepare_module

ALL = [s.name for s in BUILTIN_DATASETS]


@pytest.mark.parametrize("name", ALL)
def test_every_registered_loader(synth_root, name):
    dicts = DatasetCatalog.get(name)
    assert len(dicts) >= 2, name
    meta = MetadataCatalog.get(name)
    vocab = dataset_vocabulary(name)
    kind = meta.dataset_kind
    d = dicts[0]
    assert os.path.isfile(d["file_name"])
    if kind == "sem_seg":
        assert len(vocab) == len(meta.stuff_classes)
        lab = read_label_map(d["sem_seg_file_name"]).numpy()
        valid = lab[lab != meta.ignore_label]
        assert valid.size and valid.max() < len(meta.stuff_classes)
    elif kind == "panoptic":
        assert len(vocab) == len(meta.stuff_classes)
        ids = read_panoptic_ids(d["pan_seg_file_name"]).numpy()
        seg_ids = {s["id"] for s in d["segments_info"]}
        assert seg_ids and seg_ids <= set(np.unique(ids).tolist())
        thing_ids = set(meta.thing_dataset_id_to_contiguous_id.values())
        for s in d["segments_info"]:
            assert 0 <= s["category_id"] < len(meta.stuff_classes)
            assert s["isthing"] == (s["category_id"] in thing_ids)
        if "sem_seg_file_name" in d:
            sem = read_label_map(d["sem_seg_file_name"]).numpy()
            assert sem.shape == ids.shape
    else:
        assert len(vocab) == len(meta.thing_classes)
        assert all(0 <= a["category_id"] < len(meta.thing_classes) for a in d["annotations"])
        assert sum(len(x["annotations"]) for x in dicts) > 0


def test_lvis_vocabulary_from_json(synth_root):
    vocab = dataset_vocabulary("openvocab_lvis_v1_val")
    assert len(vocab) == len(MetadataCatalog.get("openvocab_lvis_v1_val").thing_classes)
    assert "_" not in vocab[0] and vocab[0].endswith("thing")
    d = DatasetCatalog.get("openvocab_lvis_v1_val")[0]
    assert d["file_name"].endswith(".jpg") and "neg_category_ids" in d


def test_missing_folder_error(synth_root, tmp_path):
    register_all_builtin(str(tmp_path))
    try:
        with pytest.raises(DatasetNotFoundError) as e:
            DatasetCatalog.get("openvocab_ade20k_panoptic_val")
        msg = str(e.value)
        assert str(tmp_path) in msg and "prepare_ade20k_pan_seg.py" in msg and msg.count(". ") == 0
        with pytest.raises(DatasetNotFoundError, match="prepare_pascal_ctx_sem_seg"):
            dataset_vocabulary("openvocab_pascal_ctx459_sem_seg_val")
    finally:
        register_all_builtin(synth_root)


def test_ade_prepare_outputs(synth_root):
    base = os.path.join(synth_root, "ADEChallengeData2016")
    raw = np.array(Image.open(os.path.join(base, "annotations", "validation", "ADE_val_00000001.png")))
    red = np.array(Image.open(os.path.join(base, "annotations_detectron2", "validation", "ADE_val_00000001.png")))
    assert np.array_equal(red[raw == 0], np.full((raw == 0).sum(), 255))
    assert np.array_equal(red[raw > 0], raw[raw > 0] - 1)
    # panoptic segments agree with the semantic map
    d = {x["image_id"]: x for x in DatasetCatalog.get("openvocab_ade20k_panoptic_val")}["ADE_val_00000001"]
    ids = read_panoptic_ids(d["pan_seg_file_name"]).numpy()
    for s in d["segments_info"]:
        assert np.all(red[ids == s["id"]] == s["category_id"])
    inst = DatasetCatalog.get("openvocab_ade20k_instance_val")
    n_things = sum(s["isthing"] for x in DatasetCatalog.get("openvocab_ade20k_panoptic_val") for s in x["segments_info"])
    assert sum(len(x["annotations"]) for x in inst) == n_things


def test_coco_semantic_from_panoptic(synth_root):
    for d in DatasetCatalog.get("openvocab_coco_2017_val_panoptic_with_sem_seg"):
        ids = read_panoptic_ids(d["pan_seg_file_name"]).numpy()
        sem = read_label_map(d["sem_seg_file_name"]).numpy()
        for s in d["segments_info"]:
            assert np.all(sem[ids == s["id"]] == s["category_id"])
        assert np.all(sem[ids == 0] == 255)


def test_pascal_prepare_outputs(synth_root):
    d21 = DatasetCatalog.get("openvocab_pascal21_sem_seg_val")[0]
    d20 = DatasetCatalog.get("openvocab_pascal20_sem_seg_val")[0]
    l21, l20 = read_label_map(d21["sem_seg_file_name"]).numpy(), read_label_map(d20["sem_seg_file_name"]).numpy()
    assert np.all(l20[(l21 == 0) | (l21 == 255)] == 255)
    fg = (l21 > 0) & (l21 < 255)
    assert fg.any() and np.array_equal(l20[fg], l21[fg] - 1)
    assert len(MetadataCatalog.get("openvocab_pascal_ctx459_sem_seg_val").stuff_classes) == 459
    c459 = read_label_map(DatasetCatalog.get("openvocab_pascal_ctx459_sem_seg_val")[0]["sem_seg_file_name"]).numpy()
    c59 = read_label_map(DatasetCatalog.get("openvocab_pascal_ctx59_sem_seg_val")[0]["sem_seg_file_name"]).numpy()
    names459 = MetadataCatalog.get("openvocab_pascal_ctx459_sem_seg_val").stuff_classes
    names59 = MetadataCatalog.get("openvocab_pascal_ctx59_sem_seg_val").stuff_classes
    for v in np.unique(c59[c59 != 255]):  # a 59-class pixel is the same class in the 459 map
        assert {names459[i].replace(" ", "") for i in np.unique(c459[c59 == v])} == {names59[v].replace(" ", "")}


def test_coco_stuff_prepare(tmp_path):
    src = tmp_path / "coco" / "stuffthingmaps_trainval2017"
    for split in ("train", "val"):
        (src / f"{split}2017").mkdir(parents=True)
        lab = np.array([[0, 89, 91], [181, 255, 12], [11, 0, 0]], np.uint8)  # person, toothbrush, banner, wood, void, stop sign, unused id 12
        Image.fromarray(lab).save(src / f"{split}2017" / "x.png")
    prepare_module("prepare_coco_stuff_sem_seg").convert(str(tmp_path))
    out = np.array(Image.open(tmp_path / "coco" / "stuffthingmaps_detectron2" / "val2017" / "x.png"))
    assert out.tolist() == [[0, 79, 80], [170, 255, 11], [255, 0, 0]]


@pytest.mark.parametrize("script", ["prepare_ade20k_sem_seg", "prepare_ade20k_pan_seg", "prepare_ade20k_ins_seg",
                                    "prepare_coco_semantic_annos_from_panoptic_annos", "prepare_pascal_voc_sem_seg",
                                    "prepare_pascal_ctx_sem_seg", "prepare_coco_stuff_sem_seg",
                                    "prepare_ade20k_full_sem_seg", "prepare_bdd_panoptic"])
def test_prepare_scripts_validate_input(tmp_path, script):
    from _prepare_common import InputError

    with pytest.raises(InputError, match="Expected .* at .*, which does not exist"):
        prepare_module(script).convert(str(tmp_path))


def test_prepare_rejects_bad_labels(tmp_path):
    from _prepare_common import InputError

    d = tmp_path / "ADEChallengeData2016" / "annotations" / "training"
    d.mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(d / "a.png")
    with pytest.raises(InputError, match="not an ADE20K-150 label map"):
        prepare_module("prepare_ade20k_sem_seg").convert(str(tmp_path))


@pytest.mark.parametrize("script,missing", [
    ("prepare_ade20k_sem_seg", "the ADE20K scene-parsing release at {root}/ADEChallengeData2016"),
    ("prepare_ade20k_full_sem_seg", "the ADE20K 2021_17_01 release at {root}/ADE20K_2021_17_01"),
])
def test_prepare_command_line(tmp_path, script, missing):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, os.path.join(repo, "datasets", script + ".py"), "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == f"Expected {missing.format(root=tmp_path)}, which does not exist."


def test_pc459_vocabulary_reuses_the_59_class_synonyms(synth_root):
    names459 = prepare_module("prepare_pascal_ctx_sem_seg").names459
    labels = {i: f"extra class {i}" for i in range(1, 460)}
    labels[7], labels[8] = "pottedplant", "bird"
    entries = names459(labels, [["potted plant", "houseplant"], ["bird", "birds"]])
    assert entries[6] == ["pottedplant", "potted plant", "houseplant"]
    assert entries[7] == ["bird", "birds"] and entries[0] == ["extra class 1"]
    # the prepared synthetic dataset: every 59-class name is a synonym of a 459-class entry
    vocab459 = [set(v.split(",")) for v in dataset_vocabulary("openvocab_pascal_ctx459_sem_seg_val")]
    for v59 in dataset_vocabulary("openvocab_pascal_ctx59_sem_seg_val"):
        assert any(set(v59.split(",")) <= v for v in vocab459), v59
