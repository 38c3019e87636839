"""The model's side of the SAM proposal ensemble (docs/models/frozenseg.md §7.5): cache -> ``attach_sam_masks`` ->
model, the ensembled semantic map against a hand computation, recall with / without the
proposals, and an image for which SAM kept no proposal."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from frozenseg.data.sam_mask_cache import SamProposals, attach_sam_masks, cache_path, make_record, write_sam_masks

from ..conftest import REPO_ROOT

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model():
    from frozenseg import build_model, get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs/tiny/frozenseg_tiny_convnext.yaml"))
    cfg.MODEL.SAM_IMAGE_SIZE = 256  # faster; same code path
    cfg.TEST.USE_SAM_MASKS = True
    cfg.TEST.SAM_MASK_PRED_ALPHA = 0.3
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # "circle"/"square" are training classes of the tiny config (seen), the others unseen
    model.set_vocabulary(["circle", "square", "zebra", "giraffe,camelopard"])
    return model


def test_model_ensemble_equals_hand_computation(tiny_model, tmp_path, monkeypatch):
    """cache -> attach_sam_masks -> model; the semantic map equals the formula of docs/models/frozenseg.md §7.5
    computed by hand from the query-only result and the proposals' class probabilities."""
    model = tiny_model
    assert model.vocabulary.seen.tolist() == [True, True, False, False]
    h, w = 48, 64
    image = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (3, h, w), dtype=np.uint8))
    stored = np.random.default_rng(2).normal(0, 3, (3, 24, 32)).astype(np.float32)
    rec = make_record("im", SamProposals(binary=stored.repeat(2, 1).repeat(2, 2) > 0, logits=stored,
                                         predicted_iou=np.full(3, 0.9), stability_score=np.full(3, 0.9),
                                         point_coords=np.zeros((3, 2)), crop_box=np.zeros((3, 4))))
    write_sam_masks(cache_path(str(tmp_path / "ds"), "im"), rec)
    inp = attach_sam_masks({"image": image, "height": h, "width": w, "image_id": "im"}, str(tmp_path), "ds")

    # controlled CLIP probabilities for the 3 proposals (void column last, dropped by the model)
    p_prop = torch.tensor([[0.02, 0.03, 0.90, 0.05],   # unseen max 0.90 > 0.5: used
                           [0.30, 0.30, 0.20, 0.20],   # unseen max 0.20: not used
                           [0.10, 0.10, 0.20, 0.60]])  # unseen max 0.60: used
    original = type(model)._clip_logits

    def fake_clip_logits(self, pooled, classifier):
        out = original(self, pooled, classifier)
        if pooled.shape[1] == 3:  # the proposals (the model has 10 queries)
            return torch.cat([p_prop.log(), torch.zeros(3, 1)], dim=-1)[None]
        return out

    monkeypatch.setattr(type(model), "_clip_logits", fake_clip_logits)
    with torch.no_grad():
        model.panoptic_on = True  # query-only semantic map at output size: Σ_q p_q m_q
        model.use_sam_masks = False
        base = model([dict(inp)])[0]["sem_seg"]
        model.use_sam_masks = True
        ens = model([dict(inp)])[0]["sem_seg"]
        model.panoptic_on = False
    alpha = 0.3
    m_prop = F.interpolate(torch.from_numpy(stored)[None], size=(h, w), mode="bilinear", align_corners=False)
    m_prop = m_prop[0].sigmoid()
    expected = base.clone()
    for c in (2, 3):  # unseen classes
        expected[c] = (1 - alpha) * base[c]
        for m in (0, 2):
            expected[c] += alpha * p_prop[m, c] * m_prop[m]
    torch.testing.assert_close(ens, expected, rtol=1e-4, atol=1e-5)


def test_recall_with_and_without_sam_proposals(tiny_model):
    from frozenseg.evaluation.recall_evaluation import RecallEvaluator

    model = tiny_model
    h, w = 40, 56
    image = torch.from_numpy(np.random.default_rng(3).integers(0, 255, (3, h, w), dtype=np.uint8))
    gt = torch.full((h, w), 255, dtype=torch.int64)
    gt[5:25, 10:30] = 2  # one ground-truth segment of the unseen class "zebra"
    sam = torch.full((2, h, w), -5.0)
    sam[0, 5:25, 10:30] = 5.0  # a SAM proposal that matches it exactly
    meta = SimpleNamespace(stuff_classes=["circle", "square", "zebra", "giraffe"], ignore_label=255,
                           seen_classes=[True, True, False, False])
    results = {}
    with torch.no_grad():
        model.recall_on = True
        for use_sam in (False, True):
            model.use_sam_masks = use_sam
            out = model([{"image": image, "height": h, "width": w, "sam_masks": sam}])[0]
            assert out["proposals"].shape[0] == 10 + (2 if use_sam else 0)
            ev = RecallEvaluator(metadata=meta, distributed=False)
            ev.process([{"sem_seg": gt}], [out])
            results[use_sam] = ev.evaluate()["recall"]
        model.recall_on = False
    assert results[True]["R@90"] == 100.0 and results[True]["R@90_unseen"] == 100.0
    assert results[True]["R@50"] >= results[False]["R@50"]


def test_image_without_sam_proposals(tiny_model):
    model = tiny_model
    image = torch.zeros(3, 32, 40, dtype=torch.uint8)
    with torch.no_grad():
        out = model([{"image": image, "height": 32, "width": 40, "sam_masks": torch.zeros(0, 16, 20)}])[0]
    assert out["sem_seg"].shape == (4, 32, 40)
