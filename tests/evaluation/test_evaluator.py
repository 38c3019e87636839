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
