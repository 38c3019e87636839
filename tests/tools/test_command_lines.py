"""The command lines in tools/ import the installed ``frozenseg`` (no ``sys.path`` edits), so they
run from any working directory; make_synthetic_dataset.py writes a layout there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / tool), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("tool", ["benchmark.py", "download_weights.py", "export_vocabulary.py", "gpu_report.py",
                                  "make_synthetic_dataset.py", "make_synthetic_captions.py"])
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


def test_benchmark_json_figures(tmp_path):
    """benchmark.py on the tiny model: the JSON has the documented keys; the stages (the rest
    included) add up to the total; the SAM floor is its FLOPs at the measured rate."""
    config = TOOLS.parent / "configs" / "tiny" / "frozenseg_tiny_convnext.yaml"
    r = _run("benchmark.py", "--config-file", str(config), "--height", "64", "--width", "96",
             "--warmup", "0", "--iters", "1", "--compare-upstream", "--requery-classes", "7",
             "--json", "out.json", "MODEL.SAM_IMAGE_SIZE", "256", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "out.json") as f:
        out = json.load(f)
    for key in ("total_per_image_s", "sam_encoder_s", "sam_encoder_floor_s", "upstream_total_per_image_s",
                "matmul_gflops", "text_classifier_s"):
        assert out[key] > 0, key
    assert out["stages"] == ["sam_encoder", "clip_backbone", "decoder", "postprocess"]
    assert out["gflop_method"]["sam_encoder"] == "formula"
    for name in out["stages"][:-1]:
        assert out[f"{name}_gflop"] > 0
        assert out[f"{name}_efficiency"] == pytest.approx(out[f"{name}_gflop"] / out[f"{name}_s"] / out["matmul_gflops"])
    for prefix in ("", "upstream_"):
        parts = sum(out[f"{prefix}{name}_s"] for name in out["stages"])
        assert parts == pytest.approx(out[f"{prefix}total_per_image_s"], rel=1e-9)
    assert out["sam_encoder_floor_s"] == pytest.approx(out["sam_encoder_gflop"] / out["matmul_gflops"])
    _check_requery(out, 7)


def _check_requery(out: dict, classes: int) -> None:
    """The requery figures: the class count asked for, positive times, shares of the total."""
    assert out["requery_classes"] == classes
    for kind in ("requery", "requery_cached_text"):
        assert out[f"{kind}_per_image_s"] > 0
        assert out[f"{kind}_share"] == pytest.approx(out[f"{kind}_per_image_s"] / out["total_per_image_s"])


def test_benchmark_splits_ovseg_into_its_stages(tmp_path):
    """An OVSeg config: backbone, head, CLIP on the proposal crops, and the rest, adding up."""
    config = TOOLS.parent / "configs" / "tiny" / "ovseg_tiny_resnet.yaml"
    r = _run("benchmark.py", "--config-file", str(config), "--height", "64", "--width", "96",
             "--warmup", "0", "--iters", "1", "--compare-upstream", "--requery-classes", "5",
             "--json", "out.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "out.json") as f:
        out = json.load(f)
    assert out["stages"] == ["backbone", "head", "clip_on_crops", "postprocess"]
    for prefix in ("", "upstream_"):
        parts = sum(out[f"{prefix}{name}_s"] for name in out["stages"])
        assert parts == pytest.approx(out[f"{prefix}total_per_image_s"], rel=1e-9)
    assert out["clip_on_crops_s"] > 0 and out["backbone_gflop"] > 0 and out["clip_on_crops_gflop"] > 0
    assert out["clip_on_crops_floor_s"] == pytest.approx(out["clip_on_crops_gflop"] / out["matmul_gflops"])
    # the fast crop path and the reference one give the same segmentation on the same input
    assert out["upstream_sem_seg_argmax_agreement"] == 1.0
    assert out["upstream_sem_seg_max_rel_diff"] < 1e-4
    _check_requery(out, 5)
