"""SemSegEvaluator on hand-made label maps with hand-computed metrics."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from frozenseg.evaluation import SemSegEvaluator
from frozenseg.evaluation.sem_seg_evaluation import harmonic_mean

from .eval_test_utils import one_hot_scores, write_label_png


def _meta(classes=("road", "sky,heaven", "car"), **kw):
    return SimpleNamespace(stuff_classes=list(classes), ignore_label=255, **kw)


def _run(evaluator, pairs, num_classes):
    """Feed (gt, pred) label-map pairs with GT as an input tensor; return the sem_seg results."""
    evaluator.reset()
    for i, (gt, pred) in enumerate(pairs):
        inp = {"file_name": f"{i}.jpg", "image_id": i, "sem_seg": torch.as_tensor(gt)}
        evaluator.process([inp], [{"sem_seg": one_hot_scores(pred, num_classes)}])
    return evaluator.evaluate()["sem_seg"]


# GT 4x4: left half class 0, right half class 1.
GT = np.array([[0, 0, 1, 1]] * 4)


def test_perfect_prediction_is_100_and_absent_class_is_nan():
    ev = SemSegEvaluator(_meta(), distributed=False)
    res = _run(ev, [(GT, GT)], 3)
    for key in ("mIoU", "fwIoU", "mACC", "pACC", "IoU-road", "IoU-sky,heaven", "ACC-road"):
        assert res[key] == pytest.approx(100.0)
    # "car" has no GT pixel: NaN, and it does not lower the means.
    assert math.isnan(res["IoU-car"]) and math.isnan(res["ACC-car"])
    assert "mIoU_seen" not in res  # no seen information given


def test_partial_overlap_hand_computed():
    pred = GT.copy()
    pred[0:2, 0:2] = 1  # a 2x2 block of class 0 predicted as class 1
    res = _run(SemSegEvaluator(_meta(), distributed=False), [(GT, pred)], 3)
    # class 0: tp 4, gt 8, pred 4 -> IoU 4/8, ACC 4/8; class 1: tp 8, gt 8, pred 12 -> IoU 8/12, ACC 1
    iou0, iou1 = 4 / 8, 8 / 12
    assert res["IoU-road"] == pytest.approx(100 * iou0)
    assert res["IoU-sky,heaven"] == pytest.approx(100 * iou1)
    assert res["mIoU"] == pytest.approx(100 * (iou0 + iou1) / 2)
    assert res["fwIoU"] == pytest.approx(100 * (0.5 * iou0 + 0.5 * iou1))
    assert res["mACC"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert res["pACC"] == pytest.approx(100 * 12 / 16)


def test_2x2_and_4x4_images_accumulate_one_confusion_matrix():
    small_gt = np.array([[0, 1], [0, 1]])
    small_pred = np.array([[0, 0], [0, 1]])  # one class-1 pixel predicted as 0
    res = _run(SemSegEvaluator(_meta(), distributed=False), [(GT, GT), (small_gt, small_pred)], 3)
    # class 0: tp 8+2, gt 10, pred 11 -> 10/11; class 1: tp 8+1, gt 10, pred 9 -> 9/10
    assert res["IoU-road"] == pytest.approx(100 * 10 / 11)
    assert res["IoU-sky,heaven"] == pytest.approx(100 * 9 / 10)
    assert res["pACC"] == pytest.approx(100 * 19 / 20)
    assert res["mACC"] == pytest.approx(100 * (1.0 + 0.9) / 2)


def test_ignore_label_pixels_are_excluded():
    gt = GT.copy()
    gt[:, 0] = 255  # first column ignored
    pred = GT.copy()
    pred[:, 0] = 2  # wrong (and a class absent from GT) only on ignored pixels
    res = _run(SemSegEvaluator(_meta(), distributed=False), [(gt, pred)], 3)
    assert res["mIoU"] == pytest.approx(100.0)
    assert res["pACC"] == pytest.approx(100.0)
    assert math.isnan(res["IoU-car"])


def test_empty_prediction_gives_zero_and_no_image_gives_nan(caplog):
    pred = np.full_like(GT, 2)  # everything predicted as a class that is not in the GT
    res = _run(SemSegEvaluator(_meta(), distributed=False), [(GT, pred)], 3)
    assert res["mIoU"] == 0.0 and res["pACC"] == 0.0 and res["mACC"] == 0.0
    assert math.isnan(res["IoU-car"])  # predicted but absent from GT: NaN (Detectron2)

    ev = SemSegEvaluator(_meta(), distributed=False)
    res = ev.evaluate()["sem_seg"]
    assert math.isnan(res["mIoU"]) and math.isnan(res["pACC"])


def test_seen_unseen_and_harmonic_mean():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
    pred = gt.copy()
    pred[0:2, 0:2] = 1  # class 0 -> IoU 0 (no tp), class 1 -> 4/8
    pred[2, 0] = 0  # one class-2 pixel wrong: class 2 -> 7/8, class 0 -> 0/5
    ev = SemSegEvaluator(_meta(), distributed=False, seen_classes=[True, True, False])
    res = _run(ev, [(gt, pred)], 3)
    iou = np.array([0 / 5, 4 / 8, 7 / 8])
    seen, unseen = iou[:2].mean(), iou[2]
    assert res["mIoU"] == pytest.approx(100 * iou.mean())
    assert res["mIoU_seen"] == pytest.approx(100 * seen)
    assert res["mIoU_unseen"] == pytest.approx(100 * unseen)
    assert res["hIoU"] == pytest.approx(100 * 2 * seen * unseen / (seen + unseen))


def test_seen_classes_by_name_with_synonyms_and_from_metadata():
    # "heaven" matches the synonym of "sky,heaven"; "car" is unseen.
    ev = SemSegEvaluator(_meta(seen_classes=["road", "heaven"]), distributed=False)
    res = _run(ev, [(GT, GT)], 3)
    assert res["mIoU_seen"] == pytest.approx(100.0)
    assert math.isnan(res["mIoU_unseen"]) and math.isnan(res["hIoU"])
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_ground_truth_from_png_and_result_files(tmp_path):
    path = write_label_png(str(tmp_path / "gt.png"), np.where(GT == 1, 255, GT))
    ev = SemSegEvaluator(_meta(), distributed=False, output_dir=str(tmp_path / "out"))
    ev.reset()
    ev.process([{"file_name": "a.jpg", "sem_seg_file_name": path}], [{"sem_seg": one_hot_scores(GT, 3)}])
    res = ev.evaluate()
    assert res["sem_seg"]["mIoU"] == pytest.approx(100.0)
    saved = json.loads((tmp_path / "out" / "sem_seg_evaluation.json").read_text())
    assert saved["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert saved["sem_seg"]["IoU-car"] is None  # NaN is written as null
    assert torch.load(tmp_path / "out" / "sem_seg_evaluation.pth")["mIoU"] == pytest.approx(100.0)


def test_label_map_output_size_mismatch_and_missing_gt_are_errors():
    ev = SemSegEvaluator(_meta(), distributed=False)
    with pytest.raises(ValueError, match="differs"):
        ev.process([{"sem_seg": torch.as_tensor(GT)}], [{"sem_seg": torch.zeros(3, 2, 2)}])
    with pytest.raises(KeyError, match="no ground truth"):
        ev.process([{"file_name": "x.jpg"}], [{"sem_seg": torch.zeros(3, 4, 4)}])
    # (H, W) label maps are accepted as predictions too.
    ev.reset()
    ev.process([{"sem_seg": torch.as_tensor(GT)}], [{"sem_seg": torch.as_tensor(GT)}])
    assert ev.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100.0)


def test_uint16_tiff_ground_truth_with_65535_ignore(tmp_path, caplog):
    """The ADE-847 / Pascal Context 459 format: uint16 TIFF labels above 255, 65535 ignored."""
    from PIL import Image

    gt = np.array([[300, 300, 2, 65535], [300, 300, 2, 65535]], np.uint16)
    Image.fromarray(gt).save(tmp_path / "gt.tif")
    pred = np.array([[300, 2, 2, 0], [300, 300, 2, 1]])
    classes = [f"class {k}" for k in range(301)]
    ev = SemSegEvaluator(SimpleNamespace(stuff_classes=classes, ignore_label=65535), distributed=False)
    ev.reset()
    ev.process([{"file_name": "a.jpg", "sem_seg_file_name": str(tmp_path / "gt.tif")}],
               [{"sem_seg": torch.as_tensor(pred)}])
    res = ev.evaluate()["sem_seg"]
    # class 300: 3 of 4 pixels hit, no false positive -> 75; class 2: 2 hits + 1 false positive -> 66.67
    assert res["IoU-class 300"] == pytest.approx(75.0)
    assert res["IoU-class 2"] == pytest.approx(200 / 3)
    assert res["mIoU"] == pytest.approx((75.0 + 200 / 3) / 2)
    assert res["pACC"] == pytest.approx(500 / 6)
    assert "outside" not in caplog.text  # 65535 is the ignore label, not an out-of-range label


def test_miou_denominator_gt_versus_detectron2_0_6_on_a_hand_made_confusion_matrix():
    """conf[pred, gt] over 3 classes + ignore. Class 2 ("car") is predicted on 2 pixels but has
    no ground truth: Detectron2 0.6 (OVSeg's evaluator) counts it in the mIoU denominator as IoU 0;
    the GT-only convention leaves it out. Per-class IoU and every other metric are the same."""
    from frozenseg.evaluation.sem_seg_evaluation import semantic_metrics_from_confusion

    conf = np.array(
        [
            [6, 1, 0, 0],  # predicted road: 6 right, 1 on sky
            [0, 5, 0, 3],  # predicted sky: 5 right (3 on ignored pixels, excluded)
            [2, 0, 0, 0],  # predicted car on 2 road pixels; no car in the ground truth
            [0, 0, 0, 0],
        ]
    )
    iou_road = 6 / (8 + 7 - 6)  # gt 8, pred 7
    iou_sky = 5 / (6 + 5 - 5)  # gt 6, pred 5
    names = ["road", "sky", "car"]
    gt_only = semantic_metrics_from_confusion(conf, names, miou_denominator="gt")
    d2_06 = semantic_metrics_from_confusion(conf, names, miou_denominator="gt_or_pred")
    assert gt_only["mIoU"] == pytest.approx(100 * (iou_road + iou_sky) / 2)
    assert d2_06["mIoU"] == pytest.approx(100 * (iou_road + iou_sky) / 3)
    for res in (gt_only, d2_06):
        assert res["IoU-road"] == pytest.approx(100 * iou_road)
        assert math.isnan(res["IoU-car"])
        assert res["pACC"] == pytest.approx(100 * 11 / 14)
    assert {k: v for k, v in gt_only.items() if k != "mIoU" and not math.isnan(v)} == {
        k: v for k, v in d2_06.items() if k != "mIoU" and not math.isnan(v)
    }
    # a class that is neither in the ground truth nor predicted counts in neither convention
    conf_no_car = conf.copy()
    conf_no_car[2, 0], conf_no_car[0, 0] = 0, 8
    a = semantic_metrics_from_confusion(conf_no_car, names, miou_denominator="gt")["mIoU"]
    b = semantic_metrics_from_confusion(conf_no_car, names, miou_denominator="gt_or_pred")["mIoU"]
    assert a == pytest.approx(b)
    with pytest.raises(ValueError, match="gt_or_pred"):
        semantic_metrics_from_confusion(conf, names, miou_denominator="all")


def test_evaluator_and_config_select_the_miou_denominator(tmp_path):
    from frozenseg.config import get_cfg
    from frozenseg.evaluation import build_evaluator

    pred = GT.copy()
    pred[0, 0] = 2  # one pixel of the GT-absent class "car"
    iou0, iou1 = 7 / 8, 1.0
    cfg = get_cfg()
    assert cfg.TEST.SEM_SEG_MIOU_DENOMINATOR == "gt"
    res = _run(build_evaluator(cfg, "x", str(tmp_path), metadata=_meta(evaluator_type="sem_seg")), [(GT, pred)], 3)
    assert res["mIoU"] == pytest.approx(100 * (iou0 + iou1) / 2)
    cfg.TEST.SEM_SEG_MIOU_DENOMINATOR = "gt_or_pred"
    res = _run(build_evaluator(cfg, "x", str(tmp_path), metadata=_meta(evaluator_type="sem_seg")), [(GT, pred)], 3)
    assert res["mIoU"] == pytest.approx(100 * (iou0 + iou1) / 3)
    with pytest.raises(ValueError, match="TEST.SEM_SEG_MIOU_DENOMINATOR"):
        SemSegEvaluator(_meta(), distributed=False, miou_denominator="present")
