"""Exact-value tests for frozenseg.modeling.postprocessing (docs/models/frozenseg.md §7) on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from frozenseg.modeling.postprocessing import (
    geometric_ensemble,
    instance_inference,
    mask_proposals_for_recall,
    panoptic_inference,
    resize_masks_to_output,
    sam_proposal_ensemble,
    sem_seg_postprocess,
    semantic_inference,
    semantic_only_inference,
)


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p):
    return math.log(p / (1.0 - p))


# ------------------------------------------------------------------ geometric ensemble
IN = [1.0, 2.0, 0.5, -1.0]
OUT = [0.3, -0.2, 1.5, 0.7]
SEEN = [True, False, False]


def _expected_ensemble(in_l, out_l, seen, alpha, beta):
    p_in = _softmax(in_l[:-1])
    p_out = _softmax(out_l[:-1])
    ens = []
    for c in range(len(p_in)):
        a = alpha if seen[c] else beta
        ens.append(math.log(p_in[c] ** (1 - a) * p_out[c] ** a))
    v = _softmax(in_l)[-1]
    probs = [p * (1 - v) for p in _softmax(ens)] + [v]
    return [math.log(p + 1e-8) for p in probs]


def test_geometric_ensemble_hand_computed():
    expected = _expected_ensemble(IN, OUT, SEEN, 0.4, 0.8)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        out = geometric_ensemble(
            torch.tensor([[IN]], dtype=dtype),
            torch.tensor([[OUT]], dtype=dtype),
            torch.tensor(SEEN),
            alpha=0.4,
            beta=0.8,
        )
        assert out.shape == (1, 1, 4) and out.dtype == dtype
        torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=dtype), atol=tol, rtol=0)
        # exp sums to 1 (+ (K+1)·1e-8) along classes
        assert abs(out.exp().sum(-1).item() - 1.0) < 1e-6


def test_geometric_ensemble_valid_mask():
    in_l = torch.tensor([[IN, [0.2, -0.3, 1.1, 0.4]]], dtype=torch.float64)
    out_l = torch.tensor([[OUT, [2.0, 0.1, -1.0, 0.0]]], dtype=torch.float64)
    seen = torch.tensor(SEEN)
    valid = torch.tensor([[True, False]])
    out = geometric_ensemble(in_l, out_l, seen, 0.4, 0.8, valid_mask=valid)
    # valid query: identical to the unmasked ensemble
    full = geometric_ensemble(in_l, out_l, seen, 0.4, 0.8)
    torch.testing.assert_close(out[0, 0], full[0, 0], atol=1e-12, rtol=0)
    # invalid query: log(cat(p_in * (1 - v), v) + 1e-8)
    row = [0.2, -0.3, 1.1, 0.4]
    p_in = _softmax(row[:-1])
    v = _softmax(row)[-1]
    expected = [math.log(p * (1 - v) + 1e-8) for p in p_in] + [math.log(v + 1e-8)]
    torch.testing.assert_close(out[0, 1], torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(out.exp().sum(-1), torch.ones(1, 2, dtype=torch.float64), atol=1e-6)


def test_geometric_ensemble_release_nan_quirk_and_safe_alternative():
    # p_out underflows to 0 for class 1 (unseen): the seen term is -inf there and -inf * 0 = NaN
    # in the release combination; nan_safe selects with torch.where instead.
    in_l = torch.tensor([[[1.0, 0.0, 0.5, -1.0]]])
    out_l = torch.tensor([[[0.0, -200.0, 0.0, 0.0]]])
    seen = torch.tensor(SEEN)
    release = geometric_ensemble(in_l, out_l, seen, 0.4, 0.8)
    assert torch.isnan(release[..., :-1]).all()
    safe = geometric_ensemble(in_l, out_l, seen, 0.4, 0.8, nan_safe=True)
    assert torch.isfinite(safe).all()
    assert safe[0, 0, 1].item() == pytest.approx(math.log(1e-8), abs=1e-3)


# ------------------------------------------------------------------ semantic inference
def test_semantic_inference_exact():
    cls_p = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]
    mask_p = [[[0.9, 0.2], [0.5, 0.7]], [[0.3, 0.8], [0.6, 0.1]]]
    mask_cls = torch.tensor(cls_p, dtype=torch.float64).log()
    mask_pred = torch.tensor([[[_logit(p) for p in row] for row in m] for m in mask_p], dtype=torch.float64)
    out = semantic_inference(mask_cls, mask_pred)
    expected = [
        [[sum(cls_p[q][c] * mask_p[q][i][j] for q in range(2)) for j in range(2)] for i in range(2)]
        for c in range(2)
    ]
    assert out.shape == (2, 2, 2)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)
    # e.g. class 0 at (0, 0): 0.5 * 0.9 + 0.1 * 0.3
    assert out[0, 0, 0].item() == pytest.approx(0.48, abs=1e-12)


# ------------------------------------------------------------------ panoptic inference
def _region(cells, inside=10.0, outside=-10.0):
    m = torch.full((4, 4), outside)
    for i, j in cells:
        m[i, j] = inside
    return m


def test_panoptic_inference_exact():
    probs = [
        [0.90, 0.04, 0.03, 0.03],  # q0 thing 0, top-left
        [0.95, 0.02, 0.02, 0.01],  # q1 thing 0, top-right (separate segment)
        [0.03, 0.90, 0.04, 0.03],  # q2 stuff 1, row 2
        [0.05, 0.85, 0.05, 0.05],  # q3 stuff 1, row 3 left -> merged into q2's segment
        [0.04, 0.03, 0.03, 0.90],  # q4 void label -> dropped
        [0.20, 0.10, 0.50, 0.20],  # q5 score 0.5 below threshold -> dropped
        [0.03, 0.03, 0.90, 0.04],  # q6 stuff 2, column 2, owns only 1/4 -> overlap drop
    ]
    mask_cls = torch.tensor(probs).log()
    masks = [
        _region([(0, 0), (0, 1), (1, 0), (1, 1)]),
        _region([(0, 2), (0, 3), (1, 2), (1, 3)]),
        _region([(2, 0), (2, 1), (2, 2), (2, 3)]),
        _region([(3, 0), (3, 1)]),
        _region([(3, 2), (3, 3)]),
        _region([(3, 2), (3, 3)]),
        _region([(0, 2), (1, 2), (2, 2), (3, 2)], inside=3.0),
    ]
    mask_pred = torch.stack(masks)
    is_thing = torch.tensor([True, False, False])
    seg, info = panoptic_inference(mask_cls, mask_pred, is_thing, 0.8, 0.8)
    expected = torch.tensor(
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3], [3, 3, 0, 0]], dtype=torch.int32
    )
    assert seg.dtype == torch.int32
    assert torch.equal(seg, expected)
    assert info == [
        {"id": 1, "isthing": True, "category_id": 0},
        {"id": 2, "isthing": True, "category_id": 0},
        {"id": 3, "isthing": False, "category_id": 1},
    ]

    # Without the overlap threshold q6 keeps the single pixel it owns as its own segment.
    seg2, info2 = panoptic_inference(mask_cls, mask_pred, is_thing, 0.8, 0.2)
    assert seg2[3, 2].item() == 4 and seg2[3, 3].item() == 0
    assert info2[-1] == {"id": 4, "isthing": False, "category_id": 2}


def test_panoptic_inference_nothing_kept():
    mask_cls = torch.tensor([[0.1, 0.1, 0.8], [0.4, 0.3, 0.3]]).log()
    seg, info = panoptic_inference(mask_cls, torch.ones(2, 3, 3), torch.tensor([True, False]), 0.8, 0.8)
    assert torch.equal(seg, torch.zeros(3, 3, dtype=torch.int32)) and info == []


def _mask2former_panoptic_loop(mask_cls, mask_pred, is_thing, object_mask_threshold, overlap_threshold):
    """Mask2Former's panoptic merge as released (a Python loop painting one mask per query):
    the oracle of ``panoptic_inference``."""
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    masks = mask_pred.sigmoid()
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks[keep]
    cur_prob_masks = cur_scores.view(-1, 1, 1) * cur_masks
    panoptic_seg = torch.zeros(masks.shape[-2:], dtype=torch.int32)
    segments_info = []
    if cur_masks.shape[0] == 0:
        return panoptic_seg, segments_info
    cur_mask_ids = cur_prob_masks.argmax(0)
    stuff_memory_list = {}
    current_segment_id = 0
    for k in range(cur_classes.shape[0]):
        pred_class = cur_classes[k].item()
        isthing = bool(is_thing[pred_class])
        mask_area = (cur_mask_ids == k).sum().item()
        original_area = (cur_masks[k] >= 0.5).sum().item()
        mask = (cur_mask_ids == k) & (cur_masks[k] >= 0.5)
        if mask_area > 0 and original_area > 0 and mask.sum().item() > 0:
            if mask_area / original_area < overlap_threshold:
                continue
            if not isthing:
                if int(pred_class) in stuff_memory_list:
                    panoptic_seg[mask] = stuff_memory_list[int(pred_class)]
                    continue
                stuff_memory_list[int(pred_class)] = current_segment_id + 1
            current_segment_id += 1
            panoptic_seg[mask] = current_segment_id
            segments_info.append({"id": current_segment_id, "isthing": isthing, "category_id": int(pred_class)})
    return panoptic_seg, segments_info


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thresholds", [(0.0, 0.8), (0.3, 0.5), (0.0, 0.0)])
def test_panoptic_inference_equals_mask2former_loop(seed, thresholds):
    """The vectorised merge gives Mask2Former's loop's map and segments exactly: many queries,
    few classes (stuff merges), overlapping masks, overlap-threshold drops, empty masks."""
    g = torch.Generator().manual_seed(seed)
    q, k, h, w, r = 40, 5, 23, 31, 8
    fields = torch.randn(1, r, 3, 4, generator=g)
    regions = F.interpolate(fields, size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0)
    # each query: a noisy mask of one of r regions (several queries per region compete)
    region_of_query = torch.randint(0, r, (q,), generator=g)
    inside = (regions[None] == region_of_query[:, None, None]).float()
    mask_pred = inside * 8 - 4 + torch.randn(q, 1, 1, generator=g) * 2 + torch.randn(q, h, w, generator=g) * 0.5
    mask_pred[::9] = -20.0  # queries with empty masks
    mask_cls = torch.randn(q, k + 1, generator=g) * 3
    is_thing = torch.rand(k, generator=g) < 0.5
    seg, info = panoptic_inference(mask_cls, mask_pred, is_thing, *thresholds)
    ref_seg, ref_info = _mask2former_panoptic_loop(mask_cls, mask_pred, is_thing, *thresholds)
    assert seg.dtype == torch.int32 and torch.equal(seg, ref_seg)
    assert info == ref_info
    assert len(info) > 1


# ------------------------------------------------------------------ instance inference
def _instance_inputs():
    probs = [[0.6, 0.1, 0.3], [0.2, 0.7, 0.1], [0.05, 0.15, 0.8]]
    mask_cls = torch.tensor(probs, dtype=torch.float64).log()
    mask_pred = torch.full((3, 3, 4), -1.0, dtype=torch.float64)
    mask_pred[0, 0, 0], mask_pred[0, 0, 1], mask_pred[0, 1, 1] = 2.0, 1.0, 3.0
    mask_pred[1, 2, 3], mask_pred[1, 1, 3] = 0.5, 4.0
    mask_pred[2] = -2.0  # empty mask
    m0 = (_sig(2.0) + _sig(1.0) + _sig(3.0)) / (3 + 1e-6)
    m1 = (_sig(0.5) + _sig(4.0)) / (2 + 1e-6)
    return mask_cls, mask_pred, m0, m1


def test_instance_inference_exact():
    mask_cls, mask_pred, m0, m1 = _instance_inputs()
    is_thing = torch.tensor([True, False])
    res = instance_inference(mask_cls, mask_pred, is_thing, topk=4, panoptic_on=False)
    assert res.image_size == (3, 4) and len(res) == 4
    # top-4 of [0.6, 0.1, 0.2, 0.7, 0.05, 0.15] (index q*K + c): (q1,c1), (q0,c0), (q1,c0), (q2,c1)
    assert res.pred_classes.tolist() == [1, 0, 0, 1] and res.pred_classes.dtype == torch.int64
    torch.testing.assert_close(
        res.scores, torch.tensor([0.7 * m1, 0.6 * m0, 0.2 * m1, 0.0], dtype=torch.float64), atol=1e-12, rtol=0
    )
    assert res.pred_masks.dtype == torch.bool
    assert torch.equal(res.pred_masks[0], mask_pred[1] > 0)
    assert torch.equal(res.pred_masks[1], mask_pred[0] > 0)
    assert not res.pred_masks[3].any()
    assert res.pred_boxes.tolist() == [[3, 1, 3, 2], [0, 0, 1, 1], [3, 1, 3, 2], [0, 0, 0, 0]]

    # topk larger than Q*K is clipped
    assert len(instance_inference(mask_cls, mask_pred, is_thing, topk=100, panoptic_on=False)) == 6


def test_instance_inference_panoptic_on_filters_stuff():
    mask_cls, mask_pred, m0, m1 = _instance_inputs()
    res = instance_inference(mask_cls, mask_pred, torch.tensor([True, False]), topk=4, panoptic_on=True)
    assert res.pred_classes.tolist() == [0, 0]
    torch.testing.assert_close(res.scores, torch.tensor([0.6 * m0, 0.2 * m1], dtype=torch.float64), atol=1e-12, rtol=0)
    assert res.pred_boxes.tolist() == [[0, 0, 1, 1], [3, 1, 3, 2]]


# ------------------------------------------------------------------ resizing
def test_sem_seg_postprocess_crops_padding_then_resizes():
    padded = torch.full((1, 4, 4), 100.0)
    padded[0, :2, :2] = torch.tensor([[0.0, 4.0], [8.0, 12.0]])
    out = sem_seg_postprocess(padded, (2, 2), 4, 4)
    w = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = 4.0 * w[None, :] + 8.0 * w[:, None]
    assert torch.equal(out[0], expected)
    # no resize: pure crop
    assert torch.equal(sem_seg_postprocess(padded, (2, 2), 2, 2), padded[:, :2, :2])


def test_resize_masks_to_output():
    m = torch.full((2, 2, 3), 50.0)
    m[:, :1, :2] = torch.tensor([[[1.0, 2.0]], [[-3.0, 5.0]]])
    out = resize_masks_to_output(m, padded_size=(2, 3), image_size=(1, 2), output_size=(1, 2))
    assert torch.equal(out, m[:, :1, :2])  # padding removed
    const = resize_masks_to_output(torch.full((3, 2, 2), 1.5), (8, 8), (6, 5), (3, 7))
    assert const.shape == (3, 3, 7) and torch.allclose(const, torch.full((3, 3, 7), 1.5))


def test_semantic_orders_differ():
    mask_cls = torch.tensor([[0.6, 0.4]], dtype=torch.float64).log()  # 1 query, K = 1
    masks = torch.tensor([[[-4.0, 4.0]]], dtype=torch.float64)  # padded (1, 2) == image size
    release = semantic_only_inference(mask_cls, masks, (1, 2), (1, 4))
    masks_first = semantic_inference(mask_cls, sem_seg_postprocess(masks, (1, 2), 1, 4))
    a, b = _sig(-4.0), _sig(4.0)
    exp_release = [0.6 * v for v in (a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b)]
    exp_first = [0.6 * _sig(v) for v in (-4.0, -2.0, 2.0, 4.0)]
    torch.testing.assert_close(release[0, 0], torch.tensor(exp_release, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(masks_first[0, 0], torch.tensor(exp_first, dtype=torch.float64), atol=1e-12, rtol=0)
    assert not torch.allclose(release, masks_first)
    # without resizing the two orders agree
    same = semantic_only_inference(mask_cls, masks, (1, 2), (1, 2))
    torch.testing.assert_close(same, semantic_inference(mask_cls, masks))


# ------------------------------------------------------------------ SAM proposal ensemble
def test_sam_proposal_ensemble_exact():
    seen = torch.tensor([True, False, False])
    qp = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]
    qm = [[[1.0, 0.5]], [[0.0, 0.25]]]
    pp = [[0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.5, 0.5, 0.0]]  # only proposal 0 passes (> 0.5)
    pm = [[[0.6, 0.4]], [[1.0, 1.0]], [[1.0, 1.0]]]
    a = 0.2
    out = sam_proposal_ensemble(
        torch.tensor(qp, dtype=torch.float64),
        torch.tensor(qm, dtype=torch.float64),
        torch.tensor(pp, dtype=torch.float64),
        torch.tensor(pm, dtype=torch.float64),
        seen,
        a,
    )
    expected = []
    for c in range(3):
        row = []
        for x in range(2):
            qsum = sum(qp[q][c] * qm[q][0][x] for q in range(2))
            if c == 0:
                row.append(qsum)
            else:
                row.append((1 - a) * qsum + a * pp[0][c] * pm[0][0][x])
        expected.append([row])
    assert out.shape == (3, 1, 2)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)
    # class 1 at pixel 0: 0.8 * (0.3 * 1.0 + 0.1 * 0.0) + 0.2 * 0.7 * 0.6
    assert out[1, 0, 0].item() == pytest.approx(0.324, abs=1e-12)

    # no proposal passing the threshold: (1 - a) on unseen query terms only
    none = sam_proposal_ensemble(
        torch.tensor(qp, dtype=torch.float64),
        torch.tensor(qm, dtype=torch.float64),
        torch.tensor(pp[1:], dtype=torch.float64),
        torch.tensor(pm[1:], dtype=torch.float64),
        seen,
        a,
    )
    assert none[2, 0, 1].item() == pytest.approx(0.8 * (0.2 * 0.5 + 0.8 * 0.25), abs=1e-12)


# ------------------------------------------------------------------ recall proposals
def test_mask_proposals_for_recall():
    q = torch.tensor([[[0.5, -0.5], [0.0, 2.0]]])
    extra = torch.tensor([[[-1.0, 1.0], [1.0, -1.0]], [[3.0, 3.0], [-3.0, 0.1]]])
    out = mask_proposals_for_recall(q, extra)
    assert out.shape == (3, 2, 2) and out.dtype == torch.bool
    assert out.tolist() == [
        [[True, False], [False, True]],
        [[False, True], [True, False]],
        [[True, True], [False, True]],
    ]
    assert torch.equal(mask_proposals_for_recall(q, None), q > 0)


def test_shared_mask_probabilities_give_the_same_outputs():
    """Passing ``mask_probs = sigmoid(mask_pred)`` (the model computes it once for all outputs)
    changes nothing: semantic, panoptic and instance outputs are bit-identical."""
    g = torch.Generator().manual_seed(3)
    mask_cls, mask_pred = torch.randn(7, 4, generator=g) * 3, torch.randn(7, 6, 5, generator=g) * 3
    probs = mask_pred.sigmoid()
    is_thing = torch.tensor([True, False, True])
    assert torch.equal(semantic_inference(mask_cls, mask_pred, probs), semantic_inference(mask_cls, mask_pred))
    seg, info = panoptic_inference(mask_cls, mask_pred, is_thing, 0.1, 0.2, probs)
    seg_ref, info_ref = panoptic_inference(mask_cls, mask_pred, is_thing, 0.1, 0.2)
    assert torch.equal(seg, seg_ref) and info == info_ref and len(info) > 0
    for panoptic_on in (False, True):
        shared = instance_inference(mask_cls, mask_pred, is_thing, 5, panoptic_on, probs)
        ref = instance_inference(mask_cls, mask_pred, is_thing, 5, panoptic_on)
        assert len(ref.scores) > 0
        for key in ("pred_masks", "scores", "pred_classes", "pred_boxes"):
            assert torch.equal(getattr(shared, key), getattr(ref, key)), key
