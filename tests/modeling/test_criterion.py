"""Tests of point sampling, Hungarian matching and the set criterion (docs/models/frozenseg.md §6)."""

from __future__ import annotations

import math

import pytest
import torch

from frozenseg.config import get_cfg
from frozenseg.modeling.criterion import SetCriterion, dice_loss, sigmoid_ce_loss
from frozenseg.models.frozenseg.criterion import build_criterion
from frozenseg.modeling.matcher import HungarianMatcher, batch_dice_cost, batch_sigmoid_ce_cost
from frozenseg.modeling.point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(x: float, t: float) -> float:
    s = _sigmoid(x)
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def _dice(xs, ts) -> float:
    s = [_sigmoid(x) for x in xs]
    return 1 - (2 * sum(a * b for a, b in zip(s, ts)) + 1) / (sum(s) + sum(ts) + 1)


def _scene(h=64, w=64, factor=1):
    """Three block masks (labels 2, 0, 1) at resolution (h*factor, w*factor)."""
    H, W = h * factor, w * factor
    masks = torch.zeros(3, H, W, dtype=torch.bool)
    masks[0, : H // 2, : W // 2] = True
    masks[1, H // 2 :, :] = True
    masks[2, : H // 2, W // 2 :] = True
    return {"labels": torch.tensor([2, 0, 1]), "masks": masks}


def _perfect_outputs(target, perm, num_queries=5, num_classes=3, h=64, w=64, logit=30.0):
    """Query perm[j] predicts target j perfectly; other queries predict no-object."""
    logits = torch.full((1, num_queries, num_classes + 1), -logit)
    logits[0, :, num_classes] = logit
    masks = torch.full((1, num_queries, h, w), -logit)
    tmasks = torch.nn.functional.interpolate(
        target["masks"][None].float(), size=(h, w), mode="nearest"
    )[0]
    for j, q in enumerate(perm):
        logits[0, q] = -logit
        logits[0, q, target["labels"][j]] = logit
        masks[0, q] = logit * (2 * tmasks[j] - 1)
    return {"pred_logits": logits, "pred_masks": masks}


# ---------------------------------------------------------------------------------------------
# point sampling
# ---------------------------------------------------------------------------------------------
def test_point_sample_is_bilinear():
    inp = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]]).view(1, 1, 2, 3)
    x, y = 0.4, 0.6  # normalised (x, y)
    # align_corners=False: pixel coordinates px = x * W - 0.5, py = y * H - 0.5
    px, py = x * 3 - 0.5, y * 2 - 0.5  # 0.7, 0.7
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0
    v = inp[0, 0]
    expected = (
        v[y0, x0] * (1 - fx) * (1 - fy)
        + v[y0, x0 + 1] * fx * (1 - fy)
        + v[y0 + 1, x0] * (1 - fx) * fy
        + v[y0 + 1, x0 + 1] * fx * fy
    )
    out = point_sample(inp, torch.tensor([[[x, y]]]))
    assert out.shape == (1, 1, 1)
    torch.testing.assert_close(out[0, 0, 0], expected)
    # pixel centres give the pixel values exactly
    centre = torch.tensor([[[(2 + 0.5) / 3, (1 + 0.5) / 2]]])
    assert point_sample(inp, centre).item() == 32.0


def test_uncertain_points_pick_most_uncertain():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8) * 3
    num_points, ratio = 10, 4.0
    torch.manual_seed(123)
    coords = get_uncertain_point_coords_with_randomness(
        logits, calculate_uncertainty, num_points, ratio, importance_sample_ratio=1.0
    )
    assert coords.shape == (2, num_points, 2)
    torch.manual_seed(123)
    candidates = torch.rand(2, int(num_points * ratio), 2)  # the candidate draw, reproduced
    unc = calculate_uncertainty(point_sample(logits, candidates))[:, 0]  # (2, 40)
    for n in range(2):
        chosen = calculate_uncertainty(point_sample(logits[n : n + 1], coords[n : n + 1]))[0, 0]
        best = torch.topk(unc[n], num_points).values
        torch.testing.assert_close(chosen.sort().values, best.sort().values)
        # every chosen point is a candidate
        d = (coords[n][:, None] - candidates[n][None]).abs().amax(-1).min(dim=1).values
        assert torch.all(d < 1e-6)
    # mixed: 75% uncertain + fresh random points
    mixed = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 8, 3, 0.75)
    assert mixed.shape == (2, 8, 2) and mixed.min() >= 0 and mixed.max() <= 1


# ---------------------------------------------------------------------------------------------
# exact loss values
# ---------------------------------------------------------------------------------------------
def test_dice_and_sigmoid_ce_exact_values():
    xs = [[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]]
    ts = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]]
    inputs, targets = torch.tensor(xs), torch.tensor(ts)
    num_masks = 3.0
    # sigmoid CE: sum over masks of the mean over points of BCE, / num_masks
    exp_ce = sum(sum(_bce(x, t) for x, t in zip(xr, tr)) / 3 for xr, tr in zip(xs, ts)) / num_masks
    # dice: sum over masks of 1 - (2 sum s*t + 1) / (sum s + sum t + 1), / num_masks
    exp_dice = sum(_dice(xr, tr) for xr, tr in zip(xs, ts)) / num_masks
    assert sigmoid_ce_loss(inputs, targets, num_masks).item() == pytest.approx(exp_ce, rel=1e-6)
    assert dice_loss(inputs, targets, num_masks).item() == pytest.approx(exp_dice, rel=1e-6)
    # pairwise (matching) costs: entry (n, m) = per-pair mean BCE / dice
    ce = batch_sigmoid_ce_cost(inputs, targets)
    dc = batch_dice_cost(inputs, targets)
    for n in range(2):
        for m in range(2):
            assert ce[n, m].item() == pytest.approx(
                sum(_bce(x, t) for x, t in zip(xs[n], ts[m])) / 3, rel=1e-6
            )
            assert dc[n, m].item() == pytest.approx(_dice(xs[n], ts[m]), rel=1e-6)


def test_loss_masks_wiring_matches_manual_point_computation():
    torch.manual_seed(0)
    crit = SetCriterion(3, HungarianMatcher(), {}, 0.1, ["masks"], 50, 3.0, 0.75)
    outputs = {"pred_logits": torch.zeros(2, 4, 4), "pred_masks": torch.randn(2, 4, 8, 8)}
    targets = [
        {"labels": torch.tensor([0]), "masks": torch.rand(1, 16, 16) > 0.5},
        {"labels": torch.tensor([1, 2]), "masks": torch.rand(2, 12, 14) > 0.5},
    ]
    indices = [(torch.tensor([3]), torch.tensor([0])), (torch.tensor([0, 2]), torch.tensor([1, 0]))]
    torch.manual_seed(7)
    losses = crit.loss_masks(outputs, targets, indices, num_masks=3.0)
    # manual: same matched order (image 0 then image 1), targets padded to 16x16
    src = torch.stack([outputs["pred_masks"][0, 3], outputs["pred_masks"][1, 0], outputs["pred_masks"][1, 2]])
    tgt = torch.zeros(3, 16, 16)
    tgt[0] = targets[0]["masks"][0].float()
    tgt[1, :12, :14] = targets[1]["masks"][1].float()
    tgt[2, :12, :14] = targets[1]["masks"][0].float()
    torch.manual_seed(7)
    coords = get_uncertain_point_coords_with_randomness(src[:, None], calculate_uncertainty, 50, 3.0, 0.75)
    pl = point_sample(src[:, None], coords)[:, 0]
    pt = point_sample(tgt[:, None], coords)[:, 0]
    torch.testing.assert_close(losses["loss_mask"], sigmoid_ce_loss(pl, pt, 3.0))
    torch.testing.assert_close(losses["loss_dice"], dice_loss(pl, pt, 3.0))


def test_ce_weighting_with_eos_coef():
    eos = 0.1
    crit = SetCriterion(2, HungarianMatcher(), {}, eos, ["labels"], 10, 3.0, 0.75)
    assert crit.empty_weight.tolist() == pytest.approx([1.0, 1.0, eos])
    rows = [[1.0, 0.5, -0.5], [0.2, 2.0, 0.1], [-1.0, 0.3, 1.2]]
    outputs = {"pred_logits": torch.tensor([rows]), "pred_masks": torch.zeros(1, 3, 4, 4)}
    targets = [{"labels": torch.tensor([1]), "masks": torch.zeros(1, 4, 4)}]
    indices = [(torch.tensor([1]), torch.tensor([0]))]  # query 1 <-> target 0 (class 1)
    loss = crit.loss_labels(outputs, targets, indices, 1.0)["loss_ce"].item()
    y = [2, 1, 2]  # unmatched queries -> no-object (class K = 2)
    w = [1.0, 1.0, eos]

    def nll(row, c):
        return -(row[c] - math.log(sum(math.exp(v) for v in row)))

    expected = sum(w[yq] * nll(r, yq) for r, yq in zip(rows, y)) / sum(w[yq] for yq in y)
    assert loss == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        crit.loss_labels({"pred_logits": torch.zeros(1, 3, 5)}, targets, indices, 1.0)


# ---------------------------------------------------------------------------------------------
# matcher
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_points", [0, 500])
def test_matcher_recovers_permutation(num_points):
    torch.manual_seed(0)
    target = _scene(16, 16, factor=2)  # targets at twice the prediction resolution
    perm = [3, 0, 4]
    outputs = _perfect_outputs(target, perm, h=16, w=16, logit=8.0)
    matcher = HungarianMatcher(cost_class=2, cost_mask=5, cost_dice=5, num_points=num_points)
    (i, j), = matcher(outputs, [target])
    assert i.dtype == torch.int64 and j.dtype == torch.int64
    assert {(int(a), int(b)) for a, b in zip(i, j)} == {(q, t) for t, q in enumerate(perm)}


def test_matcher_empty_targets():
    matcher = HungarianMatcher(num_points=20)
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_masks": torch.randn(2, 4, 8, 8)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8)},
        {"labels": torch.tensor([1]), "masks": torch.ones(1, 8, 8)},
    ]
    idx = matcher(outputs, targets)
    assert idx[0][0].numel() == 0 and idx[0][1].numel() == 0
    assert idx[1][0].numel() == 1 and idx[1][1].tolist() == [0]


# ---------------------------------------------------------------------------------------------
# criterion
# ---------------------------------------------------------------------------------------------
def _criterion(importance=0.75, num_points=4000):
    matcher = HungarianMatcher(cost_class=2, cost_mask=5, cost_dice=5, num_points=num_points)
    weights = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    return SetCriterion(3, matcher, weights, 0.1, ["labels", "masks"], num_points, 3.0, importance)


def _weighted(losses, weights):
    return sum(losses[k] * weights[k] for k in weights)


@pytest.mark.slow
def test_perfect_prediction_near_zero_and_better_than_shuffled():
    torch.manual_seed(0)
    target = _scene(128, 128)
    perm = [3, 0, 4]
    perfect = _perfect_outputs(target, perm, h=128, w=128)
    # uniform points: only the 1-pixel boundary bands carry soft (interpolated) targets
    losses = _criterion(importance=0.0)(perfect, [target])
    assert losses["loss_ce"].item() < 1e-6
    assert losses["loss_mask"].item() < 0.1
    assert losses["loss_dice"].item() < 0.02
    # shuffled masks (classes kept): swap the mask predictions of two matched queries
    crit = _criterion()
    shuffled = {k: v.clone() for k, v in perfect.items()}
    shuffled["pred_masks"][0, [3, 0]] = perfect["pred_masks"][0, [0, 3]]
    # spatially shuffled masks (flipped upside down): no assignment can repair them
    flipped = {"pred_logits": perfect["pred_logits"], "pred_masks": perfect["pred_masks"].flip(-2)}
    good = crit(perfect, [target])
    for bad in (crit(shuffled, [target]), crit(flipped, [target])):
        assert _weighted(good, crit.weight_dict) < _weighted(bad, crit.weight_dict)
    assert good["loss_dice"] < bad["loss_dice"] and good["loss_mask"] < bad["loss_mask"]


def test_empty_targets_and_aux_outputs():
    torch.manual_seed(0)
    crit = _criterion(num_points=64)
    pred_logits = torch.randn(2, 4, 4, requires_grad=True)
    pred_masks = torch.randn(2, 4, 16, 16, requires_grad=True)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)}
    one = {"labels": torch.tensor([2]), "masks": torch.ones(1, 32, 32, dtype=torch.bool)}
    for targets in ([empty, one], [empty, empty]):
        aux = [{"pred_logits": pred_logits * 0.5, "pred_masks": pred_masks * 0.5} for _ in range(2)]
        outputs = {"pred_logits": pred_logits, "pred_masks": pred_masks, "aux_outputs": aux}
        losses = crit(outputs, targets)
        expected = {f"{k}{s}" for k in ("loss_ce", "loss_mask", "loss_dice") for s in ("", "_0", "_1")}
        assert set(losses) == expected
        assert all(torch.isfinite(v) for v in losses.values())
        total = sum(losses.values())
        total.backward()
        assert pred_masks.grad is not None and pred_logits.grad is not None
        pred_logits.grad = None
        pred_masks.grad = None
    assert losses["loss_mask"].item() == 0.0  # no target anywhere: zero mask losses


def test_build_criterion_from_config():
    cfg = get_cfg()
    crit = build_criterion(cfg)
    assert crit.empty_weight.shape == (134,)
    assert crit.empty_weight[-1].item() == pytest.approx(0.1)
    assert "empty_weight" in crit.state_dict()
    assert crit.matcher.num_points == 12544 and crit.num_points == 12544
    assert crit.matcher.cost_class == 2.0 and crit.matcher.cost_mask == 5.0
    wd = crit.weight_dict
    assert wd["loss_ce"] == 2.0 and wd["loss_mask"] == 5.0 and wd["loss_dice"] == 5.0
    assert "loss_dice_8" in wd and "loss_ce_9" not in wd and len(wd) == 3 * 10
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = False
    assert len(build_criterion(cfg).weight_dict) == 3
