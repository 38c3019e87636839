"""CPU threads (MODEL.CPU_THREADS, ``--threads``; frozenseg.engine.launch) and the training ETA
from recent iteration times (frozenseg.engine.events). No timing assertions."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

from frozenseg import get_cfg
from frozenseg.data.build import build_detection_test_loader
from frozenseg.engine.defaults import default_argument_parser, setup_cfg
from frozenseg.engine.events import ETA_WINDOW, CommonMetricPrinter, EventStorage
from frozenseg.engine.launch import compute_threads, physical_cpu_cores, set_cpu_threads
from frozenseg.utils.errors import ConfigValueError


def test_auto_is_the_share_of_physical_cores_less_busy_workers():
    assert get_cfg().MODEL.CPU_THREADS == 0
    assert compute_threads(0, cores=16) == 16
    assert compute_threads(0, busy_workers=4, cores=16) == 12
    assert compute_threads(0, busy_workers=2, procs_on_machine=2, cores=16) == 6
    assert compute_threads(0, busy_workers=4, cores=2) == 1  # never below one thread
    assert compute_threads(3, busy_workers=4, cores=2) == 3  # an explicit count is used as it is


def test_negative_count_is_refused():
    with pytest.raises(ConfigValueError, match=r"^MODEL.CPU_THREADS must be 0 \(auto\) or a positive count, got -1"):
        compute_threads(-1)


def test_physical_cores_within_the_affinity_mask():
    cores = physical_cpu_cores()
    assert 1 <= cores <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def test_set_cpu_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        auto = set_cpu_threads(0)
        assert auto == compute_threads(0) and torch.get_num_threads() == auto
    finally:
        torch.set_num_threads(before)


def test_threads_flag_maps_to_the_config_key():
    args = default_argument_parser().parse_args(["--threads", "3", "SOLVER.MAX_ITER", "7"])
    cfg = setup_cfg(args)
    assert cfg.MODEL.CPU_THREADS == 3 and cfg.SOLVER.MAX_ITER == 7
    assert setup_cfg(default_argument_parser().parse_args([])).MODEL.CPU_THREADS == 0


def test_data_loader_workers_run_one_torch_thread():
    loader = build_detection_test_loader(dataset=[{"i": 0}, {"i": 1}], mapper=lambda d: torch.get_num_threads(),
                                         num_workers=1)
    assert [batch[0] for batch in loader] == [1, 1]


def test_eta_follows_the_recent_iteration_times():
    max_iter = 1000
    printer = CommonMetricPrinter(max_iter=max_iter)
    with EventStorage() as storage:
        for it in range(400):  # 300 fast iterations, then the machine gets busy: 10x slower
            storage.iter = it
            storage.put_scalar("time", 0.1 if it < 300 else 1.0)
        eta = printer._get_eta(storage)
        assert storage.latest()["eta_seconds"][0] == pytest.approx(1.0 * (max_iter - 399 - 1))
        assert eta == "0:10:00"
        for it in range(400, 400 + ETA_WINDOW):  # back to normal for one ETA window
            storage.iter = it
            storage.put_scalar("time", 0.1)
        printer._get_eta(storage)
        assert storage.latest()["eta_seconds"][0] == pytest.approx(0.1 * (max_iter - it - 1))


@pytest.mark.parametrize("reuse", [True, False])
def test_configure_cpu_process_sets_threads_and_the_allocator_from_the_config(monkeypatch, reuse):
    launch = importlib.import_module("frozenseg.engine.launch")  # the module (the package exports a function of that name)
    calls = []
    monkeypatch.setattr(launch, "reuse_freed_memory", lambda: calls.append(1) or True)
    cfg = get_cfg()
    cfg.MODEL.CPU_THREADS, cfg.MODEL.CPU_REUSE_FREED_MEMORY = 1, reuse
    threads = torch.get_num_threads()
    try:
        assert launch.configure_cpu_process(cfg) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert calls == ([1] if reuse else [])
