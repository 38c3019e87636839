"""Optimiser parameter groups, gradient clipping, LR schedules, AMP settings, non-finite stop
(small stub models: fast)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from frozenseg import get_cfg
from frozenseg.engine import (
    EventStorage,
    SimpleTrainer,
    WarmupMultiStepLR,
    WarmupPolyLR,
    build_lr_scheduler,
    build_optimizer,
    check_finite_losses,
    clip_gradients,
    get_param_groups,
)
from frozenseg.engine.train_loop import amp_settings


class StubModel(nn.Module):
    """Frozen "backbone" + trainable parts with a norm layer, an embedding and a level_embed."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 3)
        self.backbone.requires_grad_(False)
        self.neck = nn.Linear(3, 4)
        self.norm = nn.GroupNorm(2, 4)
        self.query_feat = nn.Embedding(2, 4)
        self.level_embed = nn.Parameter(torch.zeros(2, 4))
        self.head = nn.Linear(4, 1)
        self.nan_at_call: int | None = None
        self.calls = 0

    def forward(self, batch):
        x = torch.stack([d["x"] for d in batch])
        h = self.norm(self.neck(self.backbone(x)) + self.query_feat.weight.sum(0) + self.level_embed.sum(0))
        loss_a = self.head(h).pow(2).mean()
        loss_b = (h - torch.stack([d["y"] for d in batch])).abs().mean()
        if self.nan_at_call is not None and self.calls == self.nan_at_call:
            loss_b = loss_b * float("nan")
        self.calls += 1
        return {"loss_a": loss_a, "loss_b": loss_b}


def _batches(seed: int = 0, n: int = 100, bs: int = 2):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield [{"x": torch.randn(3, generator=g), "y": torch.randn(4, generator=g)} for _ in range(bs)]


def test_param_groups_follow_mask2former():
    model = StubModel()
    model.backbone_adapter = nn.Module()
    model.backbone_adapter.backbone_proj = nn.Linear(2, 2)  # trainable inside a "backbone" module
    groups = get_param_groups(model, base_lr=1e-3, weight_decay=0.05, weight_decay_norm=0.0,
                              weight_decay_embed=0.0, backbone_multiplier=0.1)
    by_name = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    assert "backbone.weight" not in by_name and "backbone.bias" not in by_name  # frozen: excluded
    assert by_name["neck.weight"] == (1e-3, 0.05)
    assert by_name["neck.bias"] == (1e-3, 0.05)
    assert by_name["norm.weight"] == (1e-3, 0.0) and by_name["norm.bias"] == (1e-3, 0.0)
    assert by_name["query_feat.weight"] == (1e-3, 0.0)
    assert by_name["level_embed"] == (1e-3, 0.0)
    assert by_name["backbone_adapter.backbone_proj.weight"] == pytest.approx((1e-4, 0.05))
    # identical hyper-parameters share one group
    assert len(groups) == len({(g["lr"], g["weight_decay"]) for g in groups}) == 3


@pytest.mark.parametrize("name,cls", [("ADAMW", torch.optim.AdamW), ("SGD", torch.optim.SGD)])
def test_build_optimizer_only_trainable(name, cls):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = name
    model = StubModel()
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, cls)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.parameters() if p.requires_grad}


def test_full_model_clipping_bounds_the_global_norm():
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
    params = [nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(4))]
    for p in params:
        p.grad = torch.full_like(p, 5.0)
    before = clip_gradients(cfg, params)
    assert before == pytest.approx(5.0 * math.sqrt(7), rel=1e-5)
    after = torch.cat([p.grad for p in params]).norm()
    assert float(after) == pytest.approx(0.01, rel=1e-4)
    # direction kept: one scale for the whole model
    assert torch.allclose(params[0].grad, params[1].grad[:3])


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    return out


def test_warmup_multistep_matches_detectron2_formula():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = WarmupMultiStepLR(opt, milestones=[6, 8], max_iter=10, gamma=0.1, warmup_factor=0.001,
                              warmup_iters=4, warmup_method="linear")
    lrs = _lrs(sched, 10)
    expected = []
    for it in range(10):
        warm = 0.001 * (1 - it / 4) + it / 4 if it < 4 else 1.0
        expected.append(0.1 * warm * 0.1 ** sum(it >= m for m in (6, 8)))
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_warmup_poly_and_constant_warmup():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = WarmupPolyLR(opt, max_iter=10, warmup_factor=0.5, warmup_iters=2, warmup_method="constant", power=0.9)
    lrs = _lrs(sched, 10)
    expected = [(0.5 if it < 2 else 1.0) * (1 - it / 10) ** 0.9 for it in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_scheduler_state_roundtrip_gives_the_same_rate():
    cfg = get_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
    cfg.SOLVER.MAX_ITER = 50
    cfg.SOLVER.WARMUP_ITERS = 5
    model = StubModel()
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    _lrs(sched, 17)
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    opt2 = build_optimizer(cfg, StubModel())
    sched2 = build_lr_scheduler(cfg, opt2)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert _lrs(sched2, 5) == _lrs(sched, 5)


def test_unknown_scheduler_and_bad_warmup():
    cfg = get_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "Cosine"
    with pytest.raises(ValueError, match="LR_SCHEDULER_NAME"):
        build_lr_scheduler(cfg, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    cfg.SOLVER.WARMUP_METHOD = "cubic"
    with pytest.raises(ValueError, match="WARMUP_METHOD"):
        build_lr_scheduler(cfg, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))


def test_amp_settings():
    cfg = get_cfg()
    cpu = torch.device("cpu")
    assert amp_settings(cfg, cpu) == (None, False)
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.DTYPE = "bfloat16"
    assert amp_settings(cfg, cpu) == (torch.bfloat16, False)
    cfg.SOLVER.AMP.DTYPE = "float16"
    assert amp_settings(cfg, cpu) == (None, False)  # fp16 needs CUDA: float32 with a warning
    assert amp_settings(cfg, torch.device("cuda")) == (torch.float16, True)
    cfg.SOLVER.AMP.DTYPE = "int8"
    with pytest.raises(ValueError, match="AMP.DTYPE"):
        amp_settings(cfg, cpu)


def test_bf16_autocast_training_on_cpu():
    model = StubModel()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    trainer = SimpleTrainer(model, _batches(), opt, amp_dtype=torch.bfloat16)
    trainer.train(0, 3)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_loss_stops_with_iteration_and_term():
    model = StubModel()
    model.nan_at_call = 5  # iteration 2, second micro-batch (2 accumulation steps)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    trainer = SimpleTrainer(model, _batches(), opt, grad_accum_steps=2)
    with pytest.raises(FloatingPointError, match=r"Loss became infinite or NaN at iteration=2: loss_b=nan"):
        trainer.train(0, 10)
    assert trainer.iter == 2


def test_predictions_diverging_before_any_loss_stop_with_the_iteration():
    """A learning rate far too high makes the predictions NaN; the Hungarian matcher finds it
    before any loss exists: training stops with a FloatingPointError naming the iteration."""
    from frozenseg.modeling.matcher import HungarianMatcher

    matcher = HungarianMatcher(1.0, 1.0, 1.0, num_points=16)
    outputs = {"pred_logits": torch.full((1, 3, 3), float("nan")), "pred_masks": torch.zeros(1, 3, 8, 8)}
    targets = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 8, 8)}]
    with pytest.raises(FloatingPointError, match="the predictions became infinite or NaN"):
        matcher(outputs, targets)

    class Diverging(StubModel):
        def forward(self, batch):
            if self.calls >= 2:
                matcher(outputs, targets)
            return super().forward(batch)

    model = Diverging()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    trainer = SimpleTrainer(model, _batches(), opt)
    with pytest.raises(FloatingPointError, match=r"^Training diverged at iteration=2: the predictions became infinite "
                                                 r"or NaN \(the matching cost is not finite\)\.$"):
        trainer.train(0, 10)


def test_check_finite_losses_names_every_bad_term():
    with pytest.raises(FloatingPointError) as e:
        check_finite_losses({"loss_ce": torch.tensor(1.0), "loss_mask": torch.tensor(float("inf")),
                             "loss_dice": torch.tensor(float("nan"))}, 7)
    assert str(e.value).startswith("Loss became infinite or NaN at iteration=7: loss_mask=inf")
    assert "loss_dice=nan" in str(e.value)


def test_gradient_accumulation_equals_one_big_batch():
    """2 micro-batches of 2 images give the same update as one batch of 4 (mean losses)."""
    data = list(_batches(n=8, bs=2))

    def run(accum, batches):
        torch.manual_seed(0)
        model = StubModel()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        SimpleTrainer(model, iter(batches), opt, grad_accum_steps=accum).train(0, 2)
        return [p.detach().clone() for p in model.parameters()]

    merged = [data[i] + data[i + 1] for i in range(0, 4, 2)]
    # GroupNorm/abs are per-sample, losses are means: accumulation of halves == the full mean
    for a, b in zip(run(2, data), run(1, merged)):
        assert torch.allclose(a, b, atol=1e-6)


def test_event_storage_smoothing():
    with EventStorage(0) as s:
        for i in range(5):
            s.put_scalar("loss", float(i))
            s.put_scalar("lr", 0.1 * i, smoothing_hint=False)
            s.step()
        latest = s.latest_with_smoothing_hint(3)
        assert latest["loss"][0] == 3.0 and latest["lr"][0] == pytest.approx(0.4)
