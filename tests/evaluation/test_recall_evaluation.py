"""RecallEvaluator on hand-made ground truth and proposals."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from frozenseg.evaluation import RecallEvaluator
from frozenseg.evaluation.recall_evaluation import best_iou_per_segment

from .eval_test_utils import PAN_H, PAN_W, build_panoptic_dataset, rect

# GT 4x4: left half class 0, right half class 1.
GT = np.array([[0, 0, 1, 1]] * 4)


def _meta(**kw):
    return SimpleNamespace(stuff_classes=["road", "car"], ignore_label=255, **kw)


def _run(ev, gt, proposals):
    ev.reset()
    ev.process([{"file_name": "a.jpg", "sem_seg": torch.as_tensor(gt)}], [{"proposals": torch.as_tensor(proposals)}])
    return ev.evaluate()["recall"]


def test_semantic_ground_truth_hand_computed():
    p0 = GT == 0  # exactly class 0: IoU 1
    p1 = rect(4, 4, slice(0, 3), slice(2, 4))  # 6 of class 1's 8 pixels: IoU 0.75
    p2 = rect(4, 4, slice(0, 4), slice(0, 3))  # 8 px of class 0 + 4 of class 1: IoU 8/12 and 4/12
    res = _run(RecallEvaluator(_meta(seen_classes=[True, False]), distributed=False), GT, np.stack([p2, p0, p1]))
    # best IoUs: class 0 -> 1.0, class 1 -> 0.75 (IoU >= threshold counts).
    assert res["R@50"] == 100.0 and res["R@75"] == 100.0 and res["R@90"] == 50.0
    assert res["ABO"] == pytest.approx(100 * (1.0 + 0.75) / 2)
    assert res["R@90_seen"] == 100.0 and res["R@90_unseen"] == 0.0
    assert res["R@75_unseen"] == 100.0
    assert res["ABO_unseen"] == pytest.approx(75.0)


def test_no_proposal_gives_zero_recall_and_no_split_without_seen_info():
    res = _run(RecallEvaluator(_meta(), distributed=False), GT, np.zeros((0, 4, 4), dtype=bool))
    assert res["R@50"] == 0.0 and res["ABO"] == 0.0
    assert not any(k.endswith("_seen") for k in res)
    # No image at all: NaN.
    ev = RecallEvaluator(_meta(), distributed=False)
    assert math.isnan(ev.evaluate()["recall"]["R@50"])


def test_void_pixels_are_removed_from_proposals():
    gt = GT.copy()
    gt[:, 1] = 255  # class 0 keeps column 0 only (4 px)
    proposal = GT == 0  # covers column 0 and the ignored column 1
    res = _run(RecallEvaluator(_meta(), distributed=False), gt, proposal[None])
    # class 0: IoU 4/4 once void pixels are removed; class 1: no overlap.
    assert res["R@90"] == 50.0
    assert best_iou_per_segment(torch.tensor([[1, 0], [2, 2]]), 2, torch.tensor([[[1, 1], [0, 0]]])).tolist() == [1.0, 0.0]


def test_panoptic_ground_truth_counts_instances_separately(tmp_path):
    data = build_panoptic_dataset(str(tmp_path))
    inp = data.inputs[1]  # image 2: persons in rows 0-1 and rows 6-7, grass in rows 2-5
    person_b = rect(PAN_H, PAN_W, slice(0, 2), slice(0, 8))
    both_persons = person_b | rect(PAN_H, PAN_W, slice(6, 8), slice(0, 8))
    ev = RecallEvaluator(data.metadata, distributed=False)  # seen: person yes, grass no
    ev.process([inp], [{"proposals": torch.as_tensor(np.stack([person_b, both_persons]))}])
    res = ev.evaluate()["recall"]
    # person_b: IoU 1; person_c: best 16/32 = 0.5; grass: 0.
    assert res["R@50"] == pytest.approx(100 * 2 / 3)
    assert res["R@75"] == pytest.approx(100 * 1 / 3)
    assert res["R@50_seen"] == 100.0 and res["R@50_unseen"] == 0.0
    assert res["ABO_seen"] == pytest.approx(75.0)


def test_shape_mismatch_is_an_error():
    ev = RecallEvaluator(_meta(), distributed=False)
    with pytest.raises(ValueError, match="do not match"):
        ev.process([{"sem_seg": torch.as_tensor(GT)}], [{"proposals": torch.zeros(2, 3, 3, dtype=torch.bool)}])
