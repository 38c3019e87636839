"""configs/ovseg: the release's file names and settings (docs/models/ovseg.md §5), one evaluation config per
benchmark with the ensemble weight and mask threshold the release documents, and the release's
key names accepted."""

from __future__ import annotations

import pytest
import yaml

import frozenseg

from ..conftest import REPO_ROOT

OVSEG = REPO_ROOT / "configs" / "ovseg"
#: benchmark -> (dataset name, Swin-B/ViT-L lambda): the release's evaluation commands
BENCHMARKS = {
    "ade150": ("ade20k_sem_seg_val", 0.7),
    "ade847": ("ade20k_full_sem_seg_val", 0.7),
    "pc59": ("pascal_context_59_sem_seg_val", 0.6),
    "pc459": ("pascal_context_459_sem_seg_val", 0.6),
    "voc20": ("pascalvoc20_sem_seg_val", 0.45),
}


def _load(path):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


def test_release_file_names_exist():
    assert sorted(p.name for p in OVSEG.glob("*.yaml")) == [
        "ovseg_R101c_vitB_bs32_120k.yaml", "ovseg_swinB_vitL_bs32_120k.yaml", "ovseg_swinB_vitL_demo.yaml",
    ]


def test_swin_b_vit_l_settings():
    cfg = _load(OVSEG / "ovseg_swinB_vitL_bs32_120k.yaml")
    m = cfg.MODEL
    assert (m.META_ARCHITECTURE, m.BACKBONE.NAME, m.BACKBONE.FREEZE_AT) == ("OVSeg", "D2SwinTransformer", 0)
    assert (m.SWIN.EMBED_DIM, list(m.SWIN.DEPTHS), list(m.SWIN.NUM_HEADS), m.SWIN.WINDOW_SIZE) == (
        128, [2, 2, 18, 2], [4, 8, 16, 32], 12)
    assert (m.SWIN.DROP_PATH_RATE, m.SWIN.PRETRAIN_IMG_SIZE, m.SWIN.APE) == (0.3, 384, False)
    c = m.CLIP_ADAPTER
    assert (c.CLIP_MODEL_NAME, c.MASK_THR, c.CLIP_ENSEMBLE_WEIGHT, c.MASK_PROMPT_DEPTH, c.MASK_PROMPT_FWD) == (
        "ViT-L/14", 0.4, 0.7, 3, True)
    assert (c.TEXT_TEMPLATES, c.MASK_FILL, c.MASK_EXPAND_RATIO, c.REGION_RESIZED) == ("vild", "mean", 1.0, True)
    assert m.SEM_SEG_HEAD.EMBEDDING_DIM == 768 and m.SEM_SEG_HEAD.NUM_CLASSES == 171
    s = cfg.SOLVER
    assert (s.IMS_PER_BATCH, s.BASE_LR, s.MAX_ITER, s.WEIGHT_DECAY, s.BACKBONE_MULTIPLIER) == (32, 6e-5, 120000, 0.01, 1.0)
    assert (s.WARMUP_ITERS, s.WARMUP_FACTOR, s.CLIP_GRADIENTS.CLIP_VALUE) == (1500, 1e-6, 0.01)
    # the release's eval tag: [int(x * 0.1 * 640) for x in range(5, 21)]
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [int(x * 0.1 * 640) for x in range(5, 21)]
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, tuple(cfg.INPUT.CROP.SIZE)) == (640, 2560, (640, 640))


def test_r101c_vit_b_settings_write_out_detectron2_defaults():
    cfg = _load(OVSEG / "ovseg_R101c_vitB_bs32_120k.yaml")
    m = cfg.MODEL
    assert (m.BACKBONE.NAME, m.BACKBONE.FREEZE_AT, m.RESNETS.NORM, m.RESNETS.STEM_TYPE) == (
        "build_resnet_deeplab_backbone", 2, "FrozenBN", "deeplab")
    assert (m.RESNETS.DEPTH, list(m.RESNETS.RES5_MULTI_GRID), m.RESNETS.STRIDE_IN_1X1) == (101, [1, 2, 4], False)
    c = m.CLIP_ADAPTER
    assert (c.CLIP_MODEL_NAME, c.MASK_THR, c.CLIP_ENSEMBLE_WEIGHT) == ("ViT-B/16", 0.5, 0.7)
    assert m.SEM_SEG_HEAD.EMBEDDING_DIM == 512
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.BACKBONE_MULTIPLIER, cfg.SOLVER.WEIGHT_DECAY) == (2e-4, 0.1, 1e-4)
    assert (tuple(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN) == ((800,), 1333)
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, tuple(cfg.INPUT.CROP.SIZE)) == (512, 2048, (512, 512))


def test_demo_setting():
    cfg = _load(OVSEG / "ovseg_swinB_vitL_demo.yaml")
    c = cfg.MODEL.CLIP_ADAPTER
    assert (cfg.MODEL.META_ARCHITECTURE, c.MASK_THR, c.CLIP_ENSEMBLE_WEIGHT) == ("OVSegDEMO", 0.35, 0.0)


def test_keys_that_mean_something_else_in_frozenseg_are_set_explicitly():
    """Class weight, decoder layers, dropout and the mask-loss weight have FrozenSeg defaults of
    another meaning (2.0, 10 = layers + 1, 0.0, BCE): the OVSeg base config writes each one."""
    raw = yaml.unsafe_load((OVSEG / "ovseg_swinB_vitL_bs32_120k.yaml").read_text())
    mf = raw["MODEL"]["MASK_FORMER"]
    assert {k: mf[k] for k in ("CLASS_WEIGHT", "DEC_LAYERS", "DROPOUT", "MASK_WEIGHT", "DICE_WEIGHT",
                               "NO_OBJECT_WEIGHT", "ENC_LAYERS", "PRE_NORM")} == {
        "CLASS_WEIGHT": 1.0, "DEC_LAYERS": 6, "DROPOUT": 0.1, "MASK_WEIGHT": 20.0, "DICE_WEIGHT": 1.0,
        "NO_OBJECT_WEIGHT": 0.1, "ENC_LAYERS": 0, "PRE_NORM": False}
    defaults = frozenseg.get_cfg().MODEL.MASK_FORMER
    assert (defaults.CLASS_WEIGHT, defaults.DEC_LAYERS, defaults.DROPOUT) != (1.0, 6, 0.1)


@pytest.mark.parametrize("model,thr", [("swinB_vitL", 0.4), ("R101c_vitB", 0.5)])
@pytest.mark.parametrize("bench", sorted(BENCHMARKS))
def test_one_evaluation_config_per_benchmark(model, thr, bench):
    dataset, lam = BENCHMARKS[bench]
    cfg = _load(OVSEG / "eval" / f"ovseg_{model}_eval_{bench}.yaml")
    assert tuple(cfg.DATASETS.TEST) == (dataset,)
    expected_lam = lam if model == "swinB_vitL" else 0.7  # the release documents R101c on ADE-150 only
    assert (cfg.MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT, cfg.MODEL.CLIP_ADAPTER.MASK_THR) == (expected_lam, thr)
    assert cfg.TEST.SEM_SEG_MIOU_DENOMINATOR == "gt_or_pred"


def test_release_only_keys_are_accepted(tmp_path):
    """Keys of the release's config code that change nothing in its evaluation still load."""
    f = tmp_path / "release_style.yaml"
    f.write_text(
        "_BASE_: " + str(OVSEG / "ovseg_swinB_vitL_bs32_120k.yaml") + "\n"
        "SOLVER:\n  TEST_IMS_PER_BATCH: 1\n"
        "TEST:\n  SLIDING_WINDOW: False\n  SLIDING_TILE_SIZE: 224\n  DENSE_CRF: False\n"
        "DATASETS:\n  SAMPLE_PER_CLASS: -1\n  SAMPLE_SEED: 0\n"
        "WANDB:\n  PROJECT: open_vocab_seg\n  NAME: run\n"
        "MODEL:\n  CLIP_ADAPTER:\n    PROMPT_CHECKPOINT: ''\n    PREDEFINED_PROMPT_TEMPLATES: ['a sculpture of a {}.']\n"
    )
    cfg = _load(f)
    assert cfg.WANDB.NAME == "run" and cfg.MODEL.CLIP_ADAPTER.PREDEFINED_PROMPT_TEMPLATES == ["a sculpture of a {}."]
