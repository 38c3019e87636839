"""Start one or more training processes with ``torch.distributed`` (Detectron2's ``launch``).

* Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) the process
  group is initialised from the environment (``env://``) and ``main_func`` runs once in this
  process; ``--num-gpus`` / ``--num-machines`` are then ignored.
* Otherwise ``num_gpus_per_machine * num_machines > 1`` spawns ``num_gpus_per_machine``
  processes on this machine (``torch.multiprocessing``), with global ranks
  ``machine_rank * num_gpus_per_machine + local_rank``, joined through ``dist_url``.
* Backend: NCCL with one GPU per process when CUDA is available, gloo on CPUs (``--num-gpus N``
  then means N CPU processes, each with ``physical cores // N`` torch threads).

CPU processes: :func:`configure_cpu_process` sets the threads below and, with
MODEL.CPU_REUSE_FREED_MEMORY, keeps freed memory for reuse
(:func:`frozenseg.utils.cpu_memory.reuse_freed_memory`). :func:`set_cpu_threads` gives each process
:func:`compute_threads` torch threads: MODEL.CPU_THREADS (``--threads``) when positive, else
0 = auto = this process's share of the machine's physical cores (:func:`physical_cpu_cores`) less
one per busy data-loader worker (DATALOADER.NUM_WORKERS; each worker runs one torch thread, see
``frozenseg.data.build``), at least 1. Compute threads and workers then never ask for more cores
than there are, so a loop on a shared machine slows down in proportion instead of thrashing.

A user error (:func:`frozenseg.utils.errors.is_user_error`) in a spawned process is printed there
as one sentence and ends the job with ``SystemExit(USER_ERROR_EXIT_CODE)`` in this process, as it
would in a single process under :func:`~frozenseg.utils.errors.exit_on_user_error`.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..utils import comm
from ..utils.cpu_memory import reuse_freed_memory
from ..utils.errors import USER_ERROR_EXIT_CODE, ConfigValueError, exit_on_user_error

__all__ = [
    "launch", "find_free_port", "running_under_torchrun", "DEFAULT_TIMEOUT",
    "physical_cpu_cores", "compute_threads", "set_cpu_threads", "configure_cpu_process",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def find_free_port() -> int:
    """A free TCP port on localhost (for single-machine jobs with ``--dist-url auto``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def running_under_torchrun() -> bool:
    """True when torchrun (or another env:// launcher) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def physical_cpu_cores() -> int:
    """Physical cores this process may run on: the CPUs of its affinity mask
    (``os.sched_getaffinity``; ``os.cpu_count()`` where that does not exist), capped by the
    physical core count when ``psutil`` is installed (hyper-threads share a core's arithmetic
    units). At least 1."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil
    except ImportError:
        return max(1, usable)
    physical = psutil.cpu_count(logical=False)
    return max(1, min(usable, physical) if physical else usable)


def compute_threads(requested: int = 0, busy_workers: int = 0, procs_on_machine: int = 1,
                    cores: int | None = None) -> int:
    """Torch threads for one process (see the module doc).

    Args:
        requested: MODEL.CPU_THREADS; > 0 is used as it is, 0 = auto.
        busy_workers: data-loader worker processes of this process (one core each).
        procs_on_machine: training processes sharing the machine.
        cores: physical cores (default :func:`physical_cpu_cores`).
    """
    if requested < 0:
        raise ConfigValueError(f"MODEL.CPU_THREADS must be 0 (auto) or a positive count, got {requested}.")
    if requested:
        return int(requested)
    cores = physical_cpu_cores() if cores is None else cores
    return max(1, cores // max(1, procs_on_machine) - max(0, busy_workers))


def set_cpu_threads(requested: int = 0, busy_workers: int = 0, procs_on_machine: int = 1) -> int:
    """``torch.set_num_threads(compute_threads(...))``; returns the thread count."""
    threads = compute_threads(requested, busy_workers, procs_on_machine)
    torch.set_num_threads(threads)
    logger.info("Torch CPU threads: %d (%s)", threads, "MODEL.CPU_THREADS" if requested else
                f"auto: {physical_cpu_cores()} physical cores / {procs_on_machine} process(es) - "
                f"{busy_workers} data-loader worker(s)")
    return threads


def configure_cpu_process(cfg, busy_workers: int = 0, procs_on_machine: int = 1) -> int:
    """Threads (:func:`set_cpu_threads` from MODEL.CPU_THREADS) and, with
    MODEL.CPU_REUSE_FREED_MEMORY, the allocator (:func:`reuse_freed_memory`) of this process, for
    the command lines; returns the thread count."""
    threads = set_cpu_threads(cfg.MODEL.CPU_THREADS, busy_workers, procs_on_machine)
    if cfg.MODEL.CPU_REUSE_FREED_MEMORY:
        reuse_freed_memory()
    return threads


def _limit_cpu_threads(procs_on_machine: int) -> None:
    if not torch.cuda.is_available() and procs_on_machine > 1:
        torch.set_num_threads(compute_threads(procs_on_machine=procs_on_machine))


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    timeout: datetime.timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Run ``main_func(*args)`` in every process of the job (see the module doc).

    Args:
        main_func: a module-level function (it is pickled for spawned processes).
        num_gpus_per_machine: processes per machine (GPUs, or CPU processes without CUDA).
        num_machines, machine_rank: multi-machine jobs: every machine runs the same command
            with its own ``machine_rank``; ``dist_url`` (``tcp://host:port`` of machine 0) joins them.
        dist_url: rendezvous URL; ``"auto"`` (single machine) picks a free local port.
    Returns ``main_func``'s result in a single process; ``None`` after spawning.
    """
    if running_under_torchrun():
        return _run_torchrun(main_func, args, timeout, num_gpus_per_machine, num_machines)
    world_size = int(num_machines) * int(num_gpus_per_machine)
    if world_size <= 1:
        return main_func(*args)
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ConfigValueError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} GPU(s) are visible."
        )
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ConfigValueError("--dist-url auto only works on one machine; give tcp://<machine 0>:<port>.")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// rendezvous across machines needs a shared file system.")
    logger.info(
        "Launching %d process(es) on this machine (%d in total, backend %s, rendezvous %s)",
        num_gpus_per_machine, world_size, _backend(), dist_url,
    )
    try:
        mp.start_processes(
            _distributed_worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
            daemon=False,
            start_method="spawn",
        )
    except mp.ProcessExitedException as e:
        if e.exit_code == USER_ERROR_EXIT_CODE:  # the process printed its one-sentence error
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
        raise
    return None


def _distributed_worker(local_rank: int, main_func, world_size: int, num_gpus_per_machine: int,
                        machine_rank: int, dist_url: str, args: tuple, timeout) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    _limit_cpu_threads(num_gpus_per_machine)
    dist.init_process_group(
        backend=_backend(), init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout,
    )
    comm.set_local_info(local_rank, num_gpus_per_machine)
    try:
        comm.synchronize()
        with exit_on_user_error():
            main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run_torchrun(main_func, args, timeout, num_gpus_per_machine: int, num_machines: int):
    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    world = int(os.environ["WORLD_SIZE"])
    if num_gpus_per_machine * num_machines not in (1, world):
        logger.warning(
            "Running under torchrun with WORLD_SIZE=%d: --num-gpus/--num-machines (%d x %d) are ignored.",
            world, num_gpus_per_machine, num_machines,
        )
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    _limit_cpu_threads(local_size)
    initialized_here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=_backend(), init_method="env://", timeout=timeout)
        initialized_here = True
    comm.set_local_info(local_rank, local_size)
    try:
        comm.synchronize()
        return main_func(*args)
    finally:
        if initialized_here and dist.is_initialized():
            dist.destroy_process_group()
