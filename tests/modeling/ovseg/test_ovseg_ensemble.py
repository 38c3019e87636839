"""OVSeg's ensemble and semantic output (docs/models/ovseg.md §2.6, §2.10-2.12; quirks 1, 2, 10) on hand-made
probabilities (logits = log-probabilities, so every softmax is known exactly)."""

from __future__ import annotations

import math

import pytest
import torch

from frozenseg.models.ovseg.clip_adapter import ovseg_class_scores, ovseg_semantic_inference

# Q = 3 queries, K = 2 classes (+ no-object). MaskFormer softmax over K + 1, no-object dropped after.
MF = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]).log()
P_MF = torch.tensor([[0.5, 0.3], [0.1, 0.6], [0.25, 0.25]])
# CLIP rows for queries 0 and 2: no-object dropped *before* the softmax over K.
CLIP = torch.tensor([[0.6, 0.2, 0.2], [0.1, 0.3, 0.6]]).log()
P_CLIP = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
VALID = torch.tensor([True, False, True])


def test_ensemble_is_the_unnormalised_geometric_mean_with_invalid_queries_boosted():
    scores, keep = ovseg_class_scores(MF, CLIP, VALID, ensemble_weight=0.5)
    expected = torch.tensor(
        [
            [math.sqrt(0.5 * 0.75), math.sqrt(0.3 * 0.25)],
            [math.sqrt(0.1), math.sqrt(0.6)],  # invalid: p_clip = 1 (docs/models/ovseg.md quirk 1)
            [math.sqrt(0.25 * 0.25), math.sqrt(0.25 * 0.75)],
        ]
    )
    torch.testing.assert_close(scores, expected)
    assert keep.tolist() == [True, True, True]
    scores_07, _ = ovseg_class_scores(MF, CLIP, VALID, ensemble_weight=0.7)
    torch.testing.assert_close(scores_07[0, 0], torch.tensor(0.5**0.3 * 0.75**0.7))


def test_maskformer_only_and_clip_only():
    scores, keep = ovseg_class_scores(MF, None, VALID, ensemble_weight=0.7)
    torch.testing.assert_close(scores, P_MF)
    assert keep.all()
    scores, keep = ovseg_class_scores(MF, CLIP, VALID, ensemble_weight=0.0)
    torch.testing.assert_close(scores, P_CLIP)
    assert keep.tolist() == [True, False, True]


def test_one_and_zero_valid_proposals():
    one = torch.tensor([False, True, False])
    scores, _ = ovseg_class_scores(MF, CLIP[:1], one, ensemble_weight=0.5)
    torch.testing.assert_close(scores[1], torch.tensor([math.sqrt(0.1 * 0.75), math.sqrt(0.6 * 0.25)]))
    torch.testing.assert_close(scores[[0, 2]], P_MF[[0, 2]].sqrt())
    none = torch.zeros(3, dtype=torch.bool)  # docs/models/ovseg.md quirk 10 (FIX): all invalid -> p_mf ** (1 - lambda)
    scores, keep = ovseg_class_scores(MF, CLIP[:0], none, ensemble_weight=0.7)
    torch.testing.assert_close(scores, P_MF**0.3)
    assert keep.all()


def test_semantic_output_sums_soft_masks_of_the_kept_queries():
    masks = torch.tensor([[[1.0, 0.5]], [[0.0, 1.0]], [[0.2, 0.0]]])  # (Q, 1, 2)
    sem = ovseg_semantic_inference(MF, masks, CLIP, VALID, ensemble_weight=0.0)
    expected = torch.einsum("qc,qhw->chw", P_CLIP, masks[[0, 2]])
    torch.testing.assert_close(sem, expected)
    assert sem.shape == (2, 1, 2)
    torch.testing.assert_close(sem[0, 0, 0], torch.tensor(0.75 * 1.0 + 0.25 * 0.2))
    empty = ovseg_semantic_inference(MF, masks, CLIP[:0], torch.zeros(3, dtype=torch.bool), ensemble_weight=0.0)
    assert torch.equal(empty, torch.zeros(2, 1, 2))


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="one row per valid query"):
        ovseg_class_scores(MF, CLIP[:1], VALID, ensemble_weight=0.5)
    with pytest.raises(ValueError, match=r"CLIP_ENSEMBLE_WEIGHT must be in \[0, 1\]"):
        ovseg_class_scores(MF, CLIP, VALID, ensemble_weight=1.5)
