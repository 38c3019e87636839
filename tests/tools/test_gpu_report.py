"""tools/gpu_report.py on a CPU with the tiny model: every section runs and its figures are sane;
the time budget skips sections; a failing section is recorded and the next one runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest


from frozenseg.apps import gpu_report
from frozenseg.apps.gpu_report import GpuReportOptions, run_gpu_report

from ..conftest import REPO_ROOT

TINY = str(REPO_ROOT / "configs/tiny/frozenseg_tiny_convnext.yaml")
SMALL = dict(config_file=TINY, opts=("MODEL.SAM_IMAGE_SIZE", "128"), device="cpu", height=64, width=80,
             train_size=128, images=2, warmup=1, train_steps=1, parity_height=64, parity_width=80)


@pytest.mark.slow
def test_cpu_run_of_every_section(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools/gpu_report.py"), "--device", "cpu", "--config-file", TINY,
         "--height", "64", "--width", "80", "--train-size", "128", "--images", "2", "--train-steps", "1",
         "--parity-height", "64", "--parity-width", "80", "--output-dir", str(tmp_path / "out"),
         "--requery-classes", "20", "--ovseg-config-file", str(REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml"),
         "MODEL.SAM_IMAGE_SIZE", "128"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out/report.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["environment", "inference", "training", "parity", "requery", "ovseg"]
    assert {s["status"] for s in sections.values()} == {"ok"}
    assert sections["environment"]["device"] == "cpu" and sections["environment"]["torch"]

    rows = sections["inference"]["rows"]
    assert [(x["variant"], x["batch"]) for x in rows] == [
        (v, b) for b in (1, 4) for v in ("fp32", "frozen_bf16", "autocast_bf16")]
    assert all(x["status"] == "ok" and x["images_per_s"] > 0 and x["images"] >= 2 for x in rows)
    for x in rows[1:]:  # compared with fp32 at batch 1 on the same first image
        assert x["sem_seg_argmax_agreement"] >= 0.99 and x["sem_seg_max_rel_diff"] < 0.05
    assert rows[1]["sem_seg_max_abs_diff"] > 0  # bf16 did run
    assert rows[3]["sem_seg_max_abs_diff"] < 1e-5  # fp32 batch of 4: the batch-of-one result

    train = sections["training"]["rows"]
    assert [x["variant"] for x in train] == ["fp32", "amp_bf16", "amp_bf16_frozen_bf16"]
    assert all(x["status"] == "ok" and x["seconds_per_step"] > 0 and math.isfinite(x["total_loss"]) for x in train)
    assert sections["training"]["crop"] == [128, 128]

    parity = sections["parity"]
    assert parity["against"] == "cpu" and parity["tf32"] is False
    assert parity["sem_seg_max_abs_diff"] == 0 and parity["sem_seg_max_rel_diff"] == 0
    assert parity["sem_seg_argmax_agreement"] == 1 and parity["panoptic_agreement"] == 1

    for name in ("requery", "ovseg"):
        r = sections[name]
        assert r["requery_classes"] == 20 and 0 < r["requery_cached_text_per_image_s"] <= r["requery_per_image_s"] * 1.5
        assert r["requery_share"] == r["requery_per_image_s"] / r["total_per_image_s"]
    assert sections["ovseg"]["images_per_s"] > 0 and sections["ovseg"]["config"].endswith("ovseg_tiny_swin.yaml")

    md = (tmp_path / "out/report.md").read_text()
    assert md.startswith("# GPU report") and "## parity: ok" in md
    assert "| frozen_bf16 | 1 | ok |" in md


def test_time_budget_skips_sections(tmp_path):
    report = run_gpu_report(GpuReportOptions(**SMALL, max_seconds=0), str(tmp_path))
    assert {s["status"] for s in report["sections"].values()} == {"skipped"}
    assert json.loads((tmp_path / "report.json").read_text())["sections"]["parity"]["reason"] == "time budget of 0 s spent"


@pytest.mark.slow
def test_a_failing_section_is_recorded_and_the_next_runs(tmp_path, monkeypatch):
    def out_of_memory(run):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setitem(gpu_report.SECTIONS, "training", out_of_memory)
    monkeypatch.setitem(gpu_report.SECTIONS, "inference", out_of_memory)
    report = run_gpu_report(GpuReportOptions(**SMALL), str(tmp_path))
    statuses = {n: s["status"] for n, s in report["sections"].items()}
    assert statuses == {"environment": "ok", "inference": "failed", "training": "failed", "parity": "ok",
                        "requery": "ok", "ovseg": "ok"}
    assert report["sections"]["ovseg"]["skipped"] == "no ovseg_config_file given"
    assert report["sections"]["training"]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert "`RuntimeError: CUDA out of memory (simulated)`" in (tmp_path / "report.md").read_text()
