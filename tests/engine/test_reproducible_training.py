"""Training is reproducible: the same command, seed and thread count give bit-identical losses
and metrics in separate processes, and the run's log names the thread count it used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT
from .conftest import FROZENSEG_TINY_OVERRIDES, SHAPES_CONFIG, TINY_OVERRIDES


def _train(out, datasets, threads: int, busy: bool = False) -> tuple[list[dict], str]:
    """train_net.py in a fresh process (another busy process beside it when ``busy``); returns
    the metrics.json records without the timings, and the log."""
    opts = [str(x) for x in TINY_OVERRIDES + FROZENSEG_TINY_OVERRIDES] + [
        "SOLVER.MAX_ITER", "5", "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", str(out),
        "MODEL.CPU_THREADS", str(threads), "MODEL.DEVICE", "cpu"]
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets), PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    burner = None
    if busy:  # the machine's momentary load must not change the arithmetic
        burner = subprocess.Popen([sys.executable, "-c", "import torch\nwhile True: torch.randn(512, 512) @ torch.randn(512, 512)"])
    try:
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "train_net.py"), "--config-file", str(SHAPES_CONFIG), *opts],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    timing = ("time", "data_time", "eta_seconds")
    return [{k: v for k, v in r.items() if k not in timing and not k.endswith("_time")} for r in records], \
        (out / "log.txt").read_text()


@pytest.mark.slow
def test_same_command_seed_and_threads_give_identical_losses_and_metrics(shapes_data, tmp_path):
    first, log = _train(tmp_path / "a", shapes_data, threads=2)
    second, _ = _train(tmp_path / "b", shapes_data, threads=2, busy=True)
    assert any("total_loss" in r for r in first) and any(k.startswith("panoptic_seg/") for r in first for k in r)
    assert first == second  # every loss, learning rate and metric, bit for bit
    assert "Torch CPU threads: 2 (MODEL.CPU_THREADS)" in log
