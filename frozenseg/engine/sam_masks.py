"""The offline job that fills a SAM proposal cache (spec §7.5): run a proposal source over the
images of a dataset and write one cache file per image (format:
:mod:`frozenseg.data.sam_mask_cache`).

Resumable (existing valid files are skipped; a corrupt one is recomputed), shardable (shard
``I`` of ``N`` handles images ``I, I + N, ...``; under ``torchrun`` the shard comes from
``WORLD_SIZE`` / ``RANK``), with progress logs and a final count. Unreadable images are
reported, listed in ``failed_images.shard-I-of-N.json`` and skipped, never silently dropped.
The proposals come from :class:`frozenseg.modeling.sam.automatic.SamProposalSource` (or any
object with the same two methods, :class:`ProposalSource`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ..data.sam_mask_cache import (
    FORMAT_VERSION,
    SamProposals,
    cache_path,
    image_key,
    is_valid_cache_file,
    make_record,
    read_cache_info,
    write_cache_info,
    write_sam_masks,
)
from ..utils.file_io import atomic_write
from ..utils.image_io import ImageReadError, read_image

__all__ = [
    "ProposalSource",
    "SaveSummary",
    "shard_indices",
    "resolve_shard",
    "default_device",
    "prepare_cache_dir",
    "save_sam_masks",
    "format_duration",
    "write_failed_images",
]

logger = logging.getLogger(__name__)


class ProposalSource(Protocol):
    """What :func:`save_sam_masks` needs: ``params()`` (recorded in ``cache_info.json`` and
    compared on resume) and ``propose(image RGB uint8 (H, W, 3)) -> SamProposals``."""

    def params(self) -> dict[str, Any]:
        ...

    def propose(self, image: np.ndarray) -> SamProposals:
        ...


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


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _compare_info(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences between two cache_info dicts, ignoring where the checkpoint file lives."""
    ignore = {"sam_checkpoint", "dataset_root"}
    old, new = _flatten(old), _flatten(new)
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


def save_sam_masks(
    dataset_dicts: Sequence[dict],
    source: ProposalSource,
    cache_dir: str,
    *,
    num_shards: int = 1,
    shard_id: int = 0,
    overwrite: bool = False,
    max_images: int | None = None,
    log_every: int = 10,
    image_reader: Callable[[str], np.ndarray] = read_image,
    info: dict[str, Any] | None = None,
) -> SaveSummary:
    """Compute and cache the proposals of this shard's images.

    Args:
        dataset_dicts: the dataset (``file_name`` and ``image_id`` per dict), in a fixed order.
        source: where proposals come from (:class:`ProposalSource`).
        cache_dir: the dataset's cache directory (``<output>/<dataset>``).
        num_shards, shard_id: this process handles images ``shard_id::num_shards``.
        overwrite: recompute images that are already cached.
        max_images: stop after this many images of the shard (quick runs).
        log_every: progress line every this many images (and at least once a minute).
        image_reader: path -> uint8 RGB (H, W, 3).
        info: entries written to ``cache_info.json`` besides ``source.params()``.
    Returns:
        :class:`SaveSummary`. Unreadable images are logged, listed in
        ``failed_images.shard-I-of-N.json`` and counted, never silently dropped.
    """
    keys = [image_key(d) for d in dataset_dicts]
    dup = sorted(k for k, c in Counter(keys).items() if c > 1)
    if dup:
        raise ValueError(f"Image ids are not unique in this dataset (e.g. {dup[:5]}); the cache is keyed by image id.")
    full_info = {"format_version": FORMAT_VERSION, **(info or {}), **source.params()}
    prepare_cache_dir(cache_dir, full_info, overwrite)

    indices = shard_indices(len(dataset_dicts), num_shards, shard_id)
    if max_images is not None:
        indices = indices[: max(0, int(max_images))]
    summary = SaveSummary(total=len(indices))
    tag = f"[shard {shard_id}/{num_shards}]" if num_shards > 1 else "[all images]"
    logger.info("%s %d of %d images to process into %s", tag, len(indices), len(dataset_dicts), cache_dir)
    t0 = last_log = time.perf_counter()
    for n, idx in enumerate(indices, start=1):
        d, key = dataset_dicts[idx], keys[idx]
        path = cache_path(cache_dir, key)
        if not overwrite and os.path.exists(path):
            if is_valid_cache_file(path):
                summary.skipped += 1
                continue
            logger.warning("%s Recomputing the unreadable cache file %s.", tag, path)
        file_name = str(d.get("file_name", ""))
        try:
            image = image_reader(file_name)
        except (FileNotFoundError, ImageReadError, OSError) as e:
            logger.error("%s Skipping image %r (%s): %s", tag, key, file_name, e)
            summary.failed.append({"image_id": key, "file_name": file_name, "error": str(e)})
            continue
        try:
            props = source.propose(image)
        except Exception:
            logger.error("%s SAM failed on image %r (%s).", tag, key, file_name)
            raise
        write_sam_masks(path, make_record(key, props))
        summary.written += 1
        now = time.perf_counter()
        if n % max(1, log_every) == 0 or now - last_log > 60 or n == len(indices):
            done = summary.written + summary.skipped + len(summary.failed)
            rate = summary.written / max(now - t0, 1e-9)
            eta = (len(indices) - done) / rate if rate > 0 else float("nan")
            logger.info(
                "%s %d/%d images (%d written, %d already cached, %d failed), %.2f img/s, ETA %s",
                tag, done, len(indices), summary.written, summary.skipped, len(summary.failed),
                rate, format_duration(eta),
            )
            last_log = now
    summary.seconds = time.perf_counter() - t0
    failed_file = write_failed_images(cache_dir, summary.failed, shard_id, num_shards)
    summary.files_in_cache = sum(1 for f in os.listdir(cache_dir) if f.endswith(".npz") and not f.startswith("."))
    logger.info(
        "%s Done in %s: %d images in this shard, %d written, %d already cached, %d failed%s. "
        "%d of %d images of the dataset are now in %s.",
        tag, format_duration(summary.seconds), summary.total, summary.written, summary.skipped,
        len(summary.failed), f" (listed in {failed_file})" if failed_file else "",
        summary.files_in_cache, len(dataset_dicts), cache_dir,
    )
    return summary

