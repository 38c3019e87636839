"""tools/save_sam_masks.py as a command line: a torchrun-style shard of a registered dataset with
the random ``tiny`` SAM (exit 1: an unreadable image), and a usage error (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import frozenseg.data as fdata
from frozenseg.data import DatasetCatalog
from frozenseg.data.sam_mask_cache import cache_file_name, read_cache_info, read_sam_masks
from frozenseg.data.synthetic import make_shapes

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.slow

TOOL = str(REPO_ROOT / "tools" / "save_sam_masks.py")
DATASET = "synthetic_shapes_val_panoptic"


def _run(args, **env):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_cli_shard_of_a_registered_dataset(tmp_path):
    root = tmp_path / "datasets"
    make_shapes(str(root), 0, 1, 4, size=48)
    fdata.register_all_builtin(str(root))
    try:
        dicts = DatasetCatalog.get(DATASET)
    finally:
        fdata.register_all_builtin()
    with open(dicts[3]["file_name"], "wb") as f:  # image 3 (shard 1 of 2) is unreadable
        f.write(b"not an image")
    out = tmp_path / "out"
    r = _run(["--dataset", DATASET, "--output", str(out), "--sam-name", "tiny", "--points-per-side", "2",
              "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--min-mask-region-area", "0"],
             DETECTRON2_DATASETS=str(root), WORLD_SIZE="2", RANK="1")
    assert r.returncode == 1, r.stderr
    cache = out / DATASET
    files = sorted(os.listdir(cache))
    keys = [str(d["image_id"]) for d in dicts]
    assert cache_file_name(keys[1]) in files and cache_file_name(keys[0]) not in files
    assert read_sam_masks(str(cache / cache_file_name(keys[1]))).logits_source == "sam"
    failed = json.loads((cache / "failed_images.shard-1-of-2.json").read_text())
    assert [f["image_id"] for f in failed] == [keys[3]]
    info = read_cache_info(str(cache))
    assert (info["dataset"], info["sam_name"], info["sam_checkpoint"], info["seed"]) == (DATASET, "tiny", "", 0)
    assert info["generator"]["points_per_side"] == 2 and info["max_masks"] == 50


def test_cli_usage_error(tmp_path):
    r = _run(["--dataset", "no_such_dataset", "--output", str(tmp_path), "--sam-name", "tiny"])
    assert r.returncode == 2 and "Dataset 'no_such_dataset' is not registered" in r.stderr
    assert "Traceback" not in r.stderr
