"""InstanceSegEvaluator (COCO mask AP) and LVISEvaluator on tiny hand-made ground truth."""

from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from frozenseg.evaluation import InstanceSegEvaluator, LVISEvaluator

from .eval_test_utils import make_instances, rect, write_coco_json

H = W = 8
IMAGES = [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}]
# Category A (dataset id 3): a 5x5 square; category B (dataset id 5): rows 6-7.
MASK_A = rect(H, W, slice(0, 5), slice(0, 5))
MASK_B = rect(H, W, slice(6, 8), slice(0, 8))
# 18 of A's 25 pixels: IoU 18/25 = 0.72.
PARTIAL_A = rect(H, W, slice(0, 3), slice(0, 5)) | rect(H, W, slice(3, 4), slice(0, 3))


@pytest.fixture
def coco_meta(tmp_path):
    path = write_coco_json(
        str(tmp_path / "instances.json"),
        IMAGES,
        [{"id": 3, "name": "cat_a"}, {"id": 5, "name": "cat_b"}],
        [(1, 3, MASK_A), (1, 5, MASK_B)],
    )
    # Contiguous ids 0 and 1 (2 would be a stuff class without a dataset thing id).
    return SimpleNamespace(json_file=path, thing_dataset_id_to_contiguous_id={3: 0, 5: 1})


def _evaluate(ev, instances):
    ev.reset()
    ev.process([{"image_id": 1, "file_name": "a.jpg"}], [{"instances": instances}])
    return ev.evaluate()["segm"]


def test_perfect_prediction_is_100(coco_meta, tmp_path):
    ev = InstanceSegEvaluator(coco_meta, str(tmp_path / "out"), distributed=False)
    res = _evaluate(ev, make_instances([MASK_A, MASK_B], [0, 1], [0.9, 0.8]))
    for key in ("AP", "AP50", "AP75", "APs", "AP-cat_a", "AP-cat_b"):
        assert res[key] == pytest.approx(100.0), key
    # All objects are small (< 32^2 px): medium / large are undefined -> NaN.
    assert math.isnan(res["APm"]) and math.isnan(res["APl"])
    saved = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert sorted(r["category_id"] for r in saved) == [3, 5]
    saved = json.loads((tmp_path / "out" / "instances_evaluation.json").read_text())
    assert saved["segm"]["AP"] == pytest.approx(100.0)


def test_image_id_not_in_ground_truth_is_matched_by_file_name(coco_meta, caplog):
    """ADE20K: the panoptic dataset's image ids are file stems, its instance json numbers them."""
    ev = InstanceSegEvaluator(coco_meta, distributed=False)
    ev.reset()
    ev.process([{"image_id": "a", "file_name": "/data/images/a.jpg"}],
               [{"instances": make_instances([PARTIAL_A, MASK_B], [0, 1], [0.9, 0.8])}])
    res = ev.evaluate()["segm"]
    assert res["AP-cat_a"] == pytest.approx(50.0) and res["AP-cat_b"] == pytest.approx(100.0)
    assert "not in the ground truth" not in caplog.text
    ev.reset()  # an unknown id with an unknown file name is still left out, with a warning
    ev.process([{"image_id": "b", "file_name": "b.jpg"}], [{"instances": make_instances([MASK_A], [0], [0.9])}])
    assert math.isnan(ev.evaluate()["segm"]["AP"])
    assert "1 processed images are not in the ground truth" in caplog.text


def test_partial_overlap_hand_computed(coco_meta):
    # cat_a matched at IoU thresholds 0.50..0.70 (5 of 10) -> AP 50; cat_b perfect -> AP 100.
    ev = InstanceSegEvaluator(coco_meta, distributed=False)
    res = _evaluate(ev, make_instances([PARTIAL_A, MASK_B], [0, 1], [0.9, 0.8]))
    assert res["AP-cat_a"] == pytest.approx(50.0)
    assert res["AP-cat_b"] == pytest.approx(100.0)
    assert res["AP"] == pytest.approx(75.0)
    assert res["AP50"] == pytest.approx(100.0)
    assert res["AP75"] == pytest.approx(50.0)


def test_empty_prediction_is_nan_and_stuff_classes_are_dropped(coco_meta):
    ev = InstanceSegEvaluator(coco_meta, distributed=False)
    res = _evaluate(ev, make_instances([], [], []))
    assert all(math.isnan(res[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
    # A perfect prediction plus one of a class that has no thing id: the latter is ignored.
    res = _evaluate(ev, make_instances([MASK_A, MASK_B, MASK_A], [0, 1, 2], [0.9, 0.8, 0.99]))
    assert res["AP"] == pytest.approx(100.0)


def test_float_masks_are_binarised(coco_meta):
    inst = make_instances([MASK_A, MASK_B], [0, 1], [0.9, 0.8])
    inst.pred_masks = inst.pred_masks.float()  # Mask2Former returns 0/1 floats
    res = _evaluate(InstanceSegEvaluator(coco_meta, distributed=False), inst)
    assert res["AP"] == pytest.approx(100.0)


def test_lvis_perfect_prediction_is_100(tmp_path):
    if importlib.util.find_spec("lvis") is None:
        pytest.skip("lvis is not installed")
    mask_c = rect(H, W, slice(0, 2), slice(6, 8))
    path = write_coco_json(
        str(tmp_path / "lvis.json"),
        IMAGES,
        [
            {"id": 1, "name": "rare_thing", "frequency": "r"},
            {"id": 2, "name": "common_thing", "frequency": "c"},
            {"id": 3, "name": "frequent_thing", "frequency": "f"},
        ],
        [(1, 1, MASK_A), (1, 2, MASK_B), (1, 3, mask_c)],
        lvis=True,
    )
    # No id mapping in the metadata: dataset id = contiguous id + 1 (Detectron2's LVIS rule).
    ev = LVISEvaluator(SimpleNamespace(json_file=path), str(tmp_path / "out"), distributed=False)
    res = _evaluate(ev, make_instances([MASK_A, MASK_B, mask_c], [0, 1, 2], [0.9, 0.8, 0.7]))
    for key in ("AP", "AP50", "AP75", "APr", "APc", "APf", "APs"):
        assert res[key] == pytest.approx(100.0), key
    assert math.isnan(res["APl"])
    assert (tmp_path / "out" / "lvis_evaluation.json").exists()

    # Partial: the rare category at IoU 0.72 -> APr 50; the others stay perfect.
    partial = make_instances([PARTIAL_A, MASK_B, mask_c], [0, 1, 2], [0.9, 0.8, 0.7])
    res = _evaluate(ev, partial)
    assert res["APr"] == pytest.approx(50.0)
    assert res["APc"] == pytest.approx(100.0) and res["APf"] == pytest.approx(100.0)
    assert res["AP"] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert np.isclose(res["AP50"], 100.0)
