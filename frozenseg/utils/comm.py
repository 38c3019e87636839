"""Process-group helpers (Detectron2's ``comm``) on top of ``torch.distributed``, shared by the
data loaders, the trainer and the evaluators.

Everything degrades gracefully to a single process when ``torch.distributed`` is unavailable or
not initialised: ``get_world_size() == 1``, ``get_rank() == 0``, ``all_gather(x) == [x]``.

Object collectives (and barriers under NCCL) run on a gloo group even when the default backend is
NCCL, so that gathering Python objects (confusion matrices, encoded PNGs, COCO-format results)
never touches GPU memory and needs no ``torch.cuda.set_device`` discipline. Tensor collectives
of scalars (:func:`broadcast_int`, :func:`reduce_dict`) use the default backend.

The local rank and local world size are those set by :func:`frozenseg.engine.launch.launch`
(:func:`set_local_info`) or by ``torchrun`` (``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "is_dist_avail_and_initialized",
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "get_local_size",
    "set_local_info",
    "is_main_process",
    "synchronize",
    "all_gather",
    "gather",
    "broadcast_int",
    "shared_random_seed",
    "reduce_dict",
]

_LOCAL_RANK: int | None = None
_LOCAL_SIZE: int | None = None


def is_dist_avail_and_initialized() -> bool:
    """True when ``torch.distributed`` is built in and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group (1 without distributed)."""
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group (0 without distributed)."""
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


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


def is_main_process() -> bool:
    """True on rank 0 (and always without distributed)."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op with a single process."""
    if get_world_size() <= 1:
        return
    if dist.get_backend() == dist.Backend.NCCL:
        # Barrier on the gloo group: no device needs to be selected for it.
        dist.barrier(group=_object_group())
    else:
        dist.barrier()


@functools.lru_cache(maxsize=None)
def _gloo_group():
    """A gloo group spanning all ranks, created once (collective: all ranks must call it)."""
    return dist.new_group(backend="gloo")


def _object_group():
    """The group used for object collectives: WORLD for gloo, a cached gloo group otherwise."""
    if dist.get_backend() == dist.Backend.GLOO:
        return dist.group.WORLD
    return _gloo_group()


def all_gather(data: Any, group=None) -> list[Any]:
    """Gather a picklable object from every rank; every rank gets the list ordered by rank.

    Without an initialised process group, returns ``[data]``.
    """
    if get_world_size() <= 1:
        return [data]
    group = _object_group() if group is None else group
    output: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group=None) -> list[Any]:
    """Gather a picklable object from every rank to rank ``dst``.

    Returns the list ordered by rank on ``dst`` and ``[]`` on the other ranks; without an
    initialised process group, returns ``[data]``.
    """
    if get_world_size() <= 1:
        return [data]
    group = _object_group() if group is None else group
    output: list[Any] | None = [None] * dist.get_world_size(group) if dist.get_rank() == dst else None
    dist.gather_object(data, output, dst=dst, group=group)
    return output if output is not None else []


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
