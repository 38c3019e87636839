"""The offline job that fills a SAM proposal cache (docs/models/frozenseg.md §7.5): run a proposal source over the
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

import logging
import os
import time
from collections import Counter
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..data.sharded_jobs import (
    SaveSummary,
    default_device,
    format_duration,
    prepare_cache_dir,
    resolve_shard,
    shard_indices,
    write_failed_images,
)
from ..data.sam_mask_cache import (
    FORMAT_VERSION,
    SamProposals,
    cache_path,
    image_key,
    is_valid_cache_file,
    make_record,
    write_sam_masks,
)
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

