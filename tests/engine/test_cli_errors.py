"""``train_net.py`` on bad input: one sentence on stderr (no traceback), exit status 2, and no
partial training output; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from ..conftest import REPO_ROOT
from .conftest import SHAPES_CONFIG

pytestmark = pytest.mark.slow

PREFIX = "train_net.py: error: "


def _run(args, datasets, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), DETECTRON2_DATASETS=str(datasets),
               PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    env.pop("FROZENSEG_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train_net.py"), *[str(a) for a in args]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def _the_error(proc) -> str:
    """The one error line of stderr (other lines may only be third-party logging warnings)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING:")]
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    return lines[0][len(PREFIX):]


def _once_on_the_terminal(proc, msg: str) -> None:
    """The sentence reaches the terminal (stdout and stderr together) exactly once."""
    terminal = proc.stdout + proc.stderr
    assert terminal.count(msg) == 1, terminal[-3000:]


def _assert_no_training_output(out_dir) -> None:
    left = set(os.listdir(out_dir)) if out_dir.exists() else set()
    assert not left - {"config.yaml", "log.txt"}, left  # no metrics.json, checkpoints, events


def _base(out_dir, *extra):
    return ["--config-file", SHAPES_CONFIG, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", out_dir, *extra]


def test_missing_config_file(shapes_data, tmp_path):
    proc = _run(["--config-file", "configs/nope.yaml", "OUTPUT_DIR", tmp_path / "out"], shapes_data, tmp_path)
    assert _the_error(proc).startswith("Config file 'configs/nope.yaml' does not exist; give --config-file")
    assert not (tmp_path / "out").exists()


def test_override_of_the_wrong_type_and_debug(shapes_data, tmp_path):
    args = _base(tmp_path / "out", "SOLVER.MAX_ITER", "abc")
    proc = _run(args, shapes_data, tmp_path)
    msg = _the_error(proc)
    assert msg == "SOLVER.MAX_ITER expects an integer, got 'abc' in command-line overrides (currently 1000)."
    _once_on_the_terminal(proc, msg)
    debug = _run(["--debug", *args], shapes_data, tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigValueError" in debug.stderr


def test_text_file_as_weights_leaves_no_training_output(shapes_data, tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_text("a text file, not weights\n")
    out = tmp_path / "out"
    proc = _run(_base(out, "MODEL.WEIGHTS", weights), shapes_data, tmp_path)
    msg = _the_error(proc)
    assert msg.startswith(f"{str(weights)!r} is not a PyTorch checkpoint") and "torch.save" in msg
    _assert_no_training_output(out)
    assert f"Stopped: {msg}" in (out / "log.txt").read_text()  # the log says why the run stopped
    # the console logger (stdout) leaves the sentence to stderr's "train_net.py: error: ..."
    assert "Stopped:" not in proc.stdout
    _once_on_the_terminal(proc, msg)


def test_truncated_checkpoint_eval_only(shapes_data, tmp_path):
    weights = tmp_path / "model_final.pth"
    torch.save({"model": nn.Linear(256, 256).state_dict(), "iteration": 9}, weights)
    weights.write_bytes(weights.read_bytes()[:100_000])
    proc = _run(["--eval-only", *_base(tmp_path / "out", "MODEL.WEIGHTS", weights)], shapes_data, tmp_path)
    msg = _the_error(proc)
    assert msg.startswith(f"Checkpoint {str(weights)!r} is truncated or corrupt")
    _once_on_the_terminal(proc, msg)
    assert not (tmp_path / "out" / "inference").exists()


def test_missing_dataset_folder(tmp_path):
    empty = tmp_path / "datasets"
    empty.mkdir()
    args = ["--eval-only", *_base(tmp_path / "out", "DATASETS.TRAIN", "()",
                                  "DATASETS.TEST", "('coco_2017_val_panoptic',)")]
    msg = _the_error(_run(args, empty, tmp_path))
    assert msg.startswith("Dataset 'coco_2017_val_panoptic' expects") and "datasets/README.md" in msg
    assert not (tmp_path / "out" / "inference").exists()


@pytest.mark.parametrize("override", [("SOLVER.MAX_ITERS", "5")])
def test_unknown_key_keeps_its_suggestion(shapes_data, tmp_path, override):
    msg = _the_error(_run(_base(tmp_path / "out", *override), shapes_data, tmp_path))
    assert "Unknown config key 'SOLVER.MAX_ITERS'" in msg and "Did you mean SOLVER.MAX_ITER" in msg


@pytest.mark.parametrize("entry,expected", [
    ("synthetic_shapes_val_panoptc:{v}",  # mistyped dataset name: it used to be ignored (rc 0)
     "DATASETS.VOCABULARY_FILES entry 'synthetic_shapes_val_panoptc:{v}' names 'synthetic_shapes_val_panoptc', "
     "which is not a registered dataset; valid names: synthetic_shapes_train_panoptic, "
     "synthetic_shapes_val_panoptic (DATASETS.TRAIN and DATASETS.TEST); did you mean "
     "synthetic_shapes_val_panoptic, synthetic_shapes_train_panoptic?"),
    ("{v}",  # no "name:" prefix
     "DATASETS.VOCABULARY_FILES entry '{v}' must be 'dataset_name:path'; valid names: "
     "synthetic_shapes_train_panoptic, synthetic_shapes_val_panoptic (DATASETS.TRAIN and DATASETS.TEST)."),
])
def test_vocabulary_file_entry_that_would_be_ignored(shapes_data, tmp_path, entry, expected):
    vocab = tmp_path / "shapes.txt"
    vocab.write_text("".join(f"{i}:class{i}\n" for i in range(8)))
    out = tmp_path / "out"
    args = _base(out, "DATASETS.VOCABULARY_FILES", f"('{entry.format(v=vocab)}',)")
    assert _the_error(_run(args, shapes_data, tmp_path)) == expected.format(v=vocab)
    assert not out.exists()  # refused before the run wrote anything


def test_unregistered_test_dataset_is_named(shapes_data, tmp_path):
    """It used to stop with "Dataset 'x' has no vocabulary" after building the model."""
    out = tmp_path / "out"
    args = ["--eval-only", *_base(out, "DATASETS.TEST", "('synthetic_shapes_val_panoptc',)")]
    proc = _run(args, shapes_data, tmp_path)
    assert _the_error(proc) == (
        "Dataset 'synthetic_shapes_val_panoptc' (in DATASETS.TEST) is not registered; did you mean "
        "synthetic_shapes_val_panoptic, synthetic_shapes_train_panoptic, synthetic_shapes_val_sem_seg?")
    _once_on_the_terminal(proc, _the_error(proc))
    assert not out.exists()


def test_stop_sentence_goes_to_the_log_file_and_once_to_stderr(tmp_path, capsys):
    """In process: after the run's logging is set up (console on stdout, log.txt), a user error
    is logged to log.txt only and printed once, on stderr."""
    import logging

    from frozenseg.engine.env import setup_logger
    from frozenseg.utils.errors import ConfigValueError, exit_on_user_error

    sentence = "SOLVER.MAX_ITER expects an integer, got 'abc'."
    setup_logger(str(tmp_path))
    setup_logger(str(tmp_path))  # set up again: still once
    try:
        with pytest.raises(SystemExit) as e, exit_on_user_error("train_net.py"):
            raise ConfigValueError(sentence)
        logging.getLogger("frozenseg").error("Another error.")  # other errors still reach the console
    finally:
        for h in list(logging.getLogger("frozenseg").handlers):
            h.flush()
    out = capsys.readouterr()
    assert e.value.code == 2
    assert (out.out + out.err).count(sentence) == 1 and out.err == f"train_net.py: error: {sentence}\n"
    assert "Another error." in out.out
    assert f"Stopped: {sentence}" in (tmp_path / "log.txt").read_text()
