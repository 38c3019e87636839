"""The configuration system: defaults, released YAMLs, _BASE_, overrides, unknown keys, and the
one-sentence errors for a missing file or a value of the wrong type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from frozenseg import get_cfg
from frozenseg.config import UnknownConfigKeyError
from frozenseg.utils.errors import ConfigFileNotFoundError, ConfigValueError, is_user_error

from ..conftest import RELEASED_CONFIGS, REPO_ROOT, require_shared

RELEASED_FILES = [
    "coco/Base-COCO-PanopticSegmentation.yaml",
    "coco/maskformer2_R50_bs16_50ep.yaml",
    *[
        f"coco/frozenseg/convnext_large_eval_{n}.yaml"
        for n in ("ade20k", "a847", "pc459", "pas21", "cityscapes", "mapillary_vistas",
                  "bdd_sem", "bdd_panop", "lvis", "coco")
    ],
    "coco/frozenseg/r50x64_eval_ade20k.yaml",
]


def _load(path: Path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


@pytest.mark.parametrize("rel", RELEASED_FILES)
def test_project_copy_loads(rel):
    cfg = _load(REPO_ROOT / "configs" / rel)
    assert cfg.SOLVER.IMS_PER_BATCH == 16
    assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 10


@pytest.mark.parametrize("rel", RELEASED_FILES)
def test_released_file_loads_and_equals_project_copy(rel):
    released = require_shared(RELEASED_CONFIGS / rel)
    assert _load(released) == _load(REPO_ROOT / "configs" / rel)


def test_base_inheritance_values():
    cfg = _load(REPO_ROOT / "configs/coco/frozenseg/r50x64_eval_ade20k.yaml")
    # from r50x64 itself
    assert cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME == "RN50x64"
    assert cfg.MODEL.FROZEN_SEG.EMBED_DIM == 1024
    assert cfg.MODEL.FROZEN_SEG.ENSEMBLE_ON_VALID_MASK is True
    # from convnext_large_eval_ade20k.yaml (its base)
    assert cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == 250
    assert cfg.MODEL.META_ARCHITECTURE == "FrozenSeg"
    # from maskformer2_R50_bs16_50ep.yaml and Base-COCO
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 133
    assert cfg.SOLVER.STEPS == (327778, 355092)
    assert cfg.MODEL.RESNETS.DEPTH == 50  # kept although unused
    assert cfg.DATASETS.TEST == ("openvocab_ade20k_full_sem_seg_val",)


def test_merge_from_list_reaches_config():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.SAM_NAME", "vit_l", "SOLVER.BASE_LR", "0.5", "DATASETS.TEST", "('a', 'b')"])
    assert cfg.MODEL.SAM_NAME == "vit_l"
    assert cfg.SOLVER.BASE_LR == 0.5
    assert cfg.DATASETS.TEST == ("a", "b")


def test_unknown_key_in_overrides_is_named_with_suggestion():
    cfg = get_cfg()
    with pytest.raises(UnknownConfigKeyError) as e:
        cfg.merge_from_list(["MODEL.FROZEN_SEG.CLIP_MODLE_NAME", "x"])
    msg = str(e.value)
    assert "MODEL.FROZEN_SEG.CLIP_MODLE_NAME" in msg and "MODEL.FROZEN_SEG.CLIP_MODEL_NAME" in msg


def test_unknown_key_in_file_is_named(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("MODEL:\n  SAM_NAEM: vit_b\n")
    with pytest.raises(UnknownConfigKeyError) as e:
        _load(f)
    assert "MODEL.SAM_NAEM" in str(e.value) and "bad.yaml" in str(e.value)


def test_missing_config_file_is_one_sentence(tmp_path):
    path = tmp_path / "no_such.yaml"
    with pytest.raises(ConfigFileNotFoundError) as e:
        _load(path)
    msg = str(e.value)
    assert msg == (f"Config file {str(path)!r} does not exist; give --config-file the path of a "
                   ".yaml file, e.g. configs/synthetic/frozenseg_tiny_shapes.yaml.")
    assert isinstance(e.value, FileNotFoundError) and is_user_error(e.value)


def test_missing_base_file_is_named_with_the_including_file(tmp_path):
    f = tmp_path / "child.yaml"
    f.write_text("_BASE_: missing_base.yaml\nSEED: 3\n")
    with pytest.raises(ConfigFileNotFoundError) as e:
        _load(f)
    msg = str(e.value)
    assert "missing_base.yaml" in msg and f"_BASE_ in {str(f)!r}" in msg and "\n" not in msg


@pytest.mark.parametrize("key,value,expected", [
    ("SOLVER.MAX_ITER", "abc", "SOLVER.MAX_ITER expects an integer, got 'abc' in command-line overrides"),
    ("SOLVER.BASE_LR", "1", "SOLVER.BASE_LR expects a number with a decimal point (e.g. 1.0), got 1"),
    ("MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "yes", "expects True or False, got 'yes'"),
])
def test_override_of_the_wrong_type_names_key_type_and_value(key, value, expected):
    cfg = get_cfg()
    with pytest.raises(ConfigValueError) as e:
        cfg.merge_from_list([key, value])
    msg = str(e.value)
    assert msg.startswith(expected) if expected.startswith(key) else expected in msg
    assert "Type mismatch" not in msg and "\n" not in msg and is_user_error(e.value)


def test_value_of_the_wrong_type_in_a_file_names_key_and_file(tmp_path):
    f = tmp_path / "bad_type.yaml"
    f.write_text("SOLVER:\n  MAX_ITER: many\n")
    with pytest.raises(ConfigValueError) as e:
        _load(f)
    assert str(e.value).startswith("SOLVER.MAX_ITER expects an integer") and "bad_type.yaml" in str(e.value)


def test_odd_override_list_is_refused():
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        get_cfg().merge_from_list(["MODEL.SAM_NAME"])


def test_every_default_key_is_documented():
    """Each key in defaults.py carries a comment on its line."""
    src = (REPO_ROOT / "frozenseg/config/defaults.py").read_text().splitlines()
    undocumented = [
        line for line in src
        if line.startswith("_C.") and "= CN()" not in line and "#" not in line
    ]
    # multi-line comments above a key are also accepted
    prev_comment = {i for i, line in enumerate(src) if line.lstrip().startswith("#")}
    undocumented = [
        line for line in undocumented if src.index(line) - 1 not in prev_comment
    ]
    assert undocumented == []


@pytest.mark.parametrize("path", ["frozenseg/models/frozenseg/config.py", "frozenseg/models/ovseg/config.py",
                                  "frozenseg/modeling/sam/config.py"])
def test_every_model_key_is_documented(path):
    """Each key a model's ``add_*_config`` adds carries a comment on its line or above it."""
    src = (REPO_ROOT / path).read_text().splitlines()
    keys = [i for i, line in enumerate(src)
            if re.match(r"^\s+[a-z]\w*(\.[A-Z][A-Z0-9_]*)+ = ", line) and "= CN()" not in line]
    assert keys, "no key assignments found"
    undocumented = [src[i].strip() for i in keys if "#" not in src[i] and not src[i - 1].lstrip().startswith("#")]
    assert undocumented == []


def test_a_config_holds_the_shared_keys_and_its_models_own():
    """Selecting another model swaps the model keys and keeps the shared values; the keys of the
    model not selected do not exist (a key means one thing)."""
    cfg = get_cfg()
    assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 10 and "FROZEN_SEG" in cfg.MODEL and "SAM_NAME" in cfg.MODEL
    cfg.merge_from_list(["SOLVER.BASE_LR", 0.5, "MODEL.FROZEN_SEG.EMBED_DIM", 1024])
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "OVSeg"])
    assert cfg.SOLVER.BASE_LR == 0.5  # shared: kept
    assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 6 and "FROZEN_SEG" not in cfg.MODEL and "SAM_NAME" not in cfg.MODEL
    assert cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME == "ViT-B/16"
    with pytest.raises(UnknownConfigKeyError, match="MODEL.FROZEN_SEG.EMBED_DIM"):
        cfg.merge_from_list(["MODEL.FROZEN_SEG.EMBED_DIM", 768])
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "OVSegDEMO"])  # same keys: nothing changes
    assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 6
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "FrozenSeg"])
    assert cfg.MODEL.FROZEN_SEG.EMBED_DIM == 768 and "CLIP_ADAPTER" not in cfg.MODEL  # defaults again
    assert cfg.SOLVER.BASE_LR == 0.5


def test_a_file_selects_its_model_before_its_keys_merge(tmp_path):
    path = tmp_path / "ovseg.yaml"
    path.write_text('MODEL:\n  META_ARCHITECTURE: "OVSeg"\n  CLIP_ADAPTER:\n    MASK_THR: 0.5\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.CLIP_ADAPTER.MASK_THR == 0.5 and "FROZEN_SEG" not in cfg.MODEL
    frozen = get_cfg()
    frozen.freeze()
    with pytest.raises(ConfigValueError, match="frozen"):
        frozen.merge_from_list(["MODEL.META_ARCHITECTURE", "OVSeg"])


def test_unknown_and_dotted_model_names():
    """A plain unknown name keeps the keys (a released base file names Mask2Former's "MaskFormer")
    and building refuses it in one sentence; a dotted path must import and name a model class."""
    import frozenseg

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "MaskFormer"])
    assert "FROZEN_SEG" in cfg.MODEL
    with pytest.raises(ConfigValueError, match=r"Unknown MODEL.META_ARCHITECTURE 'MaskFormer'; valid choices: FrozenSeg"):
        frozenseg.build_model(cfg, device="meta")
    with pytest.raises(ConfigValueError, match="cannot be imported"):
        get_cfg().merge_from_list(["MODEL.META_ARCHITECTURE", "no_such_package.Model"])
    with pytest.raises(ConfigValueError, match="is not a model"):
        get_cfg().merge_from_list(["MODEL.META_ARCHITECTURE", "frozenseg.config.CfgNode"])


@pytest.mark.parametrize("key, value, expected", [
    ("INPUT.IMAGE_SIZE", 0, "INPUT.IMAGE_SIZE must be a positive integer; got 0."),
    ("INPUT.MIN_SIZE_TEST", 0, "INPUT.MIN_SIZE_TEST must be a positive integer; got 0."),
    ("INPUT.MAX_SIZE_TEST", -5, "INPUT.MAX_SIZE_TEST must be a positive integer; got -5."),
    ("SOLVER.CHECKPOINT_PERIOD", 0, "SOLVER.CHECKPOINT_PERIOD must be a positive integer; got 0."),
    ("SOLVER.BASE_LR", -0.1, "SOLVER.BASE_LR must be a positive finite number; got -0.1."),
    ("MODEL.DEVICE", "tpu", "MODEL.DEVICE must be \"cpu\", \"cuda\" or \"cuda:N\"; got 'tpu'."),
    ("MODEL.DEVICE", "meta", "MODEL.DEVICE must be \"cpu\", \"cuda\" or \"cuda:N\"; got 'meta'."),
    ("MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", 1.5,
     "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD must be a number from 0 to 1; got 1.5."),
])
def test_values_out_of_range_are_refused_in_one_sentence(key, value, expected):
    """One table (frozenseg/config/checks.py) holds every key's range; setting up a run checks it."""
    from frozenseg.engine.setup import load_config

    with pytest.raises(ConfigValueError) as info:
        load_config("", [key, str(value)])
    assert str(info.value) == expected and is_user_error(info.value)
    assert load_config("", ["MODEL.DEVICE", "cuda:1", "SOLVER.CHECKPOINT_PERIOD", "1"]).MODEL.DEVICE == "cuda:1"


def test_malformed_yaml_and_base_cycles_are_one_sentence(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  WEIGHTS: [unclosed\n")
    with pytest.raises(ConfigValueError, match=r"^Config file '.*bad.yaml' \(or a file it includes\) is not valid YAML at line \d+: .*; fix the file\.$"):
        get_cfg().merge_from_file(str(bad))
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigValueError, match=r"^Config files include each other through _BASE_ \(a.yaml -> b.yaml -> a.yaml\); remove one _BASE_\.$"):
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("flag, value", [("--num-gpus", "-1"), ("--num-gpus", "0"), ("--num-machines", "0"),
                                         ("--machine-rank", "-1"), ("--threads", "-2")])
def test_train_net_flags_out_of_range_are_usage_errors(flag, value, capsys):
    from frozenseg.engine import default_argument_parser

    with pytest.raises(SystemExit) as info:
        default_argument_parser().parse_args([flag, value])
    assert info.value.code == 2 and f"argument {flag}: must be at least" in capsys.readouterr().err
