"""TEST.IMS_PER_BATCH: the test loader's batches, the same metrics as one image at a time, and an
image too elongated for the predictor inside a batch."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from frozenseg.data import build_detection_test_loader
from frozenseg.data.dataset_mappers import TestDatasetMapper
from frozenseg.engine.defaults import DefaultTrainer
from frozenseg.evaluation import DatasetEvaluator, inference_on_dataset
from frozenseg.utils.errors import ConfigValueError

from .conftest import datasets_registered_at, make_shapes, tiny_cfg
from .test_predictor import _strip, scene, tiny_predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_loader_yields_batches_of_the_configured_size(tmp_path, caplog):
    dataset = [{"file_name": f"x{i}.png", "image_id": i} for i in range(7)]
    cfg = tiny_cfg(tmp_path, "TEST.IMS_PER_BATCH", 3)
    with caplog.at_level(logging.INFO, logger="frozenseg.data"):
        loader = build_detection_test_loader(cfg, dataset=dataset, mapper=dict, num_workers=0)
        batches = [[d["image_id"] for d in batch] for batch in loader]
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert "7 of 7 images in this process, 3 per batch, 0 data worker(s)" in caplog.text
    one = build_detection_test_loader(dataset=dataset, mapper=dict, num_workers=0)
    assert [len(b) for b in one] == [1] * 7  # without a config: one image per batch
    for bad in (0, -2):
        with pytest.raises(ConfigValueError, match=r"^TEST.IMS_PER_BATCH must be a positive integer"):
            build_detection_test_loader(tiny_cfg(tmp_path, "TEST.IMS_PER_BATCH", bad), dataset=dataset, mapper=dict)


@pytest.mark.slow
def test_metrics_with_batches_of_three_equal_one_image_at_a_time(tmp_path):
    root = make_shapes(tmp_path / "datasets", num_train=2, num_val=7, size=64)
    with datasets_registered_at(root):
        results = {}
        for batch in (1, 3):
            cfg = tiny_cfg(tmp_path / f"out{batch}", "TEST.IMS_PER_BATCH", batch)
            torch.manual_seed(0)
            model = DefaultTrainer.build_model(cfg)
            results[batch] = DefaultTrainer.test(cfg, model)
    assert results[1]["sem_seg"]["mIoU"] > 0 and results[1]["panoptic_seg"]["PQ"] >= 0
    assert _flat(results[3]) == pytest.approx(_flat(results[1]), abs=1e-6, nan_ok=True)


def _flat(results: dict) -> dict:
    return {f"{task}/{k}": v for task, metrics in results.items() for k, v in metrics.items()}


class _Recorder(DatasetEvaluator):
    """Keeps the outputs of every batch."""

    def reset(self):
        self.batches = []

    def process(self, inputs, outputs):
        self.batches.append(outputs)

    def evaluate(self):
        return {"n": {"batches": float(len(self.batches))}}


@pytest.mark.slow
def test_an_image_too_elongated_for_the_predictor_does_not_stop_its_batch(tmp_path, caplog):
    """The 20000x30 strip is segmented at the largest input within the pixel budget (with a
    warning) together with ordinary images, each with the prediction of a batch of one."""
    Image.fromarray(_strip(30, 20000)).save(tmp_path / "strip.png")
    Image.fromarray(scene()).save(tmp_path / "scene.png")
    Image.fromarray(scene(50, 70)).save(tmp_path / "scene2.png")
    dataset = [{"file_name": str(tmp_path / n), "image_id": i} for i, n in enumerate(["scene.png", "strip.png", "scene2.png"])]
    model = tiny_predictor().model
    outputs = {}
    for batch in (1, 3):
        loader = build_detection_test_loader(dataset=dataset, mapper=TestDatasetMapper(64, 128), num_workers=0,
                                             batch_size=batch)
        with caplog.at_level(logging.WARNING, logger="frozenseg.data"):
            recorder = _Recorder()
            assert inference_on_dataset(model, loader, recorder) == {"n": {"batches": float(4 - batch)}}
            outputs[batch] = recorder.batches
    assert [len(o) for o in outputs[3]] == [3] and [len(o) for o in outputs[1]] == [1, 1, 1]
    singles = [o[0] for o in outputs[1]]
    for one, batched in zip(singles, outputs[3][0]):
        torch.testing.assert_close(batched["sem_seg"], one["sem_seg"], rtol=0, atol=1e-5)
        assert torch.equal(batched["panoptic_seg"][0], one["panoptic_seg"][0])
    assert singles[1]["sem_seg"].shape[1:] == (30, 20000)
    assert "(20000x30 pixels) is too elongated for a 32 px short side" in caplog.text
