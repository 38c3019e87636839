"""Every registered loader on its synthetic layout; every dataset converter (frozenseg.data.prepare)
on synthetic raw data, and the prepare scripts' command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frozenseg.data import DatasetCatalog, DatasetNotFoundError, MetadataCatalog, dataset_vocabulary
from frozenseg.data.builtin import BUILTIN_DATASETS, register_all_builtin
from frozenseg.data.dataset_mappers import read_label_map, read_panoptic_ids
from frozenseg.data.prepare import ade20k, ade20k_full, bdd, coco, lvis, pascal
from frozenseg.data.prepare.common import InputError
from frozenseg.data.released import PASCAL_CONTEXT_59_LABEL_NAMES

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
        annotated = "_test_" not in name  # LVIS test-dev/challenge: image lists only
        assert (sum(len(x["annotations"]) for x in dicts) > 0) == annotated


def test_lvis_loads_with_the_release_ids(synth_root):
    d = DatasetCatalog.get("openvocab_lvis_v1_val")[0]
    assert d["file_name"].endswith(".jpg") and "neg_category_ids" in d
    with open(os.path.join(synth_root, "coco", "annotations", "instances_val2017.json")) as f:
        coco = json.load(f)
    first = [a["category_id"] for a in coco["annotations"] if a["image_id"] == d["image_id"]]
    assert [a["category_id"] for a in d["annotations"]] == [i - 1 for i in first]  # LVIS id - 1


def test_missing_folder_error(synth_root, tmp_path):
    register_all_builtin(str(tmp_path))
    try:
        with pytest.raises(DatasetNotFoundError) as e:
            DatasetCatalog.get("openvocab_ade20k_panoptic_val")
        msg = str(e.value)
        assert str(tmp_path) in msg and "prepare_ade20k_pan_seg.py" in msg and msg.count(". ") == 0
        with pytest.raises(DatasetNotFoundError, match="prepare_pascal_ctx_sem_seg"):
            DatasetCatalog.get("openvocab_pascal_ctx459_sem_seg_val")
        assert len(dataset_vocabulary("openvocab_pascal_ctx459_sem_seg_val")) == 459  # shipped
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
    # a 59-class pixel is, in the 459 map, the labels.txt class of the 59-class benchmark name
    labels = open(os.path.join(synth_root, "VOCdevkit", "VOC2010", "labels.txt")).read().splitlines()
    index459 = {line.split(": ", 1)[1].replace(" ", ""): int(line.split(":")[0]) - 1 for line in labels}
    values59 = np.unique(c59[c59 != 255])
    assert values59.size >= 3
    for v in values59:
        assert np.unique(c459[c59 == v]).tolist() == [index459[PASCAL_CONTEXT_59_LABEL_NAMES[v].replace(" ", "")]]
    assert (c59 == 255).any() and (c459[c59 == 255] != 65535).any()  # classes outside the 59


def test_coco_stuff_prepare(tmp_path):
    src = tmp_path / "coco" / "stuffthingmaps_trainval2017"
    for split in ("train", "val"):
        (src / f"{split}2017").mkdir(parents=True)
        lab = np.array([[0, 89, 91], [181, 255, 12], [11, 0, 0]], np.uint8)  # person, toothbrush, banner, wood, void, stop sign, unused id 12
        Image.fromarray(lab).save(src / f"{split}2017" / "x.png")
    coco.convert_stuff_sem_seg(str(tmp_path))
    out = np.array(Image.open(tmp_path / "coco" / "stuffthingmaps_detectron2" / "val2017" / "x.png"))
    assert out.tolist() == [[0, 79, 80], [170, 255, 11], [255, 0, 0]]


@pytest.mark.parametrize("convert", [ade20k.convert_sem_seg, ade20k.convert_pan_seg, ade20k.convert_ins_seg,
                                     coco.convert_panoptic_to_sem_seg, pascal.convert_voc_sem_seg,
                                     pascal.convert_ctx_sem_seg, coco.convert_stuff_sem_seg,
                                     ade20k_full.convert, bdd.convert, lvis.convert],
                         ids=lambda f: f"{f.__module__.rsplit('.', 1)[1]}.{f.__name__}")
def test_prepare_scripts_validate_input(tmp_path, convert):
    with pytest.raises(InputError, match="Expected .* at .*, which does not exist"):
        convert(str(tmp_path))


def test_prepare_rejects_bad_labels(tmp_path):
    d = tmp_path / "ADEChallengeData2016" / "annotations" / "training"
    d.mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(d / "a.png")
    with pytest.raises(InputError, match="not an ADE20K-150 label map"):
        ade20k.convert_sem_seg(str(tmp_path))


@pytest.mark.parametrize("script,missing", [
    ("prepare_ade20k_sem_seg", "the ADE20K scene-parsing release at {root}/ADEChallengeData2016"),
    ("prepare_ade20k_full_sem_seg", "the ADE20K 2021_17_01 release at {root}/ADE20K_2021_17_01"),
])
@pytest.mark.slow
def test_prepare_command_line(tmp_path, script, missing):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, os.path.join(repo, "datasets", script + ".py"), "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == f"Expected {missing.format(root=tmp_path)}, which does not exist."


PREPARE_SCRIPTS = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "datasets").glob("prepare_*.py"))


@pytest.mark.parametrize("script", PREPARE_SCRIPTS)
@pytest.mark.slow
def test_prepare_script_help_outside_the_checkout(tmp_path, script):
    """Every datasets/prepare_*.py imports its converter from the installed package, from any
    working directory, and takes --root."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "datasets" / script), "--help"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {script} [-h] [--root ROOT]")


def test_pascal_context_59_order_and_renamings(synth_root):
    """The 59 labels.txt names line up with the release's 59 classes: each is a synonym of the
    release's class at the same position (spaces ignored), except the five the release renamed."""
    from frozenseg.data.vocabulary import split_synonyms

    renamed = {"computer": "computer case", "light": "lamp,lamps,bulb,bulbs", "road": "street,streets",
               "table": "diningtable,diningtables,table,tables,desk,desks,side table,side tables,coffee table",
               "wood": "wood piece"}
    for name, cls in zip(PASCAL_CONTEXT_59_LABEL_NAMES, dataset_vocabulary("openvocab_pascal_ctx59_sem_seg_val"),
                         strict=True):
        synonyms = {s.replace(" ", "") for s in split_synonyms(cls)}
        assert (name.replace(" ", "") in synonyms and name != "table") or renamed[name] == cls, (name, cls)


def test_lvis_synonym_vocabulary_script(tmp_path):
    mod = lvis
    assert mod.clean_synonyms(["bat_(animal)", "bat__(animal)", "a,b", " "]) == ["bat (animal)", "a b"]
    cats = [{"id": 2, "name": "bull", "synonyms": ["horned_cow"]}, {"id": 1, "name": "aerosol_can",
            "synonyms": ["aerosol_can", "spray_can"]}, {"id": 3, "name": "alarm_clock"}]
    (tmp_path / "lvis").mkdir()
    (tmp_path / "lvis" / "lvis_v1_val.json").write_text(json.dumps({"categories": cats}))
    mod.main(["--root", str(tmp_path)])
    text = (tmp_path / "lvis" / "lvis_v1_synonyms.txt").read_text().splitlines()
    assert text[1:] == ["1:aerosol can,spray can", "2:horned cow", "3:alarm clock"]
    (tmp_path / "lvis" / "lvis_v1_val.json").write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="has no 'categories'"):
        mod.convert(str(tmp_path))
    (tmp_path / "lvis" / "lvis_v1_val.json").write_text("{not json")
    with pytest.raises(InputError, match=r"lvis_v1_val\.json is not valid JSON \(.*line 1\)"):
        mod.convert(str(tmp_path))


def test_pc459_label_maps_follow_the_shipped_order(synth_root, caplog):
    """Item 5: the 459-class maps are LabelMap - 1, i.e. labels.txt order, which is the shipped
    list's order; labels.txt names that the release renamed are logged, not fatal."""
    import logging

    from scipy.io import loadmat

    voc = os.path.join(synth_root, "VOCdevkit", "VOC2010")
    labels = {int(i): n.strip() for i, n in (line.split(":", 1) for line in open(os.path.join(voc, "labels.txt")))}
    with caplog.at_level(logging.INFO, logger="frozenseg.data.prepare"):
        pascal._log_renamed(labels)
    assert caplog.messages == ["2 labels.txt names differ from the release's class at the same position: "
                               "232: 'light' -> 'lamp,lamps'; 458: 'wood' -> 'wood piece'"]
    d = DatasetCatalog.get("openvocab_pascal_ctx459_sem_seg_val")[0]
    stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
    raw = loadmat(os.path.join(voc, "trainval", stem + ".mat"))["LabelMap"].astype(np.int64)
    lab = read_label_map(d["sem_seg_file_name"]).numpy()
    assert np.array_equal(lab, np.where(raw == 0, 65535, raw - 1))
    shipped = dataset_vocabulary("openvocab_pascal_ctx459_sem_seg_val")
    for v in np.unique(lab[lab != 65535]):  # the labels.txt class is the shipped class v
        assert labels[v + 1] in ("light", "wood") or labels[v + 1] == shipped[v].split(",")[0]
