"""Cityscapes evaluators on one synthetic 32x64 frame (skipped without cityscapesScripts)."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip(
    "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
    reason="cityscapesScripts (and pyquaternion) are needed for the Cityscapes evaluators",
)

from frozenseg.evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator  # noqa: E402
from frozenseg.evaluation.cityscapes_evaluation import cityscapes_image_key  # noqa: E402

from .eval_test_utils import make_instances, one_hot_scores  # noqa: E402

H, W = 32, 64
ROAD, SIDEWALK, CAR = 7, 8, 26  # Cityscapes label ids; train ids 0, 1, 13
FRAME = "frankfurt_000000_000294"


@pytest.fixture
def frame(tmp_path):
    label_ids = np.full((H, W), SIDEWALK, dtype=np.uint8)
    label_ids[: H // 2] = ROAD
    car = np.zeros((H, W), dtype=bool)
    car[20:30, 10:30] = True  # 200 px (above the 100 px minimum region size)
    label_ids[car] = CAR
    instance_ids = label_ids.astype(np.uint16)
    instance_ids[car] = CAR * 1000
    city = tmp_path / "gtFine" / "val" / "frankfurt"
    city.mkdir(parents=True)
    Image.fromarray(label_ids).save(city / f"{FRAME}_gtFine_labelIds.png")
    Image.fromarray(instance_ids).save(city / f"{FRAME}_gtFine_instanceIds.png")
    train_ids = np.where(label_ids == ROAD, 0, np.where(label_ids == SIDEWALK, 1, 13))
    meta = SimpleNamespace(
        gt_dir=str(tmp_path / "gtFine" / "val"),
        thing_dataset_id_to_contiguous_id={24: 11, 25: 12, CAR: 13},
        thing_classes=["road", "sidewalk"] + [f"c{i}" for i in range(2, 13)] + ["car"],
    )
    inp = {"file_name": os.path.join("leftImg8bit", "val", "frankfurt", f"{FRAME}_leftImg8bit.png"), "image_id": FRAME}
    return SimpleNamespace(meta=meta, input=inp, train_ids=train_ids, car=car)


def test_image_key():
    assert cityscapes_image_key(f"/x/{FRAME}_gtFine_labelIds.png") == FRAME


def test_semantic_perfect_prediction_is_100(frame, tmp_path):
    ev = CityscapesSemSegEvaluator(frame.meta, distributed=False, output_dir=str(tmp_path / "out"))
    ev.reset()
    ev.process([frame.input], [{"sem_seg": one_hot_scores(frame.train_ids, 19)}])
    res = ev.evaluate()["sem_seg"]
    for key in ("IoU", "iIoU", "IoU_sup", "iIoU_sup"):
        assert res[key] == pytest.approx(100.0), key
    assert (tmp_path / "out" / "cityscapes_sem_seg_evaluation.json").exists()


def test_instance_perfect_and_empty_predictions(frame):
    ev = CityscapesInstanceEvaluator(frame.meta, distributed=False)
    ev.reset()
    ev.process([frame.input], [{"instances": make_instances([frame.car], [13], [0.9], hw=(H, W))}])
    res = ev.evaluate()["segm"]
    assert res["AP"] == pytest.approx(100.0) and res["AP50"] == pytest.approx(100.0)

    ev.reset()
    ev.process([frame.input], [{"instances": make_instances([], [], [], hw=(H, W))}])
    res = ev.evaluate()["segm"]
    assert res["AP"] == 0.0 and not math.isnan(res["AP50"])


def test_missing_ground_truth_is_an_error(frame):
    ev = CityscapesSemSegEvaluator(frame.meta, distributed=False)
    ev.process([{"file_name": "bonn_000000_000001_leftImg8bit.png"}], [{"sem_seg": torch.zeros(19, H, W)}])
    with pytest.raises(FileNotFoundError, match="bonn_000000_000001"):
        ev.evaluate()
