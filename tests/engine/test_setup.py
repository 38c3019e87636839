"""Command line, config overrides, launching, TTA and the synthetic dataset generated on first use.

(The training data stream is tested in tests/data/test_training_stream.py.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frozenseg.config import UnknownConfigKeyError
from frozenseg.engine import SemanticSegmentorWithTTA, default_argument_parser, launch, setup_cfg
from frozenseg.modeling.contract import SegmentationModel

from .conftest import SHAPES_CONFIG, datasets_registered_at


def test_overrides_reach_the_config():
    args = default_argument_parser().parse_args([
        "--config-file", str(SHAPES_CONFIG), "--num-gpus", "2", "--num-machines", "1", "--machine-rank", "0",
        "--dist-url", "auto", "--resume",
        "SOLVER.BASE_LR", "0.005", "SOLVER.STEPS", "(10, 20)", "MODEL.DEVICE", "cpu",
        "DATASETS.TEST", "('synthetic_shapes_val_sem_seg',)", "SOLVER.AMP.DTYPE", "bfloat16",
    ])
    assert args.num_gpus == 2 and args.resume and not args.eval_only and args.dist_url == "auto"
    cfg = setup_cfg(args)
    assert cfg.SOLVER.BASE_LR == 0.005
    assert cfg.SOLVER.STEPS == (10, 20)
    assert cfg.DATASETS.TEST == ("synthetic_shapes_val_sem_seg",)
    assert cfg.SOLVER.AMP.DTYPE == "bfloat16"
    assert cfg.MODEL.DEVICE == "cpu"
    assert cfg.INPUT.IMAGE_SIZE == 128  # from the config file
    assert cfg.is_frozen()


def test_unknown_override_key_is_reported():
    args = default_argument_parser().parse_args(["--config-file", str(SHAPES_CONFIG), "SOLVER.BASE_LRR", "1"])
    with pytest.raises(UnknownConfigKeyError, match="SOLVER.BASE_LR"):
        setup_cfg(args)


def _return_args(*args):
    return args


def test_launch_single_process_and_torchrun_env(monkeypatch):
    assert launch(_return_args, 1, args=(1, 2)) == (1, 2)
    # torchrun with a single process: no process group needed, main_func runs here
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launch(_return_args, 4, args=("x",)) == ("x",)


class _ScaleEcho(SegmentationModel):
    """Returns the image's red channel as the score of class 0 (and its negative as class 1)."""

    supported_tasks = ("panoptic", "semantic")

    def set_vocabulary(self, class_names, thing_classes=None):
        pass

    def forward(self, batch):
        outs = []
        for x in batch:
            assert self.tasks == ("semantic",)  # TTA switches panoptic output off
            img = x["image"].float()[None]
            img = nn.functional.interpolate(img, size=(x["height"], x["width"]), mode="bilinear", align_corners=False)[0]
            outs.append({"sem_seg": torch.stack([img[0], -img[0]])})
        return outs


def test_tta_averages_flips_and_scales_at_original_size():
    from frozenseg import get_cfg

    cfg = get_cfg()
    model = _ScaleEcho()
    model.set_tasks(("panoptic", "semantic"))
    tta = SemanticSegmentorWithTTA(cfg, model, min_sizes=(16, 24), max_size=100, flip=True)
    image = torch.zeros(3, 20, 30, dtype=torch.uint8)
    image[0, :, :15] = 200  # left half bright: flipping back must restore it
    out = tta([{"image": image, "height": 20, "width": 30}])[0]["sem_seg"]
    assert out.shape == (2, 20, 30)
    assert out[0, :, :10].mean() > 150 and out[0, :, 20:].mean() < 50
    assert model.tasks == ("panoptic", "semantic")  # restored


def test_tta_segments_an_elongated_image_instead_of_crashing():
    """A 2000x3 image: the plain shortest-edge rule would make a 0-pixel side at every scale;
    TTA follows the test mapper's rule and still returns scores at the original size."""
    from frozenseg import get_cfg

    tta = SemanticSegmentorWithTTA(get_cfg(), _ScaleEcho(), min_sizes=(16, 24), max_size=100, flip=True)
    image = torch.full((3, 3, 2000), 100, dtype=torch.uint8)
    out = tta([{"image": image, "height": 3, "width": 2000}])[0]["sem_seg"]
    assert out.shape == (2, 3, 2000) and torch.isfinite(out).all()


def test_synthetic_dataset_generated_on_first_use(tmp_path, monkeypatch):
    import frozenseg.data as fdata
    from frozenseg import get_cfg
    from frozenseg.data import synthetic
    from frozenseg.data.synthetic_setup import ensure_synthetic_datasets  # what train_net.py calls

    monkeypatch.setattr(synthetic, "SHAPES_NUM_TRAIN", 3)
    monkeypatch.setattr(synthetic, "SHAPES_NUM_VAL", 2)
    with datasets_registered_at(tmp_path):
        cfg = get_cfg()
        cfg.merge_from_file(str(SHAPES_CONFIG))
        written = ensure_synthetic_datasets(cfg)
        assert written and (tmp_path / "synthetic_shapes" / "val" / "panoptic.json").is_file()
        assert len(fdata.DatasetCatalog.get("synthetic_shapes_train_panoptic")) == 3
        assert ensure_synthetic_datasets(cfg) == []  # present now: nothing to do


def test_an_output_dir_that_is_a_file_or_under_one_is_one_sentence(tmp_path):
    from frozenseg.engine.defaults import make_output_dir
    from frozenseg.utils.errors import ConfigValueError

    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ConfigValueError, match=rf"^OUTPUT_DIR '{path}' cannot be created \(.+\); choose a writable folder\.$"):
            make_output_dir(str(path))
    make_output_dir(str(tmp_path / "new" / "run"))
    assert (tmp_path / "new" / "run").is_dir()
