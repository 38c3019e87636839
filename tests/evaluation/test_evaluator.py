"""Evaluator protocol helpers: DatasetEvaluators, inference_on_dataset, print_csv_format."""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from frozenseg.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
    inference_on_dataset,
    print_csv_format,
)

from .eval_test_utils import one_hot_scores


def test_print_csv_format_copypaste_lines(caplog):
    results = OrderedDict(
        [
            ("sem_seg", OrderedDict([("mIoU", 58.333333), ("IoU-road", 50.0), ("fwIoU", 1.0), ("hIoU", float("nan"))])),
            ("panoptic_seg", OrderedDict([("PQ", 100.0), ("SQ", 99.5)])),
            ("num_images", 3),
        ]
    )
    with caplog.at_level(logging.INFO, logger="frozenseg.evaluation"):
        print_csv_format(results)
    lines = [r.getMessage() for r in caplog.records if r.name == "frozenseg.evaluation.evaluator"]
    assert lines == [
        "copypaste: Task: sem_seg",
        "copypaste: mIoU,fwIoU,hIoU",  # per-class entries (with "-") are left out
        "copypaste: 58.3333,1.0000,nan",
        "copypaste: Task: panoptic_seg",
        "copypaste: PQ,SQ",
        "copypaste: 100.0000,99.5000",
        "copypaste: num_images=3",
    ]


class _Fixed(DatasetEvaluator):
    def __init__(self, task):
        self.task, self.calls = task, []

    def reset(self):
        self.calls.append("reset")

    def process(self, inputs, outputs):
        self.calls.append(len(inputs))

    def evaluate(self):
        return {self.task: {"x": 1.0}}


def test_dataset_evaluators_merge_and_reject_duplicate_tasks():
    a, b = _Fixed("a"), _Fixed("b")
    evs = DatasetEvaluators([a, b])
    evs.reset()
    evs.process([{}, {}], [{}, {}])
    assert evs.evaluate() == {"a": {"x": 1.0}, "b": {"x": 1.0}}
    assert a.calls == ["reset", 2] and len(evs) == 2
    with pytest.raises(KeyError, match="same key"):
        DatasetEvaluators([_Fixed("a"), _Fixed("a")]).evaluate()


class _EchoModel(nn.Module):
    """Returns the ground truth as a one-hot semantic prediction; records its mode."""

    def __init__(self):
        super().__init__()
        self.modes, self.grad_enabled = [], []
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        return [{"sem_seg": one_hot_scores(x["sem_seg"].numpy(), 2) + 0 * self.w} for x in batch]


def test_inference_on_dataset_runs_in_eval_mode_without_grad(caplog):
    gt = torch.as_tensor(np.array([[0, 1], [1, 1]]))
    loader = [[{"file_name": f"{i}.jpg", "sem_seg": gt}] for i in range(7)]
    model = _EchoModel().train()
    ev = SemSegEvaluator(None, distributed=False, metadata=type("M", (), {"stuff_classes": ["a", "b"]})())
    with caplog.at_level(logging.INFO, logger="frozenseg.evaluation"):
        results = inference_on_dataset(model, loader, ev, log_period_s=0.0)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert model.modes == [False] * 7 and model.grad_enabled == [False] * 7
    assert model.training  # mode restored
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Start inference on 7 batches") for m in messages)
    assert any(m.startswith("Inference done") for m in messages)
    assert any(m.startswith("Total inference time") for m in messages)
    # A list of evaluators and no evaluator are accepted too.
    assert inference_on_dataset(model, loader, [_Fixed("t")]) == {"t": {"x": 1.0}}
    assert inference_on_dataset(model, loader, None) == {}


def test_comm_without_process_group_is_single_process():
    from frozenseg.utils import comm

    assert comm.get_world_size() == 1 and comm.get_rank() == 0 and comm.is_main_process()
    assert comm.all_gather({"a": 1}) == [{"a": 1}]
    assert comm.gather(3) == [3]
    comm.synchronize()  # no-op


class _Shapes(DatasetEvaluator):
    """Records, per image, the model input size and the size of the semantic output."""

    def reset(self):
        self.seen = []

    def process(self, inputs, outputs):
        for x, y in zip(inputs, outputs):
            self.seen.append((x["image_id"], tuple(x["image"].shape[1:]), tuple(y["sem_seg"].shape[1:])))

    def evaluate(self):
        return {"shapes": {"n": float(len(self.seen))}}


@pytest.mark.slow
def test_inference_on_dataset_goes_through_an_image_too_elongated_for_the_predictor(tmp_path, caplog):
    """A 20000x30 image in a dataset crashed the test-time resize (height 0).
    Evaluation segments it at the largest input within the pixel budget (with a warning), so the
    benchmark keeps one prediction per image, and goes on with the next image."""
    from PIL import Image

    from frozenseg.data import build_detection_test_loader
    from frozenseg.data.dataset_mappers import TestDatasetMapper

    from ..engine.test_predictor import _strip, scene, tiny_predictor

    Image.fromarray(_strip(30, 20000)).save(tmp_path / "strip.png")
    Image.fromarray(scene()).save(tmp_path / "scene.png")
    dataset = [{"file_name": str(tmp_path / "strip.png"), "image_id": 1},
               {"file_name": str(tmp_path / "scene.png"), "image_id": 2}]
    loader = build_detection_test_loader(dataset=dataset, mapper=TestDatasetMapper(64, 128), num_workers=0)
    model = tiny_predictor().model
    ev = _Shapes()
    with caplog.at_level(logging.WARNING, logger="frozenseg.data"):
        assert inference_on_dataset(model, loader, ev) == {"shapes": {"n": 2.0}}
    (id1, in1, out1), (id2, in2, out2) = ev.seen
    assert (id1, out1, id2, out2) == (1, (30, 20000), 2, (48, 64))
    assert in1[1] == 256 and 1 <= in1[0] < 32 and in2 == (64, 85)
    assert "(20000x30 pixels) is too elongated for a 32 px short side" in caplog.text
