"""Zero-shot fidelity: every benchmark's vocabulary, id maps, thing flags and colours are the
released system's, without the datasets on disk.

The expectations come from the shipped ``released_metadata.json`` (a verbatim copy of the project
reference; its hash is checked here) read with plain ``json``, never through the code under test,
and from exact values written into this file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from frozenseg.config import get_cfg
from frozenseg.data import (
    DatasetCatalog,
    MetadataCatalog,
    dataset_vocabulary,
    read_vocabulary_file,
    register_all_builtin,
    seen_class_mask,
    split_synonyms,
)
from frozenseg.data import builtin
from frozenseg.data.released import (
    RELEASED_METADATA_FILE,
    released_categories,
    released_classes,
    released_dataset_names,
    released_metadata,
)
from frozenseg.data.vocabulary import VOCABULARY_DIR, read_vocabulary_entries

#: SHA-256 of the project reference ``reference/released_metadata/metadata.json``
REFERENCE_SHA256 = "b1c01102114e44688d0ad768b64598a4bbeb80a13bdeb394120f2b2caa38f151"
TRAIN = "openvocab_coco_2017_train_panoptic_with_sem_seg"
ID_MAPS = ("stuff_dataset_id_to_contiguous_id", "thing_dataset_id_to_contiguous_id")


def _raw() -> dict:
    with open(RELEASED_METADATA_FILE, encoding="utf-8") as f:
        return json.load(f)


def release_split(name: str) -> list[str]:
    """The release's own rule, written out independently of the code under test."""
    return name.replace(", ", ",").split(",")


@pytest.fixture
def empty_root(tmp_path):
    """Every dataset registered under an empty ``$DETECTRON2_DATASETS``; restored afterwards."""
    previous = builtin._REGISTERED_ROOT.get(TRAIN)
    register_all_builtin(str(tmp_path))
    yield str(tmp_path)
    register_all_builtin(previous)


def test_shipped_metadata_is_the_reference_verbatim():
    with open(RELEASED_METADATA_FILE, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == REFERENCE_SHA256
    assert len(released_dataset_names()) == 32


def test_every_released_vocabulary_is_the_release_list(empty_root):
    """Item 1: same classes, same order, same display name, same synonyms (as a list, so also as
    a set), for all 32 names, with nothing on disk."""
    raw = _raw()
    assert set(raw) <= set(DatasetCatalog.list())  # every released name is registered
    for name, ref in raw.items():
        key = "stuff_classes" if "stuff_classes" in ref else "thing_classes"
        vocab = dataset_vocabulary(name)
        assert vocab == ref[key], name
        assert [split_synonyms(v) for v in vocab] == [release_split(r) for r in ref[key]], name


def test_every_released_name_has_the_release_metadata(empty_root):
    """Items 3 and 4: class lists, id maps, thing flags, colours, ignore label and label divisor
    equal the release's wherever it sets them."""
    for name, ref in _raw().items():
        meta = MetadataCatalog.get(name)
        for key, value in ref.items():
            if key in ID_MAPS:
                value = {int(k): v for k, v in value.items()}
            assert meta.get(key) == value, (name, key)


def test_exact_entries():
    """Item 6: chosen entries, exactly."""
    ade = dataset_vocabulary("openvocab_ade20k_panoptic_val")
    assert split_synonyms(ade[0]) == ["wall", "walls", "brick wall", "stone wall", "interior wall"]
    coco = split_synonyms(dataset_vocabulary(TRAIN)[0])
    assert len(coco) == 17 and coco[0] == "person" and coco[-1] == "clothes"
    a847 = dataset_vocabulary("openvocab_ade20k_full_sem_seg_val")
    assert len(a847) == 847
    assert a847[:3] == ["wall,walls,interior wall,brick wall,stone wall",
                        "building,buildings,edifice,edifices", "sky,clouds"]
    pc459 = dataset_vocabulary("openvocab_pascal_ctx459_sem_seg_val")
    assert len(pc459) == 459 and pc459[0] == "accordion" and pc459[1] == "aeroplane,aeroplanes,airplanes,airplane"
    lvis = dataset_vocabulary("openvocab_lvis_v1_val")
    assert len(lvis) == 1203 and lvis[0] == "aerosol_can" and lvis[161] == "horned_cow"
    assert split_synonyms(lvis[0]) == ["aerosol_can"]  # no synonyms, underscores kept
    background = split_synonyms(dataset_vocabulary("openvocab_pascal21_sem_seg_val")[0])
    assert len(background) == 74 and len(set(background)) == 72  # "bag" and "tiles" twice
    # the release's quirks are kept: a trailing space, a repeated synonym
    assert dataset_vocabulary("openvocab_ade20k_instance_val")[1] == "window "
    assert split_synonyms("window ") == ["window "]
    assert dataset_vocabulary("openvocab_mapillary_vistas_panoptic_val")[40] == "mailbox,postbox,mailbox,letter box"


# name -> (classes, seen) under the release's rule; also in docs/getting_started.md's benchmark table
SEEN = {
    "openvocab_ade20k_panoptic_val": (150, 64),
    "openvocab_ade20k_full_sem_seg_val": (847, 101),
    "openvocab_pascal_ctx459_sem_seg_val": (459, 85),
    "openvocab_pascal_ctx59_sem_seg_val": (59, 51),
    "openvocab_pascal21_sem_seg_val": (21, 21),
    "openvocab_cityscapes_fine_panoptic_val": (19, 17),
    "openvocab_mapillary_vistas_panoptic_val": (65, 26),
    "bdd10k_40_panoptic_val": (40, 15),
    "openvocab_lvis_v1_val": (1203, 66),
    "openvocab_ade20k_instance_val": (100, 38),
}


@pytest.mark.parametrize("name", sorted(SEEN))
def test_seen_counts(name):
    """Item 2: the seen/unseen masks follow from the COCO training vocabulary as in the release;
    cross-checked against the rule written out on the raw file."""
    vocab = dataset_vocabulary(name)
    mask = seen_class_mask(vocab, dataset_vocabulary(TRAIN))
    assert (len(vocab), sum(mask)) == SEEN[name]
    raw = _raw()
    train = {s for c in raw[TRAIN]["stuff_classes"] for s in release_split(c)}
    ref = raw[name].get("stuff_classes") or raw[name]["thing_classes"]
    assert mask == [any(s in train for s in release_split(c)) for c in ref]


def test_seen_rule_is_exact_synonym_match():
    # "window " (the released ADE20K instance string) is not COCO's "window"; ", " is ","
    assert seen_class_mask(["window ", "window", "cat, kitty", "Cat"], ["window,windows", "kitty"]) == [
        False, True, True, False]


def test_cityscapes_label_ids_and_things(empty_root):
    """Item 3: Cityscapes panoptic uses label ids; things are 24-28 and 31-33 (no 29/30)."""
    meta = MetadataCatalog.get("openvocab_cityscapes_fine_panoptic_val")
    assert meta.stuff_dataset_id_to_contiguous_id == {
        7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10}
    assert meta.thing_dataset_id_to_contiguous_id == {
        24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    assert len(meta.thing_classes) == 19  # Mask2Former convention: the list covers every class
    assert meta.stuff_colors[0] == [128, 64, 128] and meta.thing_colors[11] == [220, 20, 60]
    # the semantic split's label maps hold trainIds: contiguous ids are its dataset ids
    sem = MetadataCatalog.get("openvocab_cityscapes_fine_sem_seg_val")
    assert sem.stuff_classes == meta.stuff_classes and sem.get("stuff_dataset_id_to_contiguous_id") is None
    assert sem.thing_dataset_id_to_contiguous_id == {k: k for k in range(11, 19)}


def test_mapillary_and_voc20_ids(empty_root):
    mv = MetadataCatalog.get("openvocab_mapillary_vistas_panoptic_val")
    assert mv.stuff_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 66)}
    assert len(mv.thing_dataset_id_to_contiguous_id) == 37 and mv.ignore_label == 65
    assert {1, 2, 9, 20, 63} <= set(mv.thing_dataset_id_to_contiguous_id) and 3 not in mv.thing_dataset_id_to_contiguous_id
    voc = MetadataCatalog.get("openvocab_pascal20_sem_seg_val")
    assert voc.stuff_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 21)}
    assert MetadataCatalog.get("openvocab_pascal21_sem_seg_val").stuff_dataset_id_to_contiguous_id[0] == 0


def test_projects_other_names_use_the_released_lists(empty_root):
    same = {
        "coco_2017_val_panoptic_with_sem_seg": "openvocab_coco_2017_val_panoptic_with_sem_seg",
        "openvocab_coco_2017_val_panoptic": "openvocab_coco_2017_val_panoptic_with_sem_seg",
        "coco_2017_val": "openvocab_coco_2017_val",
        "openvocab_coco_2017_val_stuff_sem_seg": "openvocab_coco_2017_test_stuff_sem_seg",
        "bdd10k_train_sem_seg": "bdd10k_val_sem_seg",
        "bdd10k_40_panoptic_train": "bdd10k_40_panoptic_val",
        "openvocab_mapillary_vistas_sem_seg_val": "openvocab_mapillary_vistas_panoptic_val",
    }
    for name, released in same.items():
        assert dataset_vocabulary(name) == dataset_vocabulary(released), name
    lvis = MetadataCatalog.get("openvocab_lvis_v1_val")
    assert lvis.thing_dataset_id_to_contiguous_id[1] == 0 and lvis.thing_dataset_id_to_contiguous_id[1203] == 1202
    assert len(lvis.thing_colors) == 1203  # the release gives none: generated


def test_released_classes_and_categories():
    cs = released_classes("openvocab_cityscapes_fine_panoptic_val")
    assert [c.dataset_id for c in cs] == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert [c.isthing for c in cs] == [False] * 11 + [True] * 8 and cs[0].color == (128, 64, 128)
    lvis = released_classes("openvocab_lvis_v1_val")
    assert (lvis[0].dataset_id, lvis[-1].dataset_id, lvis[0].isthing, lvis[0].color) == (1, 1203, True, None)
    ade = released_categories("openvocab_ade20k_instance_val")
    assert ade[:2] == [{"id": 7, "name": "bed", "isthing": 1}, {"id": 8, "name": "window", "isthing": 1}]
    assert released_metadata("openvocab_ade20k_sem_seg_val")["ignore_label"] == 255
    with pytest.raises(KeyError, match="registers no dataset 'nope'; it registers: bdd10k_40"):
        released_metadata("nope")


def test_shipped_files_are_consistent():
    """Item 6: every shipped list is well formed (format, counts, no empty synonym, maps and
    colours fit the classes)."""
    for name, ref in _raw().items():
        classes = ref.get("stuff_classes") or ref["thing_classes"]
        for key in ("stuff_classes", "thing_classes"):
            for c in ref.get(key, []):
                assert isinstance(c, str) and all(s.strip() for s in release_split(c)), (name, c)
        maps = [ref[k] for k in ID_MAPS if ref.get(k)]
        contiguous = [v for m in maps for v in m.values()]
        if "stuff_classes" in ref and ref.get("stuff_dataset_id_to_contiguous_id"):
            # panoptic/semantic: stuff and thing maps together cover every class exactly once
            assert sorted(set(contiguous)) == list(range(len(classes))), name
        for key in ("stuff_colors", "thing_colors"):
            if key in ref:
                assert len(ref[key]) == len(ref[key.replace("colors", "classes")]), (name, key)
                assert all(len(c) == 3 and all(0 <= x <= 255 for x in c) for c in ref[key]), name
    for fname, count in (("lvis_v1_synonyms.txt", 1203), ("synthetic_shapes.txt", 8)):
        entries = read_vocabulary_entries(os.path.join(VOCABULARY_DIR, fname))
        assert len(entries) == count and all(all(n for n in names) for _, names in entries)
    lvis = read_vocabulary_entries(os.path.join(VOCABULARY_DIR, "lvis_v1_synonyms.txt"))
    assert [i for i, _ in lvis] == list(range(1, 1204))
    # the first name is the release's class name, cleaned
    assert [n[0] for _, n in lvis] == [c.replace("_", " ") for c in _raw()["openvocab_lvis_v1_val"]["thing_classes"]]
    assert lvis[0][1] == ["aerosol can", "spray can"] and lvis[135][1] == ["bow (weapon)"]


def test_lvis_synonym_vocabulary_is_opt_in(empty_root):
    """Item 1: the cleaned LVIS file is used only when asked for, by a path that works from any
    working directory."""
    cfg = get_cfg()
    cfg.DATASETS.VOCABULARY_FILES = ("openvocab_lvis_v1_val:frozenseg/data/vocabularies/lvis_v1_synonyms.txt",)
    try:
        assert dataset_vocabulary("openvocab_lvis_v1_val", cfg)[0] == "aerosol can,spray can"
    finally:
        MetadataCatalog.get("openvocab_lvis_v1_val").set(overwrite=True, vocabulary_file=None)
    assert dataset_vocabulary("openvocab_lvis_v1_val")[0] == "aerosol_can"


@pytest.mark.slow
def test_export_vocabulary_tool(tmp_path):
    """A dataset's vocabulary as a file to start an override from (item 7)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "a150.txt"
    r = subprocess.run([sys.executable, os.path.join(repo, "tools", "export_vocabulary.py"),
                        "openvocab_ade20k_sem_seg_val", "--output", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert read_vocabulary_file(str(out)) == dataset_vocabulary("openvocab_ade20k_sem_seg_val")
    assert out.read_text().splitlines()[1] == "0:wall,walls,brick wall,stone wall,interior wall"
    r = subprocess.run([sys.executable, os.path.join(repo, "tools", "export_vocabulary.py"), "ade_typo"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "did you mean openvocab_ade20k_" in r.stderr
    r = subprocess.run([sys.executable, os.path.join(repo, "tools", "export_vocabulary.py"),
                        "openvocab_ade20k_sem_seg_val", "--output", str(tmp_path)],  # a folder
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "choose a writable --output path" in r.stderr
