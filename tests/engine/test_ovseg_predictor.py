"""The predictor with the tiny random OVSeg (random weights: outputs are checked for form and
consistency, not quality): semantic only, literal class strings, the caller's list untouched
with one class, and the pixels the model leaves unlabelled (demo mode)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.engine.predictor import SegmentationPredictor, UnsupportedTaskError, model_tasks
from frozenseg.utils.prediction_io import write_prediction
from frozenseg.utils.visualizer import SegmentationVisualizer

from ..conftest import REPO_ROOT
from .test_predictor import scene

OVSEG_TINY = str(REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml")
OVSEG_OPTS = ["SEED", "0"]
DEMO_MODE_OPTS = ["MODEL.META_ARCHITECTURE", "OVSegDEMO", "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", "0.0",
                  "MODEL.CLIP_ADAPTER.MASK_THR", "0.35"]

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ovseg():
    return SegmentationPredictor.from_config_file(OVSEG_TINY, opts=OVSEG_OPTS, vocabulary=["sky", "grass"],
                                                  task=None)


def test_semantic_only_with_one_sentence_for_other_tasks(ovseg):
    assert model_tasks(ovseg.model) == ("semantic",) and ovseg.task == "semantic"
    for task in ("panoptic", "instance"):
        with pytest.raises(UnsupportedTaskError) as e:
            ovseg.set_task(task)
        assert str(e.value) == (f"OVSeg does not do {task} segmentation (it gives semantic output only); "
                                "use --task semantic.")
    assert ovseg.task == "semantic"


def test_class_strings_reach_the_model_verbatim(ovseg):
    """A comma is part of the class string (one prompt), from a list and from command-line text."""
    calls = []
    builder = ovseg.model.text_classifier_builder
    build = builder.build

    def spy(names, literal=False, cached=True):
        calls.append((list(names), literal))
        return build(names, literal=literal, cached=cached)

    builder.build = spy
    try:
        ovseg.set_vocabulary([" cat, kitten", "dog", "grass "])
        assert ovseg.class_names == ovseg.model.vocabulary.class_names == ["cat, kitten", "dog", "grass"]
        assert ovseg.model.vocabulary.literal and ovseg.model.vocabulary.prompts == [["cat, kitten"], ["dog"], ["grass"]]
        ovseg.set_vocabulary(load_vocabulary("cat,kitten;dog;grass", literal=True))
        assert ovseg.model.vocabulary.class_names == ["cat,kitten", "dog", "grass"]
        pred = ovseg(scene())
        assert calls[0] == (["cat, kitten", "dog", "grass"], True)
        assert all(c == (["cat,kitten", "dog", "grass"], True) for c in calls[1:])
        assert {s["class"] for s in pred.segments} <= {"cat,kitten", "dog", "grass"}
        assert sum(s["area"] for s in pred.segments) == 48 * 64  # every pixel labelled (OVSeg rule)
    finally:
        builder.build = build
        ovseg.set_vocabulary(["sky", "grass"])


def test_one_class_vocabulary_leaves_the_callers_list_unchanged(ovseg):
    """The release appends "others" to the caller's list (docs/models/ovseg.md quirk 15); here the list, the
    predictor's and the model's vocabularies keep one class, and the pixels where "others" wins
    are unlabelled."""
    names = ["cat"]
    try:
        ovseg.set_vocabulary(names)
        pred = ovseg(scene())
        assert names == ["cat"] and ovseg.class_names == ["cat"] and pred.class_names == ["cat"]
        assert ovseg.model.vocabulary.class_names == ["cat"]
        scores = pred.raw["sem_seg_scores"]
        assert "sem_seg" not in pred.raw and scores.shape == (1, 48, 64) and scores.marks_unlabelled
        unlabelled = (scores.full() == 0).all(0).numpy()
        assert np.array_equal(pred.ids == 255, unlabelled) and set(np.unique(pred.ids)) <= {0, 255}
        assert sum(s["area"] for s in pred.segments) == int((~unlabelled).sum())
    finally:
        ovseg.set_vocabulary(["sky", "grass"])


def test_unlabelled_pixels_are_ids_255_uncoloured_and_in_no_segment(ovseg, tmp_path):
    """A model output with ``sem_seg_unlabelled``: those pixels are 255 in the id map and PNG,
    keep the image's colours in the overlay and belong to no segment of the JSON."""
    sem = torch.zeros(2, 48, 64)
    sem[0, :, :32] = 2.0
    sem[1, :, 32:] = 1.0
    sem[:, :10] = 0.0  # the top rows: no class scores
    unlabelled = (sem == 0).all(0)
    image = scene()
    pred = ovseg._to_prediction(image, {"sem_seg": sem, "sem_seg_unlabelled": unlabelled})
    expected = np.full((48, 64), 255)
    expected[10:, :32], expected[10:, 32:] = 0, 1
    assert np.array_equal(pred.ids, expected)
    assert [(s["class"], s["area"]) for s in pred.segments] == [("sky", 38 * 32), ("grass", 38 * 32)]
    flat = SegmentationVisualizer(alpha=1.0, contours=False, min_label_area=10**9)
    overlay = flat.draw_prediction(pred, legend=False)
    assert np.array_equal(overlay[:10], image[:10]) and not np.array_equal(overlay[10:], image[10:])
    paths = write_prediction(pred, str(tmp_path), overlay=overlay, stem="x")
    assert np.array_equal(cv2.imread(paths["ids"], cv2.IMREAD_UNCHANGED), expected)
    meta = json.loads(open(paths["segments"]).read())
    assert meta["none_value"] == 255 and sum(s["area"] for s in meta["segments"]) == 38 * 64


def test_demo_mode_model_marks_its_unlabelled_pixels():
    """OVSegDEMO (the release's demo rule) reports the pixels no kept proposal covers; the
    predictor shows exactly those as unlabelled."""
    demo = SegmentationPredictor.from_config_file(OVSEG_TINY, opts=OVSEG_OPTS + DEMO_MODE_OPTS,
                                                  vocabulary=["sky", "grass", "cat,kitten"], task="semantic")
    assert type(demo.model).__name__ == "OVSegDEMO"
    pred = demo(scene())
    scores = pred.raw["sem_seg_scores"]
    assert scores.marks_unlabelled
    unlabelled = scores.summarize().all_zero
    assert unlabelled.dtype == torch.bool and torch.equal(unlabelled, (scores.full() == 0).all(0))
    demo.model.full_semantic_map = True  # Detectron2's outputs: the same pixels
    raw = demo.model([demo._model_input(scene())])[0]
    assert torch.equal(raw["sem_seg_unlabelled"], unlabelled) and torch.equal(raw["sem_seg"], scores.full())
    assert np.array_equal(pred.ids == 255, unlabelled.numpy())
    assert sum(s["area"] for s in pred.segments) == int((~unlabelled).sum())
