"""MaskFormer-v1 matcher and set criterion of OVSeg's proposal generator (docs/models/ovseg.md §3.A):
exact focal/dice values on hand-made masks, matching against a brute-force search, nearest
target downsampling in the cost, the weighted class loss, deep supervision, the released
``criterion.empty_weight`` buffer, gradients and the no-target case.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

from frozenseg.models.ovseg.criterion import (
    MaskFormerHungarianMatcher,
    MaskFormerSetCriterion,
    batch_sigmoid_focal_cost,
    build_maskformer_criterion,
    sigmoid_focal_loss,
)
from frozenseg.models.ovseg.head import OpenVocabMaskFormerHead

from .conftest import ovseg_cfg, released_layout
from .test_ovseg_head import TINY_CHANNELS, _features, _shapes, _tiny_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LN2, LN4_3 = math.log(2.0), math.log(4.0 / 3.0)


def _focal(x: float, t: float) -> float:
    """Per-pixel focal loss, alpha 0.25, gamma 2, for a binary target t."""
    p = 1.0 / (1.0 + math.exp(-x))
    p_t = p if t else 1.0 - p
    return (0.25 if t else 0.75) * (1.0 - p_t) ** 2 * -math.log(p_t)


def _ovseg_cfg(num_classes: int = 171):
    """The released training settings (docs/models/ovseg.md §3.A, §5.2)."""
    cfg = ovseg_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_classes
    mf = cfg.MODEL.MASK_FORMER
    mf.MASK_WEIGHT, mf.DICE_WEIGHT, mf.NO_OBJECT_WEIGHT, mf.DEC_LAYERS = 20.0, 1.0, 0.1, 6
    return cfg


def _criterion(num_classes: int = 2) -> MaskFormerSetCriterion:
    return build_maskformer_criterion(_ovseg_cfg(num_classes))


# ---------------------------------------------------------------------------------------------
# exact values
# ---------------------------------------------------------------------------------------------
def test_focal_and_dice_on_a_hand_made_2x2_mask():
    # sigmoid = [[0.5, 0.75], [0.25, 0.5]] against [[1, 1], [1, 0]]
    logits = torch.tensor([[0.0, math.log(3.0)], [-math.log(3.0), 0.0]]).flatten()[None]
    target = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).flatten()[None]
    # pixels: .25*.5^2*ln2, .25*.25^2*ln(4/3), .25*.75^2*ln4, .75*.5^2*ln2; mean over 4
    focal = (0.25 * LN2 + 0.015625 * LN4_3 + 0.140625 * math.log(4)) / 4
    assert sigmoid_focal_loss(logits, target, 1.0).item() == pytest.approx(focal, rel=1e-6)
    # summed over masks, divided by num_masks
    two = sigmoid_focal_loss(logits.repeat(2, 1), target.repeat(2, 1), 4.0)
    assert two.item() == pytest.approx(focal / 2, rel=1e-6)
    # pairwise cost: entry (n, m) is the focal loss of prediction n against target m
    other = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    cost = batch_sigmoid_focal_cost(logits, torch.cat([target, other]))
    focal_other = (0.75 * 0.25 * LN2 + 0.75 * 0.75**2 * math.log(4) + 0.25 * 0.75**2 * math.log(4)
                   + 0.25 * 0.25 * LN2) / 4
    assert cost.tolist()[0] == pytest.approx([focal, focal_other], rel=1e-6)
    # dice: 1 - (2 * 1.5 + 1) / (2 + 3 + 1)
    crit = _criterion()
    matched = crit.mask_losses(logits.view(1, 1, 2, 2), target.view(1, 1, 2, 2), 1.0)
    assert matched["loss_mask"].item() == pytest.approx(focal, rel=1e-6)
    assert matched["loss_dice"].item() == pytest.approx(1 / 3, rel=1e-6)


def test_mask_losses_are_taken_at_target_resolution_after_bilinear_upsampling():
    crit = _criterion()
    # query 0: rows (2, -2) at 2x2 -> bilinear to 4x4 (align_corners False) gives rows 2, 1, -1, -2
    pred_masks = torch.zeros(1, 2, 2, 2)
    pred_masks[0, 0, 0], pred_masks[0, 0, 1] = 2.0, -2.0
    gt = torch.zeros(2, 4, 4)
    gt[0, :2] = 1.0  # top half; target 1 is empty, matched to the all-zero query 1
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": pred_masks}
    targets = [{"labels": torch.tensor([0, 1]), "masks": gt}]
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    losses = crit.loss_masks(outputs, targets, indices, num_masks=2.0)

    rows = [(2.0, 1), (1.0, 1), (-1.0, 0), (-2.0, 0)]
    focal0 = sum(_focal(x, t) for x, t in rows) / 4  # every row is constant: mean of 16 = of 4
    focal1 = _focal(0.0, 0)
    assert losses["loss_mask"].item() == pytest.approx((focal0 + focal1) / 2, rel=1e-6)
    s = [1.0 / (1.0 + math.exp(-x)) for x, _ in rows]
    dice0 = 1 - (2 * 4 * (s[0] + s[1]) + 1) / (4 * sum(s) + 8 + 1)
    dice1 = 1 - 1 / (16 * 0.5 + 1)
    assert losses["loss_dice"].item() == pytest.approx((dice0 + dice1) / 2, rel=1e-6)


def test_class_loss_is_cross_entropy_weighted_by_the_no_object_weight():
    crit = _criterion(num_classes=2)
    rows = [[1.0, 0.5, -0.5], [0.2, 2.0, 0.1], [-1.0, 0.3, 1.2]]
    gt = torch.zeros(1, 8, 8)
    gt[0, :, :4] = 1.0
    masks = torch.full((1, 3, 2, 2), -10.0)
    masks[0, 1, :, 0] = 10.0  # query 1 predicts the GT mask, so it is matched to it
    outputs = {"pred_logits": torch.tensor([rows]), "pred_masks": masks}
    loss = crit(outputs, [{"labels": torch.tensor([1]), "masks": gt}])["loss_ce"].item()
    y, w = [2, 1, 2], [1.0, 1.0, 0.1]  # unmatched queries target no-object (K = 2, weight 0.1)

    def nll(row, c):
        return math.log(sum(math.exp(v) for v in row)) - row[c]

    expected = sum(w[c] * nll(r, c) for r, c in zip(rows, y)) / sum(w[c] for c in y)
    assert loss == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# matcher
# ---------------------------------------------------------------------------------------------
def test_matcher_picks_the_obvious_assignment():
    gt = torch.zeros(3, 16, 16)
    gt[0, :8, :8], gt[1, 8:], gt[2, :8, 8:] = 1.0, 1.0, 1.0
    perm = [3, 0, 4]  # query perm[j] predicts target j
    logits = torch.zeros(1, 5, 4)
    masks = torch.full((1, 5, 4, 4), -8.0)
    for j, q in enumerate(perm):
        masks[0, q] = 16.0 * gt[j, ::4, ::4] - 8.0
    matcher = MaskFormerHungarianMatcher(cost_class=1, cost_mask=20, cost_dice=1)
    (i, j), = matcher({"pred_logits": logits, "pred_masks": masks}, [{"labels": torch.tensor([2, 0, 1]), "masks": gt}])
    assert i.dtype == j.dtype == torch.int64
    assert sorted(zip(i.tolist(), j.tolist())) == sorted((q, t) for t, q in enumerate(perm))


@pytest.mark.parametrize("num_targets", [1, 3, 4])
def test_matcher_equals_a_brute_force_search(num_targets):
    torch.manual_seed(num_targets)
    q, k, h, w = 4, 3, 3, 5
    logits, masks = torch.randn(2, q, k + 1), torch.randn(2, q, h, w)
    targets = [
        {"labels": torch.randint(0, k, (n,)), "masks": torch.rand(n, 4 * h, 4 * w) > 0.5}
        for n in (num_targets, 2)
    ]
    weights = (1.0, 20.0, 1.0)
    matcher = MaskFormerHungarianMatcher(*weights)
    for b, (i, j) in enumerate(matcher({"pred_logits": logits, "pred_masks": masks}, targets)):
        labels, gt = targets[b]["labels"], targets[b]["masks"].float()[:, ::4, ::4]  # nearest, x4
        prob = logits[b].softmax(-1)
        s = masks[b].sigmoid()

        def cost(qi, ti):
            t = gt[ti]
            p_t = s[qi] * t + (1 - s[qi]) * (1 - t)
            a_t = 0.25 * t + 0.75 * (1 - t)
            focal = (-a_t * (1 - p_t) ** 2 * p_t.log()).mean()
            dice = 1 - (2 * (s[qi] * t).sum() + 1) / (s[qi].sum() + t.sum() + 1)
            return -weights[0] * prob[qi, labels[ti]] + weights[1] * focal + weights[2] * dice

        n = len(labels)
        best = min(itertools.permutations(range(q), n), key=lambda qs: sum(cost(a, t) for t, a in enumerate(qs)))
        assert len(i) == n
        assert sorted(zip(j.tolist(), i.tolist())) == list(enumerate(best))


def test_matching_cost_downsamples_targets_nearest():
    # Target A: only the pixels (4y, 4x) of an 8x8 grid; B: the others. Nearest downsampling to
    # the 2x2 prediction grid keeps pixel (4y, 4x): A -> all ones, B -> all zeros. Bilinear or
    # area resizing (and point sampling at pixel centres) would give the opposite.
    a = torch.zeros(8, 8)
    a[::4, ::4] = 1.0
    gt = torch.stack([a, 1 - a])
    for mode in ("bilinear", "area"):
        resized = F.interpolate(gt[:, None], size=(2, 2), mode=mode)[:, 0]
        assert resized[0].max() < 0.5 and resized[1].min() > 0.5
    masks = torch.stack([torch.full((2, 2), 10.0), torch.full((2, 2), -10.0)])[None]
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": masks}
    (i, j), = MaskFormerHungarianMatcher(1, 20, 1)(outputs, [{"labels": torch.tensor([0, 1]), "masks": gt}])
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 0), (1, 1)]


# ---------------------------------------------------------------------------------------------
# criterion
# ---------------------------------------------------------------------------------------------
def test_build_reads_the_release_weights():
    cfg = _ovseg_cfg()
    assert cfg.MODEL.MASK_FORMER.CLASS_WEIGHT == 1.0  # OVSeg's own key: the release's weight
    crit = build_maskformer_criterion(cfg)
    m = crit.matcher
    assert isinstance(crit, MaskFormerSetCriterion) and isinstance(m, MaskFormerHungarianMatcher)
    assert (m.cost_class, m.cost_mask, m.cost_dice) == (1.0, 20.0, 1.0)
    base = {"loss_ce": 1.0, "loss_mask": 20.0, "loss_dice": 1.0}
    expected = dict(base)
    for i in range(5):  # DEC_LAYERS 6 -> aux outputs _0 .. _4
        expected.update({f"{k}_{i}": v for k, v in base.items()})
    assert crit.weight_dict == expected
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = False
    assert build_maskformer_criterion(cfg).weight_dict == base
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT = 2.0
    crit = build_maskformer_criterion(cfg)
    assert crit.matcher.cost_class == 2.0 and crit.weight_dict["loss_ce"] == 2.0


@pytest.mark.parametrize("layout", ["swinB_vitL14", "R101c_vitB16"])
def test_empty_weight_is_the_released_persistent_buffer(layout):
    crit = build_maskformer_criterion(_ovseg_cfg(171))
    state = crit.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == released_layout(layout, "criterion.")
    expected = torch.ones(172)
    expected[-1] = 0.1
    assert torch.equal(state["empty_weight"], expected)


def _random_outputs(num_aux: int, b: int = 2, q: int = 4, k: int = 2, h: int = 4, w: int = 6):
    def one():
        return {"pred_logits": torch.randn(b, q, k + 1, requires_grad=True),
                "pred_masks": torch.randn(b, q, h, w, requires_grad=True)}

    out = one()
    out["aux_outputs"] = [one() for _ in range(num_aux)]
    return out


def _targets(counts, h: int = 16, w: int = 24, k: int = 2):
    return [{"labels": torch.randint(0, k, (n,)), "masks": torch.rand(n, h, w) > 0.5} for n in counts]


def test_aux_outputs_get_suffixed_losses_and_every_prediction_gets_gradients():
    torch.manual_seed(0)
    crit = _criterion(num_classes=2)
    outputs = _random_outputs(num_aux=5)
    losses = crit(outputs, _targets([2, 1]))
    assert set(losses) == set(crit.weight_dict)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(crit.weight_dict[k] * v for k, v in losses.items()).backward()
    for pred in [outputs] + outputs["aux_outputs"]:
        for key in ("pred_logits", "pred_masks"):
            assert pred[key].grad is not None and pred[key].grad.abs().sum() > 0
    # each aux output is matched and scored on its own: equal to scoring it as the final output
    aux = {k: v.detach() for k, v in outputs["aux_outputs"][3].items()}
    torch.manual_seed(1)
    targets = _targets([2, 1])
    alone = crit(aux, targets)
    as_aux = crit({**aux, "aux_outputs": [aux] * 4}, targets)
    for key in ("loss_ce", "loss_mask", "loss_dice"):
        torch.testing.assert_close(as_aux[f"{key}_3"], alone[key])


def test_num_masks_is_the_target_count_and_at_least_one():
    crit = _criterion()
    assert crit.get_num_masks(_targets([2, 1]), torch.device("cpu")) == 3.0
    empty = _targets([0, 0])
    assert crit.get_num_masks(empty, torch.device("cpu")) == 1.0
    torch.manual_seed(0)
    outputs = _random_outputs(num_aux=1)
    losses = crit(outputs, empty)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    # every query targets no-object: the (uniformly weighted) mean of -log p[no-object]
    nll = -outputs["pred_logits"].detach().log_softmax(-1)[..., -1]
    assert losses["loss_ce"].item() == pytest.approx(nll.mean().item(), rel=1e-6)
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad is not None  # graph stays connected (DDP)


def test_losses_of_the_ovseg_head_outputs_reach_its_parameters():
    cfg = _tiny_cfg()  # DEC_LAYERS 3, 5 queries, embedding dim 8
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 3
    torch.manual_seed(0)
    head = OpenVocabMaskFormerHead(cfg, _shapes(TINY_CHANNELS))
    out = head(_features(), F.normalize(torch.randn(4, 8), dim=-1))
    crit = build_maskformer_criterion(cfg)
    losses = crit(out, _targets([2, 3], h=64, w=96, k=3))
    assert set(losses) == set(crit.weight_dict) and len(losses) == 3 * 3
    sum(crit.weight_dict[k] * v for k, v in losses.items()).backward()
    assert head.predictor.class_embed.layers[0].weight.grad.abs().sum() > 0
    assert head.pixel_decoder.mask_features.weight.grad.abs().sum() > 0
