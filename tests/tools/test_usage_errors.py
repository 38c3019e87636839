"""The tools' flags out of range, and their missing files, are usage errors: argparse's usage
line and one sentence naming the flag, or the package's one sentence, with exit status 2 and
nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("script, args, expected", [
    ("tools/make_synthetic_dataset.py", ["shapes", "--num-val", "-3"], "argument --num-val: must be at least 0, got -3"),
    ("tools/benchmark.py", ["--config-file", "configs/tiny/frozenseg_tiny_convnext.yaml", "--height", "0"],
     "argument --height: must be at least 1, got 0"),
    ("tools/save_sam_masks.py", ["--dataset", "x", "--points-per-side", "0"],
     "argument --points-per-side: must be at least 1, got 0"),
    ("tools/save_sam_masks.py", ["--dataset", "x", "--device", "tpu"], "argument --device: expected cpu, cuda or cuda:N"),
    ("demo/app.py", ["--max-file-size", "banana"], "argument --max-file-size: expected a size such as 50mb"),
])
def test_a_flag_out_of_range_is_a_usage_error(script, args, expected, tmp_path):
    proc = _run(script, *args, cwd=tmp_path)
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_file_as_root_and_a_missing_config_are_one_sentence(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = _run("tools/make_synthetic_dataset.py", "shapes", "--root", str(tmp_path / "afile"), cwd=tmp_path)
    assert proc.returncode == 2 and "--root" in proc.stderr and "is a file; give a folder" in proc.stderr
    proc = _run("tools/benchmark.py", "--config-file", "no_such.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("benchmark.py: error: Config file 'no_such.yaml' does not exist")
