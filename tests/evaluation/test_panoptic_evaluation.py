"""COCOPanopticEvaluator on a tiny hand-made COCO-panoptic dataset (PNG + JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("panopticapi")

from frozenseg.evaluation import COCOPanopticEvaluator  # noqa: E402

from .eval_test_utils import PAN_H, PAN_W, build_panoptic_dataset, perfect_outputs, rect  # noqa: E402

KEYS = ["PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"]


@pytest.fixture
def dataset(tmp_path):
    return build_panoptic_dataset(str(tmp_path / "data"))


def _evaluate(dataset, outputs, inputs=None, **kw):
    ev = COCOPanopticEvaluator(dataset.metadata, distributed=False, **kw)
    ev.reset()
    inputs = dataset.inputs if inputs is None else inputs
    for inp, out in zip(inputs, outputs):
        ev.process([inp], [{"panoptic_seg": out["panoptic_seg"]}])
    return ev.evaluate()["panoptic_seg"]


def test_perfect_prediction_is_100(dataset, tmp_path):
    res = _evaluate(dataset, perfect_outputs(dataset), output_dir=str(tmp_path / "out"))
    assert list(res) == KEYS
    for key in KEYS:
        assert res[key] == pytest.approx(100.0), key
    # The prediction JSON handed to panopticapi and the results are kept in output_dir.
    pred = json.loads((tmp_path / "out" / "predictions.json").read_text())
    cats = {s["category_id"] for a in pred["annotations"] for s in a["segments_info"]}
    assert cats == {7, 20}  # contiguous ids mapped back to dataset ids
    saved = json.loads((tmp_path / "out" / "panoptic_evaluation.json").read_text())
    assert saved["panoptic_seg"]["PQ"] == pytest.approx(100.0)


def test_partial_overlap_hand_computed(dataset):
    # Image 1 only: GT person = rows 0-3 x cols 0-3 (16 px), grass = the other 48 px.
    # Prediction: person loses column 3 (12 px, IoU 12/16 = 0.75 > 0.5 -> TP), grass takes it
    # (52 px, IoU 48/52 -> TP).
    ids = torch.full((PAN_H, PAN_W), 2, dtype=torch.int32)
    ids[torch.from_numpy(rect(PAN_H, PAN_W, slice(0, 4), slice(0, 3)))] = 1
    infos = [{"id": 1, "category_id": 0, "isthing": True}, {"id": 2, "category_id": 1, "isthing": False}]
    res = _evaluate(dataset, [{"panoptic_seg": (ids, infos)}], inputs=dataset.inputs[:1])
    sq_th, sq_st = 12 / 16, 48 / 52
    assert res["PQ_th"] == pytest.approx(100 * sq_th)
    assert res["SQ_th"] == pytest.approx(100 * sq_th)
    assert res["RQ_th"] == pytest.approx(100.0)
    assert res["PQ_st"] == pytest.approx(100 * sq_st)
    assert res["PQ"] == pytest.approx(100 * (sq_th + sq_st) / 2)
    assert res["SQ"] == pytest.approx(100 * (sq_th + sq_st) / 2)
    assert res["RQ"] == pytest.approx(100.0)


def test_unmatched_segment_counts_as_false_positive_and_negative(dataset):
    # Image 1: the person is predicted with IoU 4/16 < 0.5 -> one FN and one FP for "person";
    # grass is perfect on its own 48 px (the rest of the person region is void).
    ids = torch.zeros((PAN_H, PAN_W), dtype=torch.int32)
    ids[torch.from_numpy(rect(PAN_H, PAN_W, slice(0, 2), slice(0, 2)))] = 1
    grass = ~rect(PAN_H, PAN_W, slice(0, 4), slice(0, 4))
    ids[torch.from_numpy(grass)] = 2
    infos = [{"id": 1, "category_id": 0, "isthing": True}, {"id": 2, "category_id": 1, "isthing": False}]
    res = _evaluate(dataset, [{"panoptic_seg": (ids, infos)}], inputs=dataset.inputs[:1])
    # person: tp 0, fp 1, fn 1 -> PQ 0, RQ 0; grass: PQ = SQ = RQ = 1
    assert res["PQ_th"] == 0.0 and res["RQ_th"] == 0.0
    assert res["PQ_st"] == pytest.approx(100.0)
    assert res["PQ"] == pytest.approx(50.0)


def test_empty_prediction_is_zero(dataset):
    outputs = [{"panoptic_seg": (torch.zeros((PAN_H, PAN_W), dtype=torch.int32), [])} for _ in dataset.inputs]
    res = _evaluate(dataset, outputs)
    for key in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"):
        assert res[key] == 0.0
    # No image processed at all: undefined (NaN), not an exception.
    res = _evaluate(dataset, [], inputs=[])
    assert all(np.isnan(res[key]) for key in KEYS)


def test_label_divisor_convention(dataset):
    # segments_info None: ids are class * label_divisor + instance, -1 = void (Detectron2).
    dataset.metadata.label_divisor = 1000
    outputs = []
    for out in perfect_outputs(dataset):
        ids, infos = out["panoptic_seg"]
        panoptic = torch.full_like(ids, -1)
        for s in infos:
            panoptic[ids == s["id"]] = s["category_id"] * 1000 + s["id"]
        outputs.append({"panoptic_seg": (panoptic, None)})
    res = _evaluate(dataset, outputs)
    assert res["PQ"] == pytest.approx(100.0)
    assert np.isclose(res["PQ_th"], 100.0) and np.isclose(res["PQ_st"], 100.0)
