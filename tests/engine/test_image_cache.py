"""The vocabulary-free image cache: a new vocabulary, task or threshold for an image seen before
reuses its features and gives exactly the results of a fresh run (both models, every task, with
and without the SAM-mask ensemble)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import frozenseg
from frozenseg.engine.predictor import ImageFeatureCache, SegmentationPredictor, image_key
from frozenseg.modeling.contract import ImageFeatures

from ..conftest import REPO_ROOT
from .test_predictor import FAST_OPTS, TINY, scene

OVSEG_TINY = str(REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml")
# random weights: keep every query so that panoptic segments exist
FROZENSEG_OPTS = FAST_OPTS + ["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same(a, b) -> None:
    assert np.array_equal(a.ids, b.ids) and a.segments == b.segments and a.task == b.task


def _photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = scene(60, 80)
    img[rng.random((60, 80)) < 0.1] = 255
    return img


@pytest.fixture(scope="module")
def frozenseg_pair():
    cached = SegmentationPredictor.from_config_file(TINY, opts=FROZENSEG_OPTS, vocabulary=["sky", "grass", "cat"])
    fresh = SegmentationPredictor(cached.cfg, vocabulary=["sky", "grass", "cat"], model=cached.model, image_cache_bytes=0)
    return cached, fresh


@pytest.mark.parametrize("task", ["panoptic", "semantic", "instance"])
def test_frozenseg_new_vocabulary_task_and_threshold_reuse_the_image(frozenseg_pair, task, monkeypatch):
    cached, fresh = frozenseg_pair
    image = _photo()
    cached.image_cache.clear()
    cached.set_vocabulary(["sky", "grass", "cat"])
    cached.set_task("panoptic")
    first = cached(image)
    assert not first.reused_image_features and len(cached.image_cache) == 1

    calls = []
    monkeypatch.setattr(type(cached.model), "encode_images",
                        lambda self, x, original=type(cached.model).encode_images: calls.append(1) or original(self, x))
    vocabulary = ["sky,heaven", "grass", "road", "red disc,circle", "tree"]
    cached.set_vocabulary(vocabulary)
    cached.set_task(task, confidence_threshold=0.1)
    again = cached(image)
    assert again.reused_image_features and calls == []  # nothing vocabulary-free was recomputed

    fresh.set_vocabulary(vocabulary)
    fresh.set_task(task, confidence_threshold=0.1)
    reference = fresh(image)
    assert not reference.reused_image_features
    _same(again, reference)
    assert again.segments  # a real comparison


def test_frozenseg_split_forward_equals_forward_with_the_sam_ensemble():
    """classify_images(encode_images(x)) == forward(x) for every output, SAM proposals included."""
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(TINY)
    cfg.merge_from_list(FROZENSEG_OPTS)
    torch.manual_seed(0)
    model = frozenseg.build_model(cfg).eval()
    model.set_vocabulary(["sky", "grass", "cat,kitten", "zebra"], thing_classes=[2, 3])
    model.use_sam_masks = True
    model.set_tasks(("panoptic", "semantic", "instance", "proposals"))
    sam = torch.randn(3, 60, 80, generator=torch.Generator().manual_seed(1)) * 5
    x = [{"image": torch.from_numpy(_photo()).permute(2, 0, 1), "sam_masks": sam, "height": 45, "width": 60}]
    with torch.no_grad():
        whole = model(x)[0]
        features = model.encode_images(x)
        model.set_vocabulary(["tree", "sky", "zebra"])  # in between: the features do not change
        model.set_vocabulary(["sky", "grass", "cat,kitten", "zebra"], thing_classes=[2, 3])
        split = model.classify_images(x, features)[0]
    assert isinstance(features[0], ImageFeatures) and features[0].nbytes > 0
    assert {"sem_seg", "panoptic_seg", "instances", "proposals"} <= set(whole)
    assert torch.equal(whole["sem_seg"], split["sem_seg"])
    assert torch.equal(whole["panoptic_seg"][0], split["panoptic_seg"][0]) and whole["panoptic_seg"][1] == split["panoptic_seg"][1]
    for k in ("pred_masks", "scores", "pred_classes", "pred_boxes"):
        assert torch.equal(getattr(whole["instances"], k), getattr(split["instances"], k)), k
    assert torch.equal(whole["proposals"], split["proposals"])


@pytest.mark.parametrize("demo", [False, True])
def test_ovseg_new_vocabulary_reuses_the_image(demo):
    opts = ["SEED", "0"] + (["MODEL.META_ARCHITECTURE", "OVSegDEMO", "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", "0.0"]
                            if demo else [])
    cached = SegmentationPredictor.from_config_file(OVSEG_TINY, opts=opts, vocabulary=["sky", "grass"], task="semantic")
    fresh = SegmentationPredictor(cached.cfg, vocabulary=["sky", "grass"], task="semantic", model=cached.model,
                                  image_cache_bytes=0)
    image = _photo(1)
    assert not cached(image).reused_image_features
    for vocabulary in (["a red disc", "the sky", "grass", "a road"], ["cat"]):
        cached.set_vocabulary(vocabulary)
        fresh.set_vocabulary(vocabulary)
        again, reference = cached(image), fresh(image)
        assert again.reused_image_features
        _same(again, reference)


def test_cache_is_least_recently_used_within_its_memory_budget():
    def features(nbytes: int) -> ImageFeatures:
        return ImageFeatures({"t": torch.zeros(nbytes // 4)}, {})

    cache = ImageFeatureCache(1000)
    cache.put("a", features(400))
    cache.put("b", features(400))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", features(400))  # over budget: b, the least recently used, goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.nbytes == 800
    cache.put("huge", features(2000))  # larger than the budget: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2
    assert ImageFeatureCache(0).budget_bytes == 0


def test_image_key_follows_pixels_and_size():
    a = scene()
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert image_key(a) == image_key(a.copy()) != image_key(b)
    assert image_key(np.zeros((2, 6, 3), np.uint8)) != image_key(np.zeros((3, 4, 3), np.uint8))
