"""FrozenSegCheckpointer's resume: a torn or missing newest checkpoint is named and skipped, and
the newest intact one is used; unreadable files are one-sentence errors."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from torch import nn

from frozenseg.engine import FrozenSegCheckpointer, checkpoint_has_frozen_weights
from frozenseg.utils.errors import CheckpointError


def _checkpointer(save_dir) -> FrozenSegCheckpointer:
    model = nn.Linear(16, 16)
    return FrozenSegCheckpointer(model, str(save_dir), optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def _save_series(save_dir, iterations=(19, 39)) -> FrozenSegCheckpointer:
    """Checkpoints model_0000019.pth, model_0000039.pth (older first); last_checkpoint names the last."""
    ckpt = _checkpointer(save_dir)
    for n, it in enumerate(iterations):
        ckpt.save(f"model_{it:07d}", iteration=it)
        os.utime(save_dir / f"model_{it:07d}.pth", (1000 + n, 1000 + n))  # distinct ages
    return ckpt


def _tear(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "frozenseg.checkpoint.checkpointer" and r.levelno == logging.WARNING]


def test_intact_newest_is_resumed_from(tmp_path):
    ckpt = _save_series(tmp_path)
    assert ckpt.has_checkpoint()
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000039.pth")
    assert ckpt.load(ckpt.get_checkpoint_file())["iteration"] == 39


def test_torn_newest_is_named_and_skipped_once(tmp_path, caplog):
    ckpt = _save_series(tmp_path)
    _tear(tmp_path / "model_0000039.pth")
    with caplog.at_level(logging.WARNING, logger="frozenseg.checkpoint.checkpointer"):
        for _ in range(3):  # the trainer asks several times
            assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000019.pth")
        assert _checkpointer(tmp_path).has_checkpoint()  # another checkpointer of the same dir
    assert _warnings(caplog) == ["model_0000039.pth is truncated or unreadable; resuming from model_0000019.pth."]
    assert ckpt.load(ckpt.get_checkpoint_file())["iteration"] == 19


def test_last_checkpoint_naming_a_missing_file(tmp_path, caplog):
    ckpt = _save_series(tmp_path)
    (tmp_path / "model_0000039.pth").unlink()
    with caplog.at_level(logging.WARNING, logger="frozenseg.checkpoint.checkpointer"):
        assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000019.pth")
    assert _warnings(caplog) == [
        "last_checkpoint names model_0000039.pth, which does not exist; resuming from model_0000019.pth."
    ]


def test_no_intact_checkpoint_refuses_to_start_over_silently(tmp_path):
    ckpt = _save_series(tmp_path, iterations=(39,))
    _tear(tmp_path / "model_0000039.pth")
    with pytest.raises(CheckpointError) as info:
        ckpt.has_checkpoint()
    msg = str(info.value)
    assert "model_0000039.pth is truncated or unreadable" in msg and "without --resume" in msg and "\n" not in msg


def test_empty_dir_has_no_checkpoint(tmp_path):
    ckpt = _checkpointer(tmp_path)
    assert not ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == ""


def test_unreadable_weights_are_named(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        checkpoint_has_frozen_weights(str(path), "FrozenSeg")
    with pytest.raises(CheckpointError, match="weights.pth"):
        _checkpointer(tmp_path / "out").load(str(path), checkpointables=[])
    assert checkpoint_has_frozen_weights(str(tmp_path / "missing.pth"), "FrozenSeg") is False


def test_a_full_disk_while_saving_is_one_sentence_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from frozenseg.utils.errors import CheckpointError

    ckpt = _save_series(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError) as info:
        ckpt.save("model_0000059", iteration=59)
    assert str(info.value) == (
        f"Could not write checkpoint {str(tmp_path / 'model_0000059.pth')!r} (No space left on device); free space "
        f"in or fix {str(tmp_path)!r}, then continue with --resume (from model_0000039.pth, intact)."
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left either
