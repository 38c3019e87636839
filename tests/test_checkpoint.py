"""frozenseg.checkpoint: one-sentence errors for files that are not (whole) checkpoints, and a
checkpoint that matches none of the model's tensors is refused unless explicitly allowed."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import frozenseg

from .conftest import REPO_ROOT
from frozenseg.checkpoint import read_state_dict
from frozenseg.utils.errors import CheckpointError, CheckpointNotFoundError, is_user_error


def _write_truncated(path, obj) -> None:
    """A real checkpoint cut at half its size (a copy or download stopped early)."""
    torch.save(obj, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and text.endswith("."), text
    return text


def test_text_file_as_weights_names_the_file_and_what_is_expected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError) as info:
        frozenseg.load_checkpoint(nn.Linear(2, 2), str(path))
    msg = _one_line(info.value)
    assert str(path) in msg and "is not a PyTorch checkpoint" in msg and "torch.save" in msg
    assert is_user_error(info.value) and isinstance(info.value, ValueError)


def test_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "model_final.pth"
    _write_truncated(path, {"model": nn.Linear(64, 64).state_dict(), "iteration": 3})
    with pytest.raises(CheckpointError) as info:
        read_state_dict(str(path))
    msg = _one_line(info.value)
    assert str(path) in msg and "truncated or corrupt" in msg and "PytorchStreamReader" not in msg


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist; set MODEL.WEIGHTS") as info:
        read_state_dict(str(tmp_path / "nope.pth"))
    assert isinstance(info.value, FileNotFoundError) and is_user_error(info.value)


def test_checkpoint_matching_no_tensor_is_refused(tmp_path):
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = {"encoder.a": torch.zeros(1), "encoder.b": torch.zeros(1), "encoder.c": torch.zeros(1),
             "encoder.d": torch.zeros(1)}
    path = tmp_path / "other.pth"
    torch.save(other, path)
    with pytest.raises(CheckpointError) as info:
        frozenseg.load_checkpoint(model, str(path))
    msg = _one_line(info.value)
    assert str(path) in msg and "None of the 4 tensors" in msg
    assert "['encoder.a', 'encoder.b', 'encoder.c']" in msg and "['bias', 'weight']" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_no_match_loads_nothing_when_allowed_and_warns_once(tmp_path, caplog):
    model = nn.Linear(3, 2)
    with caplog.at_level(logging.INFO, logger="frozenseg.checkpoint"):
        report = frozenseg.load_checkpoint(model, {"x": torch.zeros(1)}, allow_no_match=True)
    assert report.loaded == [] and report.unexpected == ["x"] and report.missing == ["bias", "weight"]
    records = [r for r in caplog.records if r.name == "frozenseg.checkpoint"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING


def test_complete_load_logs_one_info_line(caplog):
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    with caplog.at_level(logging.INFO, logger="frozenseg.checkpoint"):
        report = frozenseg.load_checkpoint(dst, src.state_dict())
    assert report.ok and torch.equal(dst.weight, src.weight)
    records = [r for r in caplog.records if r.name == "frozenseg.checkpoint"]
    assert len(records) == 1 and records[0].levelno == logging.INFO


@pytest.mark.parametrize("config", ["configs/tiny/frozenseg_tiny_convnext.yaml", "configs/tiny/ovseg_tiny_swin.yaml"])
def test_checkpoint_of_another_number_of_classes_loads_for_fine_tuning(tmp_path, config):
    """The criterion's class weights follow NUM_CLASSES (a derived buffer, not learned): a model
    for 3 classes loads every learned tensor of a 7-class checkpoint and keeps its own weights."""
    def build(num_classes: int):
        cfg = frozenseg.get_cfg()
        cfg.merge_from_file(str(REPO_ROOT / config))
        cfg.merge_from_list(["MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(num_classes), "DATASETS.TRAIN", "()", "SEED", "0"])
        return frozenseg.build_model(cfg)

    torch.manual_seed(1)
    seven = build(7)
    path = tmp_path / "seven.pth"
    torch.save({"model": seven.state_dict()}, path)
    torch.manual_seed(2)
    three = build(3)
    own = three.criterion.empty_weight.clone()
    report = frozenseg.load_checkpoint(three, str(path))
    assert report.kept_derived == ["criterion.empty_weight"] and report.ok
    assert torch.equal(three.criterion.empty_weight, own) and own.shape == (4,)
    state = three.state_dict()
    for k, v in seven.state_dict().items():
        if k != "criterion.empty_weight":
            assert torch.equal(state[k], v), k
    assert "criterion.empty_weight kept from the config" in report.summary()
