"""Proposal crops for CLIP (docs/models/ovseg.md §2.8): boxes, box expansion, fill colour, normalisation and
resize, on a hand-made image whose pixel (c, y, x) holds 100 c + 10 y + x."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from frozenseg.models.ovseg.clip_adapter import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    crop_with_mask,
    expand_box,
    mask_fill_color,
    masks_to_boxes_exclusive,
    prepare_clip_regions,
)

H, W = 8, 10
MEAN = torch.tensor([255.0 * c for c in CLIP_PIXEL_MEAN])[:, None, None]
STD = torch.tensor([255.0 * c for c in CLIP_PIXEL_STD])[:, None, None]
FILL = mask_fill_color("mean")


def _image() -> torch.Tensor:
    c, y, x = torch.meshgrid(torch.arange(3), torch.arange(H), torch.arange(W), indexing="ij")
    return (100 * c + 10 * y + x).to(torch.uint8)


# q0: an L shape in rows 2..5, cols 3..6 (box 4x4); q1: nothing above 0.4; q2: one border pixel.
_Q0 = [(2, 3), (3, 3), (4, 3), (5, 3), (5, 4), (5, 5), (5, 6)]


def _mask_probs() -> torch.Tensor:
    probs = torch.full((3, H, W), 0.1)
    for y, x in _Q0:
        probs[0, y, x] = 0.9
    probs[1] = 0.3
    probs[2, 7, 9] = 0.5
    return probs


def _hand_crop_q0(fill) -> tuple[torch.Tensor, torch.Tensor]:
    """The q0 crop built by hand: rows 2:6, cols 3:7 of the image, background = fill."""
    mask = torch.zeros(4, 4)
    for y, x in _Q0:
        mask[y - 2, x - 3] = 1
    region = _image()[:, 2:6, 3:7].float()
    region = torch.where(mask.bool(), region, torch.tensor(fill)[:, None, None])
    return region, mask


def test_boxes_are_tight_with_exclusive_ends_and_zero_for_empty_masks():
    boxes = masks_to_boxes_exclusive(_mask_probs() > 0.4)
    assert boxes.tolist() == [[3.0, 2.0, 7.0, 6.0], [0.0, 0.0, 0.0, 0.0], [9.0, 7.0, 10.0, 8.0]]


def test_expand_box_scales_about_the_centre_and_truncates_toward_zero():
    assert expand_box((3, 2, 7, 6), 1.0) == (3, 2, 7, 6)
    assert expand_box((2, 2, 4, 6), 2.0) == (1, 0, 5, 8)
    assert expand_box((0, 0, 3, 3), 2.0) == (-1, -1, 4, 4)  # int(-1.5) == -1


def test_crop_with_mask_fills_the_background_and_clips_the_box_to_the_image():
    image = _image().float()
    mask = (_mask_probs()[0] > 0.4).float()
    region, region_mask = crop_with_mask(image, mask, (3, 2, 7, 6), FILL)
    expected, expected_mask = _hand_crop_q0(FILL)
    assert torch.equal(region, expected) and torch.equal(region_mask, expected_mask[None])
    clipped, clipped_mask = crop_with_mask(image, mask, (0, 0, 3, 3), (0.0, 0.0, 0.0), expand_ratio=2.0)
    assert clipped.shape == (3, 4, 4) and clipped_mask.shape == (1, 4, 4)  # [-1, 4) -> [0, 4)


def test_fill_colours():
    assert mask_fill_color("mean") == pytest.approx((122.7709383, 116.7460125, 104.09373615))
    assert mask_fill_color("zero") == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="'mean' or 'zero'"):
        mask_fill_color("gray")


def test_regions_at_crop_size_are_exact_and_the_mean_fill_normalises_to_zero():
    out = prepare_clip_regions(_image(), _mask_probs(), mask_thr=0.4, fill=FILL, size=4)
    assert out.valid.tolist() == [True, False, True]
    assert out.regions.shape == (2, 3, 4, 4) and out.region_masks.shape == (2, 1, 4, 4)
    expected, mask = _hand_crop_q0(FILL)
    torch.testing.assert_close(out.unnorm_regions[0], expected)
    assert torch.equal(out.region_masks[0, 0], mask)
    background = out.regions[0][:, ~mask.bool()]
    assert torch.equal(background, torch.zeros_like(background))  # exactly 0 after normalising
    torch.testing.assert_close(out.regions[0], (expected - MEAN) / STD)
    # q2 is one pixel: squashed to 4x4 (constant), its mask nearest-upsampled
    torch.testing.assert_close(out.unnorm_regions[1], _image()[:, 7:8, 9:10].float().expand(3, 4, 4))
    assert torch.equal(out.region_masks[1], torch.ones(1, 4, 4))


def test_regions_are_squashed_to_224_bicubic_with_nearest_masks():
    out = prepare_clip_regions(_image(), _mask_probs(), mask_thr=0.4, fill=FILL)
    expected, mask = _hand_crop_q0(FILL)
    assert out.regions.shape == (2, 3, 224, 224)
    torch.testing.assert_close(
        out.regions[0], F.interpolate(((expected - MEAN) / STD)[None], size=(224, 224), mode="bicubic")[0]
    )
    assert torch.equal(out.region_masks[0], F.interpolate(mask[None, None], size=(224, 224), mode="nearest")[0])
    assert set(out.region_masks.unique().tolist()) == {0.0, 1.0}


def test_zero_fill_and_matting():
    probs = _mask_probs()
    zero = prepare_clip_regions(_image(), probs, mask_thr=0.4, fill=mask_fill_color("zero"), size=4)
    torch.testing.assert_close(zero.unnorm_regions[0], _hand_crop_q0((0.0, 0.0, 0.0))[0])
    matted = prepare_clip_regions(_image(), probs, mask_thr=0.4, fill=FILL, size=4, mask_matting=True)
    soft = probs[0, 2:6, 3:7]  # same box (from the binary mask), soft blend
    blend = _image()[:, 2:6, 3:7].float() * soft + (1 - soft) * torch.tensor(FILL)[:, None, None]
    torch.testing.assert_close(matted.unnorm_regions[0], blend)
    torch.testing.assert_close(matted.region_masks[0, 0], soft)


def test_no_valid_proposal_gives_empty_tensors():
    out = prepare_clip_regions(_image(), torch.zeros(3, H, W), mask_thr=0.4, fill=FILL)
    assert out.valid.tolist() == [False, False, False]
    assert out.regions.shape == (0, 3, 224, 224) and out.region_masks.shape == (0, 1, 224, 224)


def test_image_and_masks_must_have_the_same_size():
    with pytest.raises(ValueError, match="same height and width"):
        prepare_clip_regions(_image(), torch.zeros(3, H + 2, W), mask_thr=0.4, fill=FILL)
