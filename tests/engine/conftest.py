"""Fixtures of the engine tests: a tiny shapes dataset, tiny-model configs, logging hygiene."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT, restored_loggers

SHAPES_CONFIG = REPO_ROOT / "configs" / "synthetic" / "frozenseg_tiny_shapes.yaml"
_ENGINE_LOGGERS = ("frozenseg", "fvcore", "train_net", "__main__")

# Small enough for a CPU test: 64 px images, 2 images per step, few points.
TINY_OVERRIDES = [
    "INPUT.IMAGE_SIZE", 64,
    "INPUT.MIN_SIZE_TEST", 64,
    "INPUT.MAX_SIZE_TEST", 96,
    "SOLVER.IMS_PER_BATCH", 2,
    "SOLVER.MAX_ITER", 6,
    "SOLVER.CHECKPOINT_PERIOD", 3,
    "SOLVER.WARMUP_ITERS", 2,
    "DATALOADER.NUM_WORKERS", 0,
    "SEED", 7,
]


def make_shapes(root: Path, num_train: int = 8, num_val: int = 3, size: int = 64) -> Path:
    """Write a small shapes dataset under ``root`` with the project's generator."""
    from frozenseg.data.synthetic import make_shapes as write_shapes

    write_shapes(str(root), 0, num_train, num_val, size=size)
    return root


@contextlib.contextmanager
def datasets_registered_at(root):
    """Register the built-in datasets under ``root``; back to the default root afterwards."""
    import frozenseg.data as fdata

    fdata.register_all_builtin(str(root))
    try:
        yield root
    finally:
        fdata.register_all_builtin()


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """Root of a tiny shapes dataset (8 train / 3 val images of about 64 px)."""
    return make_shapes(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def shapes_root(shapes_data):
    """:func:`shapes_data`, registered as ``synthetic_shapes_*`` for the tests of a module."""
    with datasets_registered_at(shapes_data):
        yield shapes_data


#: Smaller settings of FrozenSeg's own keys, for its shapes config.
FROZENSEG_TINY_OVERRIDES = [
    "MODEL.SAM_IMAGE_SIZE", 64,
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256,
]


def tiny_cfg(output_dir, *extra, config_file: Path = SHAPES_CONFIG):
    """The shapes config with :data:`TINY_OVERRIDES` (and, for FrozenSeg's shapes config,
    :data:`FROZENSEG_TINY_OVERRIDES`), ``OUTPUT_DIR`` and ``extra`` overrides."""
    from frozenseg import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(config_file))
    model_overrides = FROZENSEG_TINY_OVERRIDES if Path(config_file) == SHAPES_CONFIG else []
    cfg.merge_from_list([str(x) for x in TINY_OVERRIDES + model_overrides]
                        + ["OUTPUT_DIR", str(output_dir)] + [str(x) for x in extra])
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(autouse=True)
def _restore_engine_loggers():
    """``setup_logger`` reconfigures the project's loggers; restore them after each test."""
    with restored_loggers(_ENGINE_LOGGERS):
        yield
