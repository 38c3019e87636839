"""OVSeg through the FrozenSeg engine: ``train_net.py --eval-only`` on the tiny OVSeg configs
(copypaste lines, the config's mIoU denominator), training steps with resume, the optimiser's
parameter groups and the release's schedule and clipping (docs/models/ovseg.md §3.A)."""

from __future__ import annotations

import math

import pytest
import torch

from frozenseg.engine import DefaultTrainer
from frozenseg.engine.lr_scheduler import build_lr_scheduler
from frozenseg.engine.optimizer import build_optimizer, clip_gradients, get_param_groups
from frozenseg.utils.errors import ConfigValueError

from ..conftest import REPO_ROOT
from .conftest import tiny_cfg
from .test_training import _train

TINY_SWIN = REPO_ROOT / "configs" / "tiny" / "ovseg_tiny_swin.yaml"
TINY_RESNET = REPO_ROOT / "configs" / "tiny" / "ovseg_tiny_resnet.yaml"
SHAPES = REPO_ROOT / "configs" / "synthetic" / "ovseg_tiny_shapes.yaml"
RELEASED_SWIN = REPO_ROOT / "configs" / "ovseg" / "ovseg_swinB_vitL_bs32_120k.yaml"

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The shapes training config at test size: 64 px crops, 2 images per step, 2 steps, a checkpoint
# after every step, no evaluation.
TRAIN_OVERRIDES = [
    "INPUT.MIN_SIZE_TRAIN", "(48, 64)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.CROP.SIZE", "(64, 64)",
    "INPUT.SIZE_DIVISIBILITY", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
    "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.WARMUP_ITERS", "1", "DATASETS.TEST", "()", "SEED", "7",
]


def _cfg(config_file, output_dir, *extra):
    from frozenseg import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_list([str(x) for x in extra] + ["OUTPUT_DIR", str(output_dir)])
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.mark.parametrize("config", [TINY_SWIN, TINY_RESNET], ids=["swin", "resnet"])
@pytest.mark.slow
def test_eval_only_prints_the_copypaste_lines(shapes_root, tmp_path, config):
    """``train_net.py --eval-only`` on the synthetic semantic split: copypaste lines in the log,
    finite metrics, the release's mIoU denominator of the config."""
    import train_net

    res = train_net.cli(["--config-file", str(config), "--eval-only", "OUTPUT_DIR", str(tmp_path),
                         "MODEL.DEVICE", "cpu", "SEED", "0"])
    assert set(res) == {"sem_seg"}
    for key in ("mIoU", "fwIoU", "mACC", "pACC"):
        assert math.isfinite(res["sem_seg"][key]) and 0.0 <= res["sem_seg"][key] <= 100.0, key
    log = (tmp_path / "log.txt").read_text()
    assert "copypaste: Task: sem_seg" in log and "copypaste: mIoU,fwIoU,mACC,pACC" in log
    assert (tmp_path / "inference" / "synthetic_shapes_val_sem_seg" / "results.json").is_file()
    cfg = _cfg(config, tmp_path)
    assert cfg.TEST.SEM_SEG_MIOU_DENOMINATOR == "gt_or_pred"
    evaluator = DefaultTrainer.build_evaluator(cfg, "synthetic_shapes_val_sem_seg")
    assert evaluator._miou_denominator == "gt_or_pred"


@pytest.mark.slow
def test_evaluation_with_tta_and_tasks_ovseg_cannot_do(shapes_root, tmp_path):
    """The TTA wrapper averages OVSeg's semantic scores; asking OVSeg for panoptic output is one
    sentence naming the key to change."""
    cfg = _cfg(TINY_SWIN, tmp_path, "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)", "SEED", "0")
    model = DefaultTrainer.build_model(cfg)
    model.eval()
    res = DefaultTrainer.test_with_TTA(cfg, model)
    assert set(res) == {"sem_seg_TTA"} and math.isfinite(res["sem_seg_TTA"]["mIoU"])
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    with pytest.raises(ConfigValueError) as e:
        DefaultTrainer.test(cfg, model)
    assert str(e.value) == ("MODEL.MASK_FORMER.TEST.PANOPTIC_ON is True but OVSeg gives semantic output only; "
                            "set MODEL.MASK_FORMER.TEST.PANOPTIC_ON False.")


@pytest.mark.slow
def test_training_steps_and_resume(shapes_root, tmp_path):
    """Two training steps of the tiny OVSeg through DefaultTrainer (mask_former_semantic data,
    MaskFormer-v1 losses): the trainable parts change, the frozen CLIP does not, and a run killed
    after step 0 and resumed ends with the uninterrupted run's weights."""
    a, _ = _train(tiny_cfg(tmp_path / "a", *TRAIN_OVERRIDES, config_file=SHAPES))
    init = torch.load(tmp_path / "a" / "model_0000000.pth", weights_only=True)["model"]
    final = a.unwrapped_model.state_dict()
    clip = [k for k in final if k.startswith("clip_adapter.clip_model.")]
    assert clip and all(torch.equal(init[k], final[k]) for k in clip)
    for k in ("sem_seg_head.predictor.query_embed.weight", "clip_adapter.non_object_embedding",
              "backbone.patch_embed.proj.weight"):
        assert not torch.equal(init[k], final[k]), k
    losses = dict((int(i), v) for v, i in a.storage.history("total_loss").values())
    assert sorted(losses) == [0, 1] and all(math.isfinite(v) for v in losses.values())
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0"} <= set(a.storage.histories())

    _train(tiny_cfg(tmp_path / "b", *TRAIN_OVERRIDES, config_file=SHAPES), kill_after=0)
    b, _ = _train(tiny_cfg(tmp_path / "b", *TRAIN_OVERRIDES, config_file=SHAPES), resume=True)
    assert b.start_iter == 1
    resumed = b.unwrapped_model.state_dict()
    for k, v in final.items():
        assert torch.allclose(v, resumed[k], rtol=0, atol=1e-6), k


def test_optimizer_groups_on_the_ovseg_model():
    """AdamW groups of the released recipe on hand-picked OVSeg parameters: the backbone
    multiplier on "backbone" modules; no decay for norms, embeddings and Swin's relative position
    tables; the bare no-object embedding keeps the decay; the frozen CLIP is not optimised."""
    from frozenseg import build_model

    cfg = _cfg(TINY_SWIN, "", "SOLVER.BASE_LR", "0.0002", "SOLVER.BACKBONE_MULTIPLIER", "0.1",
               "SOLVER.WEIGHT_DECAY", "0.01", "SOLVER.OPTIMIZER", "ADAMW")
    model = build_model(cfg, load_frozen_weights=False)
    groups = get_param_groups(model, 2e-4, 0.01, weight_decay_norm=0.0, weight_decay_embed=0.0,
                              backbone_multiplier=0.1)
    hp = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    expected = {
        "backbone.patch_embed.proj.weight": (2e-5, 0.01),
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table": (2e-5, 0.0),
        "backbone.layers.0.blocks.0.norm1.weight": (2e-5, 0.0),
        "backbone.norm3.bias": (2e-5, 0.0),
        "sem_seg_head.pixel_decoder.adapter_1.weight": (2e-4, 0.01),
        "sem_seg_head.pixel_decoder.adapter_1.norm.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.query_embed.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.transformer.decoder.layers.0.norm1.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.transformer.decoder.layers.0.multihead_attn.in_proj_weight": (2e-4, 0.01),
        "sem_seg_head.predictor.class_embed.layers.0.weight": (2e-4, 0.01),
        "clip_adapter.non_object_embedding": (2e-4, 0.01),
    }
    for name, (lr, wd) in expected.items():
        assert hp[name] == (pytest.approx(lr), wd), name
    assert not [n for n in hp if n.startswith("clip_adapter.clip_model.")]
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(hp)


def test_released_schedule_and_gradient_clipping():
    """The released Swin-B config through the engine's builders: WarmupPolyLR (power 0.9, 1500
    linear warm-up iterations from 1e-6 of the rate) and full-model L2 clipping at 0.01."""
    cfg = _cfg(RELEASED_SWIN, "")
    p = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([{"params": [p], "lr": cfg.SOLVER.BASE_LR}], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, optimizer)
    assert sched.factor(0) == pytest.approx(1e-6)
    assert sched.factor(750) == pytest.approx((1e-6 * 0.5 + 0.5) * (1 - 750 / 120000) ** 0.9)
    assert sched.factor(60000) == pytest.approx(0.5 ** 0.9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(6e-5 * 1e-6)
    q = torch.nn.Parameter(torch.zeros(4))
    p.grad, q.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    assert clip_gradients(cfg, [p, q]) == pytest.approx(5.0)  # the norm before clipping
    assert torch.allclose(p.grad, torch.tensor([0.006, 0.0, 0.0]), atol=1e-8)
    assert torch.allclose(q.grad, torch.tensor([0.0, 0.008, 0.0, 0.0]), atol=1e-8)
