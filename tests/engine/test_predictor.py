"""The predictor (frozenseg.engine.predictor) with the tiny random model: tasks, vocabularies
(verbatim dataset vocabularies with their colours), outputs and the files written for them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from frozenseg.data import MetadataCatalog
from frozenseg.data.dataset_mappers.test_mapper import TestDatasetMapper
from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.engine.predictor import FrozenSegPredictor, SegmentationPredictor
from frozenseg.utils.prediction_io import write_prediction
from frozenseg.utils.visualizer import SegmentationVisualizer

from ..conftest import REPO_ROOT

TINY = str(REPO_ROOT / "configs/tiny/frozenseg_tiny_convnext.yaml")
# faster than the tiny config's defaults, same code paths
FAST_OPTS = ["SEED", "0", "MODEL.SAM_IMAGE_SIZE", "256", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128"]

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene(h=48, w=64) -> np.ndarray:
    """An (h, w, 3) uint8 RGB image: sky, grass and a red disc."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (110, 170, 235)
    img[h // 2 :] = (60, 150, 50)
    cv2.circle(img, (w // 3, h // 2), h // 4, (220, 40, 40), -1)
    return img


def tiny_predictor() -> SegmentationPredictor:
    """The tiny random model's predictor, vocabulary ["cat"], panoptic task."""
    return FrozenSegPredictor.from_config_file(TINY, opts=FAST_OPTS, vocabulary=["cat"], task="panoptic")


@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


def test_preprocessing_is_the_test_mappers(predictor, tmp_path):
    """The model input of an array is what TestDatasetMapper makes of the same image on disk."""
    image = scene(90, 120)
    Image.fromarray(image).save(tmp_path / "scene.png")
    mapped = TestDatasetMapper.from_config(predictor.cfg)({"file_name": str(tmp_path / "scene.png")})
    got = predictor._model_input(image)
    assert (got["height"], got["width"]) == (mapped["height"], mapped["width"]) == (90, 120)
    assert got["image"].shape == (3, 64, 85) and torch.equal(got["image"], mapped["image"])


def test_instance_task_and_written_files(predictor, tmp_path):
    try:
        predictor.set_vocabulary(["cat,kitten", "dog"])
        predictor.set_task("instance", confidence_threshold=0.0)
        pred = predictor(scene())
        assert pred.segments and all(s["class"] in ("cat", "dog") for s in pred.segments)
        scores = [s["score"] for s in pred.segments]
        assert scores == sorted(scores, reverse=True)
        paths = write_prediction(pred, str(tmp_path / "inst"), overlay=SegmentationVisualizer().draw_prediction(pred),
                                 stem="x")
        assert all(Path(p).is_file() for p in paths.values())
        assert Path(paths["ids"]).name == "x_ids.png"
        ids = cv2.imread(paths["ids"], cv2.IMREAD_UNCHANGED)
        assert np.array_equal(ids, pred.ids)
        assert not list((tmp_path / "inst").glob(".tmp-*"))  # written atomically, nothing left over
    finally:
        predictor.set_task("panoptic", confidence_threshold=None)
        predictor.set_vocabulary(["cat"])


@pytest.mark.slow
def test_dataset_vocabulary_is_used_verbatim_with_the_benchmark_colours(predictor):
    """A benchmark vocabulary reaches the model exactly as registered (the release's strings:
    repeated display names in A-847, "window " with its space) and draws in the release's colours."""
    v = load_vocabulary(dataset_vocabulary="openvocab_ade20k_instance_val")
    assert v.class_names[1] == "window " and v.thing_classes is None
    assert v.colors is not None and len(v.colors) == 100  # generated: the release gives none here
    v = load_vocabulary(dataset_vocabulary="openvocab_ade20k_panoptic_val")
    meta = MetadataCatalog.get("openvocab_ade20k_panoptic_val")
    assert v.colors[0] == (120, 120, 120) and v.colors == [tuple(c) for c in meta.stuff_colors]
    assert v.thing_classes == sorted(meta.thing_dataset_id_to_contiguous_id.values())
    a847 = load_vocabulary(dataset_vocabulary="openvocab_ade20k_full_sem_seg_val")
    try:
        predictor.set_vocabulary(a847)  # "pot,flowerpot" and "pot": no duplicate-class error
        assert predictor.class_names == MetadataCatalog.get("openvocab_ade20k_full_sem_seg_val").stuff_classes
        predictor.set_vocabulary(v)
        predictor.set_task("semantic")
        pred = predictor(scene())
        assert pred.class_colors == v.colors
        # fill only (no blending, outlines or labels): a class's pixels are the release's colour
        flat = SegmentationVisualizer(alpha=1.0, contours=False, min_label_area=10**9)
        overlay = flat.draw_prediction(pred, legend=False)
        assert overlay.shape[:2] == pred.ids.shape and pred.segments
        for s in pred.segments:
            assert (overlay[pred.ids == s["category_id"]] == v.colors[s["category_id"]]).all()
    finally:
        predictor.set_task("panoptic")
        predictor.set_vocabulary(["cat"])


def _strip(h: int, w: int) -> np.ndarray:
    """An (h, w, 3) uint8 image of two bands (as in 20000x30 and 20000x50 images)."""
    img = np.full((h, w, 3), (110, 170, 235), np.uint8)
    img[h // 2 :] = (60, 150, 50)
    return img


@pytest.mark.slow
def test_extreme_aspect_ratios_are_refused_in_one_sentence_or_segmented(predictor, tmp_path):
    """A 20000x30 image made the resize round its height to 0 (RuntimeError) and a 20000x50 one
    was squeezed to 1 px: now the image is refused in one sentence naming it when no input within
    the pixel budget keeps a 32 px short side, else segmented at such an input; the predictor
    goes on with the next image either way."""
    from frozenseg.data.dataset_mappers.test_mapper import ImageSizeError

    path = tmp_path / "strip.png"
    Image.fromarray(_strip(30, 20000)).save(path)
    with pytest.raises(ImageSizeError) as e:  # FAST_OPTS: 64 x 128 = 8192 input pixels at most
        predictor(str(path))
    assert str(e.value).startswith(f"Image {str(path)!r} (20000x30 pixels) is too elongated to segment: ")
    with pytest.raises(ImageSizeError, match=r"^The image \(20000x50 pixels\) is too elongated"):
        predictor(_strip(50, 20000))
    assert predictor(scene()).ids.shape == (48, 64)  # the next image is fine

    cfg = predictor.cfg.clone()
    cfg.defrost()
    cfg.INPUT.MAX_SIZE_TEST = 8000  # 64 x 8000 pixels: enough for 20000x50, not for 20000x30
    wide = SegmentationPredictor(cfg, model=predictor.model, vocabulary=["sky", "grass"], task="semantic")
    with pytest.raises(ImageSizeError, match="raise INPUT.MAX_SIZE_TEST to 10667"):
        wide(_strip(30, 20000))
    for h, w in [(50, 20000), (20000, 50)]:
        assert tuple(wide._model_input(_strip(h, w))["image"].shape[1:]) in [(36, 14311), (14311, 36)]
        pred = wide(_strip(h, w))
        assert pred.ids.shape == (h, w) and sum(s["area"] for s in pred.segments) == h * w


def test_python_api_refuses_bad_input_in_one_sentence():
    """A vocabulary given as one string is parsed like the command line's, not split into letters;
    non-text classes, an empty image and thresholds outside [0, 1] (NaN included) are refused in
    one sentence, and the predictor keeps working."""
    from frozenseg.data.vocabulary import VocabularyError
    from frozenseg.engine.predictor import ThresholdError

    predictor = tiny_predictor()
    predictor.set_vocabulary("cat")
    assert predictor.class_names == ["cat"]
    predictor.set_vocabulary("cat,kitten; dog")
    assert predictor.class_names == ["cat,kitten", "dog"]
    with pytest.raises(VocabularyError, match=r"^vocabulary: class #1 is None, not text; give every class"):
        predictor.set_vocabulary([None])
    with pytest.raises(ValueError, match=r"^The image is empty \(0x0 pixels\); give an image of at least 1x1\.$"):
        predictor(np.zeros((0, 0, 3), np.uint8))
    for bad in (7.0, float("nan"), -0.1, "high"):
        with pytest.raises(ThresholdError, match=r"^The confidence threshold must be a number from 0 to 1; got "):
            predictor.set_task("panoptic", bad)
    predictor.set_vocabulary(["cat"])
    predictor.set_task("panoptic", 0.5)
    assert predictor.confidence_threshold == 0.5 and predictor(scene()).ids.shape == scene().shape[:2]
    with pytest.raises(ThresholdError):
        tiny_predictor().__class__(predictor.cfg, model=predictor.model, confidence_threshold=float("nan"))
