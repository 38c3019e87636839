"""SAM as a proposal source (frozenseg.modeling.sam.automatic): segment-anything's automatic
mask generator, unmodified, on the random ``tiny`` SAM, with the mask logits recomputed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from frozenseg.data.sam_mask_cache import cache_path, read_sam_masks
from frozenseg.apps.sam_masks import save_sam_masks
from frozenseg.modeling.sam import load_sam
from frozenseg.modeling.sam.automatic import (
    RELEASED_GENERATOR_PARAMS,
    AutomaticMaskOptions,
    SamProposalSource,
)

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_real_generator_on_tiny_sam(tmp_path):
    """segment-anything's generator, unmodified, on a random tiny SAM; logits recomputed."""
    sam = load_sam("tiny", None, seed=0)
    params = dict(RELEASED_GENERATOR_PARAMS, points_per_side=4, pred_iou_thresh=0.0,
                  stability_score_thresh=0.0, min_mask_region_area=0)
    src = SamProposalSource(sam, AutomaticMaskOptions(generator=params, max_masks=3, mask_size=0))
    img = np.zeros((40, 56, 3), np.uint8)
    img[:, :28] = 200
    img[8:30, 34:50] = (0, 0, 255)
    dicts = [{"file_name": str(tmp_path / "x.png"), "image_id": "x"}]
    Image.fromarray(img).save(dicts[0]["file_name"])
    s = save_sam_masks(dicts, src, str(tmp_path / "c"))
    assert s.written == 1
    rec = read_sam_masks(cache_path(str(tmp_path / "c"), "x"))
    assert rec.logits_source == "sam" and rec.mask_logits.shape[1:] == (40, 56) and len(rec) <= 3
    assert np.all(np.diff(rec.area) <= 0)  # largest first
    assert len(rec) > 0  # thresholds at 0: the random SAM yields masks
    # the recomputed SAM logits reproduce the generator's binary masks (full resolution here)
    agree = (rec.mask_logits.astype(np.float32) > 0) == rec.binary_masks()
    assert agree.mean() > 0.99
    # binary placeholders: ±binary_logit exactly where the binary masks are on / off
    binary = SamProposalSource(sam, AutomaticMaskOptions(generator=params, max_masks=3, mask_size=0,
                                                         logits="binary", binary_logit=6.0))
    props = binary.propose(img)
    assert props.logits_source == "binary" and props.logits.shape == props.binary.shape
    np.testing.assert_array_equal(props.logits, np.where(props.binary, 6.0, -6.0))
    assert binary.params()["binary_logit"] == 6.0 and src.params()["binary_logit"] is None


def test_options_are_checked():
    with pytest.raises(ValueError, match="'sam' or 'binary'"):
        AutomaticMaskOptions(logits="soft")
    with pytest.raises(ValueError, match="output_mode='binary_mask'"):
        AutomaticMaskOptions(generator=dict(RELEASED_GENERATOR_PARAMS, output_mode="coco_rle"))
