"""The test-time input size of TestDatasetMapper: Detectron2's shortest-edge rule for ordinary
images, and the rule for extreme aspect ratios (under the plain rule a 20000x30 image would round
its height to 0, and a 20000x50 one would be squeezed to 1x256)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from frozenseg.data.dataset_mappers import TestDatasetMapper, shortest_edge_size
from frozenseg.data.dataset_mappers.test_mapper import MIN_SIDE, ImageSizeError
from frozenseg.utils.errors import UserInputError


@pytest.mark.parametrize("min_size,max_size", [(800, 1333), (128, 256), (64, 128), (32, 48)])
@pytest.mark.parametrize("h,w", [(1, 1), (480, 640), (640, 480), (100, 1000), (64, 128), (30, 200), (7, 3)])
def test_ordinary_images_keep_detectron2_sizes(min_size, max_size, h, w):
    """Wherever Detectron2's rule keeps the short side at the minimum, its size is used as is."""
    expected = shortest_edge_size(h, w, min_size, max_size)
    mapper = TestDatasetMapper(min_size, max_size)
    if min(expected) >= mapper.min_side:
        assert mapper.input_size(h, w) == expected


@pytest.mark.parametrize("h,w,expected", [(30, 20000, (40, 26663)), (50, 20000, (52, 20653)),
                                          (20000, 50, (20653, 52))])
def test_extreme_aspect_ratios_get_a_usable_input(h, w, expected):
    """The released test sizes (800/1333): the short side stays >= 32 px and the input within
    800 x 1333 pixels, the long side exceeding 1333 (instead of 0x1333 / 1x1333)."""
    mapper = TestDatasetMapper(800, 1333)
    assert min(shortest_edge_size(h, w, 800, 1333)) <= 3  # what Detectron2's rule gives
    size = mapper.input_size(h, w)
    assert size == expected
    assert min(size) >= MIN_SIDE == mapper.min_side and size[0] * size[1] <= 800 * 1333 * (1 + 0.5 / 32)  # budget up to rounding
    assert abs(size[0] / size[1] - h / w) / (h / w) < 0.02  # aspect ratio kept


def test_the_largest_factor_within_the_budget_is_used():
    """Every size the rule returns is within the budget (up to rounding), has the minimum short
    side, and is not smaller than the short-edge target allows."""
    mapper = TestDatasetMapper(64, 128)
    budget = 64 * 128
    for h, w in [(32, 200), (20, 150), (150, 25), (40, 250), (10, 75)]:
        hh, ww = mapper.input_size(h, w)
        assert min(hh, ww) >= 32
        assert hh * ww <= budget * (1 + 0.5 / 32)
        scale = min(64 / min(h, w), math.sqrt(budget / (h * w)))
        assert (hh, ww) == (int(h * scale + 0.5), int(w * scale + 0.5))


def test_refusal_is_one_sentence_and_its_fix_works():
    mapper = TestDatasetMapper(64, 128)
    with pytest.raises(ImageSizeError) as e:
        mapper.input_size(30, 20000, "strip.png")
    msg = str(e.value)
    assert isinstance(e.value, UserInputError) and isinstance(e.value, ValueError)
    assert msg == (
        "Image 'strip.png' (20000x30 pixels) is too elongated to segment: a 32 px short side needs "
        "more than the 8192 input pixels allowed (INPUT.MIN_SIZE_TEST x INPUT.MAX_SIZE_TEST); crop it "
        "into pieces whose long side is at most 8 times the short side, or raise INPUT.MAX_SIZE_TEST "
        "to 10667."
    )
    assert msg.count(". ") == 0 and msg.endswith(".")
    with pytest.raises(ImageSizeError, match=r"^The image \(20000x50 pixels\)"):
        mapper.input_size(50, 20000)
    # the two fixes the sentence names
    assert min(TestDatasetMapper(64, 10667).input_size(30, 20000)) == 32
    assert min(mapper.input_size(30, 30 * 8)) >= 32
    with pytest.raises(ImageSizeError):
        mapper.input_size(30, 30 * 9 + 10)


def test_resize_of_a_refused_image_raises_before_resizing():
    image = torch.zeros(3, 30, 20000, dtype=torch.uint8)
    with pytest.raises(ImageSizeError):
        TestDatasetMapper(64, 128).resize(image, "x.png")
    out = TestDatasetMapper(800, 1333).resize(image)
    assert out.shape == (3, 40, 26663) and out.dtype == torch.uint8


def test_evaluation_mapping_never_refuses(tmp_path, caplog):
    """A dataset image (evaluation) is segmented anyway, at the largest size within the budget,
    with a warning: every image of a benchmark gets a prediction."""
    path = tmp_path / "strip.png"
    Image.fromarray(np.full((30, 20000, 3), 90, np.uint8)).save(path)
    mapper = TestDatasetMapper(64, 128)
    with caplog.at_level(logging.WARNING, logger="frozenseg.data"):
        out = mapper({"file_name": str(path), "image_id": 1})
    h, w = out["image"].shape[-2:]
    assert (out["height"], out["width"]) == (30, 20000)
    assert h >= 1 and w == 8192 // 32 and h * 32 <= 8192  # padded to 32 px, still within the budget
    assert f"Image {str(path)!r} (20000x30 pixels) is too elongated" in caplog.text
    assert "segmenting it at 256x" in caplog.text
