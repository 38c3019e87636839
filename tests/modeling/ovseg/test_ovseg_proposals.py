"""OVSeg.proposals: the valid proposals exactly as OVSeg's CLIP sees them at inference (spec
§2.7-2.8), for mining mask-noun pairs (§3.B1). Tiny random model, as in test_ovseg_model."""

from __future__ import annotations

import pytest
import torch

from frozenseg.models.ovseg.clip_adapter import masks_to_boxes_exclusive, prepare_clip_regions

from .test_ovseg_model import NAMES, hand_proposals, hand_text_classifier, tiny_image, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_proposals_are_the_clip_inputs_of_inference():
    model = tiny_model("swin")
    model.set_vocabulary(NAMES)
    image = tiny_image()
    props = model.proposals([{"image": image}, {"image": tiny_image(2)}])
    assert len(props) == 2
    p = props[0]
    text = hand_text_classifier(model, NAMES)
    mf_logits, masks = hand_proposals(model, image, text)
    thr = model.clip_adapter.mask_thr
    crops = prepare_clip_regions(image, masks, mask_thr=thr, fill=model.clip_adapter.mask_fill, size=56)
    n = int(crops.valid.sum())
    assert 0 < n and p.crops.shape == (n, 3, 56, 56) and p.crops.dtype == torch.uint8
    assert torch.equal(p.query_indices, crops.valid.nonzero()[:, 0])
    torch.testing.assert_close(p.regions, crops.regions, rtol=0, atol=1e-5)
    assert torch.equal(p.masks, crops.region_masks > 0)
    torch.testing.assert_close(p.crops.float(), crops.unnorm_regions.clamp(0, 255), rtol=0, atol=0.5 + 1e-3)
    assert torch.equal(p.boxes, masks_to_boxes_exclusive(masks[crops.valid] > thr))
    torch.testing.assert_close(p.scores, 1 - mf_logits.softmax(-1)[crops.valid, -1], rtol=1e-5, atol=1e-6)
    # what forward classifies: the same features
    with torch.no_grad():
        logits, valid = model.clip_adapter(image, masks, text)
        mine = 100 * model.clip_adapter.encode_regions(p.regions, p.masks.float()) @ text.t()
    assert torch.equal(valid, crops.valid)
    torch.testing.assert_close(mine, logits, rtol=1e-4, atol=1e-4)


def test_no_valid_proposal_and_empty_batch():
    model = tiny_model("swin", "MODEL.CLIP_ADAPTER.MASK_THR", 1.0)
    p = model.proposals([{"image": tiny_image()}])[0]
    assert p.crops.shape == (0, 3, 56, 56) and p.masks.shape == (0, 1, 56, 56) and p.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="empty batch"):
        model.proposals([])
