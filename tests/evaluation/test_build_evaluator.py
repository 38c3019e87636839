"""build_evaluator: selection by evaluator_type and the enabled tasks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from frozenseg.config import get_cfg
from frozenseg.evaluation import (
    COCOPanopticEvaluator,
    CityscapesInstanceEvaluator,
    CityscapesSemSegEvaluator,
    DatasetEvaluators,
    InstanceSegEvaluator,
    LVISEvaluator,
    RecallEvaluator,
    SemSegEvaluator,
    build_evaluator,
)


def _cfg(semantic=True, instance=False, panoptic=False, recall=False):
    cfg = get_cfg()
    t = cfg.MODEL.MASK_FORMER.TEST
    t.SEMANTIC_ON, t.INSTANCE_ON, t.PANOPTIC_ON, t.RECALL_ON = semantic, instance, panoptic, recall
    return cfg


def _meta(evaluator_type, **kw):
    return SimpleNamespace(evaluator_type=evaluator_type, stuff_classes=["a", "b,bee", "c"], ignore_label=255, **kw)


def _types(ev):
    evs = ev.evaluators if isinstance(ev, DatasetEvaluators) else [ev]
    return [type(e) for e in evs]


def test_panoptic_dataset_with_all_tasks(tmp_path):
    ev = build_evaluator(_cfg(True, True, True), "ade", str(tmp_path), metadata=_meta("ade20k_panoptic_seg"))
    assert _types(ev) == [SemSegEvaluator, COCOPanopticEvaluator, InstanceSegEvaluator]
    ev = build_evaluator(_cfg(False, False, True, True), "x", str(tmp_path), metadata=_meta("coco_panoptic_seg"))
    assert _types(ev) == [COCOPanopticEvaluator, RecallEvaluator]
    # Other panoptic types (e.g. BDD) follow the same rules.
    ev = build_evaluator(_cfg(False, False, True), "bdd", str(tmp_path), metadata=_meta("bdd_panoptic_pan_seg"))
    assert _types(ev) == [COCOPanopticEvaluator]


def test_semantic_lvis_coco_and_cityscapes(tmp_path):
    assert _types(build_evaluator(_cfg(), "s", str(tmp_path), metadata=_meta("sem_seg"))) == [SemSegEvaluator]
    assert _types(build_evaluator(_cfg(False, True), "l", str(tmp_path), metadata=_meta("lvis"))) == [LVISEvaluator]
    assert _types(build_evaluator(_cfg(), "c", str(tmp_path), metadata=_meta("coco"))) == [InstanceSegEvaluator]
    ev = build_evaluator(_cfg(True, True, True), "cs", str(tmp_path), metadata=_meta("cityscapes_panoptic_seg"))
    assert _types(ev) == [CityscapesSemSegEvaluator, COCOPanopticEvaluator, CityscapesInstanceEvaluator]


def test_unknown_type_and_nothing_enabled_are_clear_errors(tmp_path):
    with pytest.raises(NotImplementedError, match="evaluator_type 'weird'"):
        build_evaluator(_cfg(), "w", str(tmp_path), metadata=_meta("weird"))
    with pytest.raises(NotImplementedError, match="No evaluator enabled"):
        build_evaluator(_cfg(semantic=False), "s", str(tmp_path), metadata=_meta("sem_seg"))


def test_seen_classes_from_training_vocabulary(tmp_path):
    vocab = tmp_path / "train_vocab.txt"
    vocab.write_text("1:a\n2:bee,honeybee\n")  # "b,bee" shares the synonym "bee"
    cfg = _cfg()
    cfg.MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE = str(vocab)
    ev = build_evaluator(cfg, "s", str(tmp_path), metadata=_meta("sem_seg"))
    assert ev._seen_mask.tolist() == [True, True, False]
    # Explicit metadata.seen_classes wins.
    ev = build_evaluator(cfg, "s", str(tmp_path), metadata=_meta("sem_seg", seen_classes=np.array([0])))
    assert ev._seen_mask.tolist() == [True, False, False]
    # Default output_dir: cfg.OUTPUT_DIR/inference.
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    ev = build_evaluator(cfg, "s", metadata=_meta("sem_seg"))
    assert ev._output_dir == str(tmp_path / "run" / "inference")


def test_seen_classes_of_a_literal_vocabulary_model(tmp_path, monkeypatch):
    """For OVSeg (``literal_vocabulary``) a test class is seen only when its whole class string
    is a training class string: "b,bee" is one prompt, not the synonym "bee". The training
    vocabulary is the model's own (``training_vocabulary`` of the model contract)."""
    from frozenseg.models.ovseg import OVSeg

    vocab = tmp_path / "train_vocab.txt"
    vocab.write_text("1:a\n2:bee\n")
    monkeypatch.setattr(OVSeg, "training_vocabulary", classmethod(lambda cls, cfg: ["a", "bee"]))
    cfg = _cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "OVSeg"])
    ev = build_evaluator(cfg, "s", str(tmp_path), metadata=_meta("sem_seg"))  # classes a; b,bee; c
    assert ev._seen_mask.tolist() == [True, False, False]
    cfg = _cfg()
    cfg.MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE = str(vocab)
    ev = build_evaluator(cfg, "s", str(tmp_path), metadata=_meta("sem_seg"))
    assert ev._seen_mask.tolist() == [True, True, False]
