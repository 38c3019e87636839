"""Catalogs, vocabulary files and their validation."""

from __future__ import annotations

import os

import pytest

from frozenseg.config import get_cfg
from frozenseg.data import (
    DatasetCatalog,
    MetadataCatalog,
    VocabularyError,
    dataset_vocabulary,
    read_vocabulary_file,
    set_vocabulary_file,
    write_vocabulary_file,
)
from frozenseg.data.builtin import BUILTIN_DATASETS
from frozenseg.data.vocabulary import parse_vocabulary_file_text

RELEASED_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference",
                                "released_configs")


def test_dataset_catalog_protocol():
    DatasetCatalog.register("tmp_ds", lambda: [{"file_name": "a"}])
    try:
        assert "tmp_ds" in DatasetCatalog.list()
        assert DatasetCatalog.get("tmp_ds") == [{"file_name": "a"}]
        with pytest.raises(KeyError):
            DatasetCatalog.register("tmp_ds", lambda: [])
    finally:
        DatasetCatalog.remove("tmp_ds")
    assert "tmp_ds" not in DatasetCatalog.list()
    with pytest.raises(KeyError, match="not registered"):
        DatasetCatalog.get("tmp_ds")


def test_metadata_protocol():
    m = MetadataCatalog.get("tmp_meta").set(stuff_classes=["a", "b"], ignore_label=255)
    try:
        assert MetadataCatalog.get("tmp_meta") is m
        assert m.stuff_classes == ["a", "b"] and m.get("missing", 3) == 3
        m.ignore_label = 255  # same value: allowed
        with pytest.raises(AttributeError):
            m.ignore_label = 0
        with pytest.raises(AttributeError, match="Available keys"):
            _ = m.thing_classes
        calls = []
        m.set_lazy(lambda meta: (calls.append(1), meta.set(thing_classes=["x"])))
        assert m.thing_classes == ["x"] and m.thing_classes == ["x"] and calls == [1]
    finally:
        MetadataCatalog.remove("tmp_meta")


def test_every_released_and_required_name_is_registered():
    names = set(DatasetCatalog.list())
    required = ["openvocab_coco_2017_train_panoptic_with_sem_seg", "openvocab_coco_2017_val_panoptic_with_sem_seg",
                "openvocab_coco_2017_train", "openvocab_coco_2017_val", "openvocab_coco_2017_val_stuff_sem_seg",
                "openvocab_lvis_v1_train", "openvocab_lvis_v1_val", "bdd10k_val_sem_seg", "bdd10k_40_panoptic_val"]
    for s in ("train", "val"):
        required += [f"openvocab_ade20k_panoptic_{s}", f"openvocab_ade20k_sem_seg_{s}",
                     f"openvocab_ade20k_instance_{s}", f"openvocab_ade20k_full_sem_seg_{s}",
                     f"openvocab_cityscapes_fine_panoptic_{s}", f"openvocab_mapillary_vistas_panoptic_{s}",
                     f"openvocab_pascal_ctx59_sem_seg_{s}", f"openvocab_pascal_ctx459_sem_seg_{s}",
                     f"openvocab_pascal20_sem_seg_{s}", f"openvocab_pascal21_sem_seg_{s}"]
    assert not set(required) - names
    import re

    checked = 0
    for dirpath, _, files in os.walk(os.path.join(RELEASED_CONFIGS, "coco")):
        for f in files:
            text = open(os.path.join(dirpath, f)).read()
            for m in re.finditer(r"(TRAIN|TEST):\s*\(([^)]*)\)", text):
                for n in re.findall(r'"([^"]+)"', m.group(2)):
                    assert n in names, (f, n)
                    checked += 1
    assert checked >= 12


def test_vocabulary_roundtrip(tmp_path):
    p = write_vocabulary_file(str(tmp_path / "v.txt"), ["cat,kitty", ["dog", "puppy"]], ids=[3, 7])
    assert read_vocabulary_file(p) == ["cat,kitty", "dog,puppy"]
    assert open(p).read() == "3:cat,kitty\n7:dog,puppy\n"


@pytest.mark.parametrize("text,match", [
    ("0 cat\n", "expected 'id:name"),
    ("x:cat\n", "not an integer"),
    ("0:cat,,kitty\n", "empty class name"),
    ("0:\n", "empty class name"),
    ("0:cat\n0:dog\n", "already used"),
    ("# only a comment\n\n", "no classes"),
])
def test_vocabulary_parse_errors(text, match):
    with pytest.raises(VocabularyError, match=match):
        parse_vocabulary_file_text(text, "test.txt")


def test_vocabulary_override_validation(tmp_path):
    name = "openvocab_pascal20_sem_seg_val"
    with pytest.raises(VocabularyError, match="does not exist"):
        read_vocabulary_file(str(tmp_path / "missing.txt"))
    bad = write_vocabulary_file(str(tmp_path / "bad.txt"), ["a", "b"])
    with pytest.raises(VocabularyError, match="has 2 classes but dataset"):
        set_vocabulary_file(name, bad)
    cfg = get_cfg()
    cfg.DATASETS.VOCABULARY_FILES = [f"{name}:{bad}"] if "VOCABULARY_FILES" in cfg.DATASETS else None
    if cfg.DATASETS.VOCABULARY_FILES is None:
        cfg.DATASETS.set_new_allowed(True)
        cfg.DATASETS.VOCABULARY_FILES = [f"{name}:{bad}"]
    with pytest.raises(VocabularyError, match="20"):
        dataset_vocabulary(name, cfg)
    good = write_vocabulary_file(str(tmp_path / "good.txt"), [f"class{i},syn{i}" for i in range(20)])
    cfg.DATASETS.VOCABULARY_FILES = [f"{name}:{good}"]
    try:
        assert dataset_vocabulary(name, cfg)[3] == "class3,syn3"
        assert dataset_vocabulary(name)[3] == "class3,syn3"  # remembered in the metadata
    finally:
        MetadataCatalog.get(name).set(overwrite=True, vocabulary_file=None)
    assert dataset_vocabulary(name)[0].startswith("aeroplane")


def test_registration_table_is_consistent():
    names = [s.name for s in BUILTIN_DATASETS]
    assert len(names) == len(set(names))
