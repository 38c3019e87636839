"""The import paths users' scripts rely on keep working wherever the code behind them lives."""

from __future__ import annotations

import importlib

import pytest

from .conftest import REPO_ROOT

#: (module, attribute) pairs users import.
PUBLIC = [
    ("frozenseg", "get_cfg"),
    ("frozenseg", "build_model"),
    ("frozenseg", "load_checkpoint"),
    ("frozenseg.data", "dataset_vocabulary"),
    ("frozenseg.modeling.postprocessing", "semantic_inference"),
    ("frozenseg.modeling.postprocessing", "panoptic_inference"),
    ("frozenseg.engine.predictor", "SegmentationPredictor"),
    ("frozenseg.engine.predictor", "FrozenSegPredictor"),
    ("frozenseg.engine.predictor", "Prediction"),
    ("frozenseg.engine", "DefaultTrainer"),
    ("frozenseg.engine", "FrozenSegCheckpointer"),
    ("frozenseg.modeling.contract", "SegmentationModel"),
]


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_import_path(module, name):
    assert callable(getattr(importlib.import_module(module), name))


def test_the_predictor_and_its_prediction_are_the_package_classes():
    from frozenseg.engine.predictor import FrozenSegPredictor, Prediction, SegmentationPredictor
    from frozenseg.structures import Prediction as SharedPrediction

    assert FrozenSegPredictor is SegmentationPredictor and Prediction is SharedPrediction


def test_both_released_models_build_from_the_package_root():
    import frozenseg

    for config in ("configs/tiny/frozenseg_tiny_convnext.yaml", "configs/tiny/ovseg_tiny_swin.yaml"):
        cfg = frozenseg.get_cfg()
        cfg.merge_from_file(str(REPO_ROOT / config))
        model = frozenseg.build_model(cfg, device="meta")
        assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
