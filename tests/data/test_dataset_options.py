"""The dataset options of a run are checked when it starts: an
unregistered dataset is named as such (with close names), and a ``DATASETS.VOCABULARY_FILES``
entry that nothing would use is refused instead of silently ignored."""

from __future__ import annotations

import pytest

from frozenseg.config import get_cfg
from frozenseg.data import DatasetCatalog, MetadataCatalog
from frozenseg.data.builtin import (
    check_dataset_config,
    check_vocabulary_files,
    dataset_vocabulary,
    export_dataset_vocabulary,
)
from frozenseg.data.catalog import DatasetNotRegisteredError
from frozenseg.data.vocabulary import VocabularyError, write_vocabulary_file
from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.utils.errors import UserInputError

TEST = "synthetic_shapes_val_panoptic"
TRAIN = "synthetic_shapes_train_panoptic"
VALID = f"valid names: {TRAIN}, {TEST} (DATASETS.TRAIN and DATASETS.TEST)"


def _cfg(*entries: str):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (TRAIN,)
    cfg.DATASETS.TEST = (TEST,)
    cfg.DATASETS.VOCABULARY_FILES = tuple(entries)
    return cfg


def test_unregistered_dataset_is_named_with_close_names():
    """It used to say "Dataset 'x' has no vocabulary" (the metadata catalog makes empty entries)."""
    with pytest.raises(DatasetNotRegisteredError) as e:
        dataset_vocabulary("synthetic_shapes_val_panoptc")
    assert isinstance(e.value, UserInputError) and isinstance(e.value, KeyError)
    assert str(e.value) == (
        "Dataset 'synthetic_shapes_val_panoptc' is not registered; did you mean "
        "synthetic_shapes_val_panoptic, synthetic_shapes_train_panoptic, synthetic_shapes_val_sem_seg?"
    )
    with pytest.raises(DatasetNotRegisteredError, match=r"^Dataset 'zzz' is not registered; register it with "
                                                        r"DatasetCatalog.register or use a built-in name"):
        DatasetCatalog.get("zzz")
    with pytest.raises(KeyError, match="is not registered; did you mean openvocab_ade20k_panoptic_val"):
        export_dataset_vocabulary("openvocab_ade20k_panoptic_va", "/nonexistent/x.txt")

    cfg = _cfg()
    cfg.DATASETS.TEST = (TEST, "synthetic_shapes_val_panoptc")
    with pytest.raises(DatasetNotRegisteredError, match=r"^Dataset 'synthetic_shapes_val_panoptc' \(in "
                                                        r"DATASETS.TEST\) is not registered; did you mean"):
        check_dataset_config(cfg)
    cfg.DATASETS.TEST = (TEST,)
    cfg.DATASETS.TRAIN = ("my_train",)
    with pytest.raises(DatasetNotRegisteredError, match=r"'my_train' \(in DATASETS.TRAIN\) is not registered"):
        check_dataset_config(cfg)


def test_vocabulary_file_entries_must_name_a_dataset_of_the_run(tmp_path):
    path = tmp_path / "v.txt"
    check_dataset_config(_cfg(f"{TEST}:{path}", f"{TRAIN}:{path}"))  # the file is read later
    cases = {
        f"synthetic_shapes_val_panoptc:{path}":  # mistyped: it used to be ignored (rc 0)
            f"DATASETS.VOCABULARY_FILES entry 'synthetic_shapes_val_panoptc:{path}' names "
            f"'synthetic_shapes_val_panoptc', which is not a registered dataset; {VALID}; did you mean "
            f"{TEST}, {TRAIN}?",
        f"openvocab_ade20k_panoptic_val:{path}":  # registered, but not a dataset of this run
            f"DATASETS.VOCABULARY_FILES entry 'openvocab_ade20k_panoptic_val:{path}' names "
            f"'openvocab_ade20k_panoptic_val', which is not in DATASETS.TRAIN or DATASETS.TEST, so the "
            f"file would be ignored; {VALID}.",
        str(path):  # no "name:" prefix
            f"DATASETS.VOCABULARY_FILES entry {str(path)!r} must be 'dataset_name:path'; {VALID}.",
    }
    for entry, message in cases.items():
        with pytest.raises(VocabularyError) as e:
            check_vocabulary_files(_cfg(f"{TEST}:{path}", entry))
        assert str(e.value) == message and isinstance(e.value, UserInputError)
    cfg = _cfg(f"{TEST}:{path}")
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = ()
    with pytest.raises(VocabularyError, match=r"valid names: none \(DATASETS.TRAIN and DATASETS.TEST\)\.$"):
        check_vocabulary_files(cfg)


def test_entry_of_a_dataset_vocabulary_loaded_with_it_is_used(tmp_path):
    """``load_vocabulary(dataset_vocabulary=name, cfg=cfg)`` (the demo's --dataset-vocabulary)
    uses an entry for a dataset outside DATASETS.TRAIN/TEST: that entry is not refused."""
    name = "openvocab_pascal20_sem_seg_val"
    path = write_vocabulary_file(str(tmp_path / "p20.txt"), [f"class{i}" for i in range(20)])
    cfg = _cfg(f"{name}:{path}")
    with pytest.raises(VocabularyError, match="not in DATASETS.TRAIN or DATASETS.TEST"):
        check_vocabulary_files(cfg)
    try:
        assert load_vocabulary(dataset_vocabulary=name, cfg=cfg).class_names[3] == "class3"
        check_vocabulary_files(cfg)
    finally:
        MetadataCatalog.get(name).set(overwrite=True, vocabulary_file=None)


def test_predictor_checks_the_entries_before_building(tmp_path):
    from frozenseg.engine.predictor import SegmentationPredictor

    with pytest.raises(VocabularyError, match="synthetic_shapes_val_panoptc"):
        SegmentationPredictor(_cfg(f"synthetic_shapes_val_panoptc:{tmp_path / 'v.txt'}"), vocabulary=["cat"])
