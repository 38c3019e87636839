"""Process-group helpers for training (Detectron2's ``comm``), on top of ``torch.distributed``.

The basic queries and object collectives are those of :mod:`frozenseg.evaluation.comm` (one
implementation, one cached gloo group); this module adds what the trainer needs: the local rank
and local world size set by :func:`frozenseg.engine.launch.launch` or by ``torchrun``, a seed
shared by all processes, and an average of a dict of scalars over processes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from ..evaluation.comm import (
    all_gather,
    gather,
    get_rank,
    get_world_size,
    is_dist_avail_and_initialized,
    is_main_process,
    synchronize,
)

__all__ = [
    "all_gather",
    "gather",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "get_local_size",
    "is_dist_avail_and_initialized",
    "is_main_process",
    "synchronize",
    "shared_random_seed",
    "reduce_dict",
    "broadcast_int",
]

_LOCAL_RANK: int | None = None
_LOCAL_SIZE: int | None = None


def set_local_info(local_rank: int, local_size: int) -> None:
    """Record this process's rank and the process count on its machine (set by ``launch``)."""
    global _LOCAL_RANK, _LOCAL_SIZE
    _LOCAL_RANK, _LOCAL_SIZE = int(local_rank), int(local_size)


def get_local_rank() -> int:
    """Rank of this process on its machine (``LOCAL_RANK`` under torchrun; 0 alone)."""
    if _LOCAL_RANK is not None:
        return _LOCAL_RANK
    return int(os.environ.get("LOCAL_RANK", 0)) if is_dist_avail_and_initialized() else 0


def get_local_size() -> int:
    """Number of processes on this machine (``LOCAL_WORLD_SIZE`` under torchrun; 1 alone)."""
    if _LOCAL_SIZE is not None:
        return _LOCAL_SIZE
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if is_dist_avail_and_initialized() else 1


def _collective_device() -> torch.device:
    if is_dist_avail_and_initialized() and dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_int(value: int, src: int = 0) -> int:
    """``value`` of rank ``src`` on every rank (identity without distributed)."""
    if get_world_size() <= 1:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_collective_device())
    dist.broadcast(t, src)
    return int(t.item())


def shared_random_seed() -> int:
    """A random seed in [0, 2**31), drawn on rank 0 and identical on every rank."""
    return broadcast_int(int(np.random.SeedSequence().generate_state(1)[0] % 2**31))


def reduce_dict(values: dict[str, float], average: bool = True) -> dict[str, float]:
    """Sum (or average) a dict of Python scalars over all processes; every rank gets the result.

    Keys must be identical on every rank; they are processed in sorted order.
    """
    if get_world_size() <= 1 or not values:
        return dict(values)
    names = sorted(values)
    t = torch.tensor([float(values[k]) for k in names], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    if average:
        t /= get_world_size()
    reduced = dict(zip(names, t.tolist()))
    return {k: float(reduced[k]) for k in values}  # the caller's key order
