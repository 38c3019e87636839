"""The command lines in tools/ import the installed ``frozenseg`` (no ``sys.path`` edits), so they
run from any working directory; make_synthetic_dataset.py writes a layout there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / tool), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("tool", ["benchmark.py", "export_vocabulary.py", "make_synthetic_dataset.py"])
def test_help_outside_the_checkout(tmp_path, tool):
    r = _run(tool, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {tool} ")


def test_make_synthetic_dataset_outside_the_checkout(tmp_path):
    r = _run("make_synthetic_dataset.py", "shapes", "--root", "ds", "--num-train", "2", "--num-val", "1",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for split, n in (("train", 2), ("val", 1)):
        d = tmp_path / "ds" / "synthetic_shapes" / split
        with open(d / "panoptic.json") as f:
            assert len(json.load(f)["images"]) == n
        assert len(list((d / "images").glob("*.png"))) == n
