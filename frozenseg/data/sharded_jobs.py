"""Sharded, resumable offline jobs over a dataset (the SAM-mask cache, OVSeg's pair mining): which
items a shard takes, the default device of a process, the cache's recorded parameters, the run's
summary and its list of failed images."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..utils.file_io import atomic_write
from ..utils.nested import flatten_dict
from .sam_mask_cache import read_cache_info, write_cache_info

__all__ = [
    "SaveSummary",
    "shard_indices",
    "resolve_shard",
    "default_device",
    "prepare_cache_dir",
    "format_duration",
    "write_failed_images",
]


@dataclass
class SaveSummary:
    """Counts of one run over one shard; ``seconds`` of wall time."""

    total: int = 0
    written: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    files_in_cache: int = 0
    seconds: float = 0.0


def shard_indices(num_items: int, num_shards: int, shard_id: int) -> list[int]:
    """Indices of shard ``shard_id`` of ``num_shards``: ``shard_id, shard_id + N, ...``; the shards
    partition ``range(num_items)``."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"Invalid shard {shard_id} of {num_shards}: need 0 <= shard-id < num-shards.")
    return list(range(shard_id, num_items, num_shards))


def resolve_shard(num_shards: int | None = None, shard_id: int | None = None) -> tuple[int, int]:
    """(num_shards, shard_id): the given values, else ``$WORLD_SIZE`` / ``$RANK`` (torchrun),
    else one shard. Raises ValueError for an invalid pair."""
    num_shards = num_shards if num_shards is not None else int(os.environ.get("WORLD_SIZE", "1"))
    shard_id = shard_id if shard_id is not None else int(os.environ.get("RANK", "0"))
    shard_indices(0, num_shards, shard_id)  # validates
    return num_shards, shard_id


def default_device() -> str:
    """``cuda:$LOCAL_RANK`` (``cuda:0`` outside torchrun) when CUDA is available, else ``cpu``."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def _compare_info(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences between two cache_info dicts, ignoring where the checkpoint file lives."""
    ignore = {"sam_checkpoint", "dataset_root"}
    old, new = flatten_dict(old), flatten_dict(new)
    keys = sorted((set(old) | set(new)) - ignore)
    return [f"{k}: cache has {old.get(k)!r}, this run {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def prepare_cache_dir(cache_dir: str, info: dict[str, Any], overwrite: bool) -> None:
    """Create the directory and ``cache_info.json``; refuse to mix parameters in one cache."""
    old = read_cache_info(cache_dir)
    if old is not None and not overwrite:
        diff = _compare_info(json.loads(json.dumps(old)), json.loads(json.dumps(info)))
        if diff:
            raise ValueError(
                f"The cache in {cache_dir} was built with other parameters ({'; '.join(diff)}). "
                "Use another --output, or --overwrite to rebuild every image."
            )
        return
    write_cache_info(cache_dir, info)


def format_duration(s: float) -> str:
    """Seconds as ``H:MM:SS`` ("?" for NaN or infinity)."""
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def write_failed_images(directory: str, failed: list[dict[str, str]], shard_id: int, num_shards: int) -> str | None:
    """List a shard's unreadable images in ``failed_images.shard-I-of-N.json`` (atomically), or
    remove that file when none failed. Returns its path, or None when none failed."""
    path = os.path.join(directory, f"failed_images.shard-{shard_id}-of-{num_shards}.json")
    if failed:
        with atomic_write(path, "w") as f:
            json.dump(failed, f, indent=2)
        return path
    if os.path.exists(path):
        os.remove(path)
    return None
