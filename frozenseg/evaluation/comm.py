"""Minimal process-group helpers for distributed evaluation (Detectron2's ``comm`` subset).

Everything degrades gracefully to a single process when ``torch.distributed`` is unavailable or
not initialised: ``get_world_size() == 1``, ``get_rank() == 0``, ``all_gather(x) == [x]``.

Object collectives run on a gloo group even when the default backend is NCCL, so that gathering
Python objects (confusion matrices, encoded PNGs, COCO-format results) never touches GPU memory
and needs no ``torch.cuda.set_device`` discipline.
"""

from __future__ import annotations

import functools
from typing import Any

import torch.distributed as dist

__all__ = [
    "is_dist_avail_and_initialized",
    "get_world_size",
    "get_rank",
    "is_main_process",
    "synchronize",
    "all_gather",
    "gather",
]


def is_dist_avail_and_initialized() -> bool:
    """True when ``torch.distributed`` is built in and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group (1 without distributed)."""
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group (0 without distributed)."""
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


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
    world = dist.get_world_size(group)
    output: list[Any] = [None] * world
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
    world = dist.get_world_size(group)
    if dist.get_rank() == dst:
        output: list[Any] | None = [None] * world
    else:
        output = None
    dist.gather_object(data, output, dst=dst, group=group)
    return output if output is not None else []
