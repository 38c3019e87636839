"""Training and test data loaders (Detectron2's protocol).

Training: an infinite stream of shuffled indices (seeded, identical in every process, each
process taking every ``world_size``-th index from its rank), mapped by a dataset mapper in worker
processes, grouped into batches of images with the same orientation (aspect-ratio grouping), each
process yielding ``SOLVER.IMS_PER_BATCH / world_size`` images per batch as a ``list[dict]``.
Testing: each process takes a contiguous shard of the dataset in order, batch size 1.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data as torchdata

from .catalog import DatasetCatalog

__all__ = [
    "TrainingSampler",
    "InferenceSampler",
    "MapDataset",
    "AspectRatioGroupedDataset",
    "get_detection_dataset_dicts",
    "filter_images_with_only_crowd_annotations",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "worker_init_reset_seed",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shared_seed() -> int:
    """A random seed, the same in every process (broadcast from rank 0)."""
    seed = int(np.random.randint(2**31))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([seed], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, 0)
        seed = int(t.item())
    return seed


class TrainingSampler(torchdata.Sampler):
    """Infinite shuffled indices; process ``rank`` yields positions rank, rank+W, rank+2W, ...
    of one global stream, so the processes together see every index once per epoch."""

    def __init__(self, size: int, shuffle: bool = True, seed: int | None = None,
                 rank: int | None = None, world_size: int | None = None):
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size {size}.")
        r, w = _world()
        self._size, self._shuffle = size, shuffle
        self._seed = _shared_seed() if seed is None else int(seed)
        self._rank = r if rank is None else rank
        self._world_size = w if world_size is None else world_size

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._infinite(), self._rank, None, self._world_size)

    def _infinite(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)


class InferenceSampler(torchdata.Sampler):
    """Contiguous, ordered shard of ``range(size)`` for this process."""

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None):
        r, w = _world()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
        # balanced split: the first `size % world_size` ranks get one more image
        base, extra = divmod(size, world_size)
        sizes = [base + int(i < extra) for i in range(world_size)]
        start = sum(sizes[:rank])
        self._local = range(start, start + sizes[rank])

    def __iter__(self):
        return iter(self._local)

    def __len__(self) -> int:
        return len(self._local)


class MapDataset(torchdata.Dataset):
    """Applies ``mapper`` to ``dataset[i]``; when the mapper returns ``None`` (an unusable
    sample), another index is tried (deterministically random)."""

    def __init__(self, dataset: Sequence, mapper: Callable):
        self._dataset, self._mapper = dataset, mapper
        self._rng = random.Random(42)
        self._fallback = set(range(len(dataset)))

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int):
        cur = int(idx)
        for attempt in itertools.count(1):
            data = self._mapper(self._dataset[cur])
            if data is not None:
                self._fallback.add(cur)
                return data
            self._fallback.discard(cur)
            if not self._fallback:
                raise RuntimeError("The mapper returned None for every sample.")
            cur = self._rng.sample(sorted(self._fallback), k=1)[0]
            if attempt >= 3:
                logger.warning("Failed to map sample %d after %d attempts.", idx, attempt)


class _SampledDataset(torchdata.IterableDataset):
    """Iterates ``dataset[i]`` for the indices of ``sampler``, split across DataLoader workers."""

    def __init__(self, dataset: torchdata.Dataset, sampler: torchdata.Sampler):
        self.dataset, self.sampler = dataset, sampler

    def __iter__(self):
        info = torchdata.get_worker_info()
        it = iter(self.sampler)
        if info is not None and info.num_workers > 1:
            it = itertools.islice(it, info.id, None, info.num_workers)
        for i in it:
            yield self.dataset[i]


class AspectRatioGroupedDataset(torchdata.IterableDataset):
    """Batches mapped samples whose images are both landscape (w > h) or both portrait."""

    def __init__(self, dataset: torchdata.IterableDataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size
        self._buckets: list[list] = [[], []]

    def __iter__(self):
        for d in self.dataset:
            h, w = d["image"].shape[-2:] if "image" in d else (d["height"], d["width"])
            bucket = self._buckets[0 if w > h else 1]
            bucket.append(d)
            if len(bucket) == self.batch_size:
                batch = bucket[:]
                del bucket[:]
                yield batch


def trivial_batch_collator(batch):
    """Keep a batch as the list of dicts."""
    return batch


def worker_init_reset_seed(worker_id: int) -> None:
    """Give each worker its own numpy / python / torch seed (derived from torch's)."""
    seed = (torch.initial_seed() + worker_id) % 2**31
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def filter_images_with_only_crowd_annotations(dataset_dicts: list[dict]) -> list[dict]:
    """Drop images without any non-crowd annotation / segment."""

    def valid(d):
        anns = d.get("annotations", d.get("segments_info"))
        if anns is None:  # semantic datasets: nothing to filter
            return True
        return any(not a.get("iscrowd", 0) for a in anns)

    out = [d for d in dataset_dicts if valid(d)]
    if len(out) != len(dataset_dicts):
        logger.info("Removed %d images without usable annotations; %d left.",
                    len(dataset_dicts) - len(out), len(out))
    return out


def get_detection_dataset_dicts(names: str | Sequence[str], filter_empty: bool = True) -> list[dict]:
    """Concatenated dataset dicts of the registered datasets ``names``."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("No dataset names given.")
    dicts = []
    for n in names:
        ds = DatasetCatalog.get(n)
        if not ds:
            raise ValueError(f"Dataset {n!r} is empty.")
        dicts.extend(ds)
    if filter_empty:
        dicts = filter_images_with_only_crowd_annotations(dicts)
    return dicts


def build_detection_train_loader(cfg=None, mapper: Callable | None = None, *, dataset=None,
                                 sampler=None, total_batch_size: int | None = None,
                                 aspect_ratio_grouping: bool | None = None,
                                 num_workers: int | None = None, seed: int | None = None):
    """Infinite training loader yielding ``list[dict]`` of ``total_batch_size / world_size``.

    Arguments left as ``None`` come from ``cfg``: ``DATASETS.TRAIN``,
    ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``, ``SOLVER.IMS_PER_BATCH``,
    ``DATALOADER.ASPECT_RATIO_GROUPING``, ``DATALOADER.NUM_WORKERS``, ``SEED`` (when >= 0),
    and the mapper named by ``INPUT.DATASET_MAPPER_NAME``.
    """
    if dataset is None:
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        from .dataset_mappers import build_dataset_mapper

        mapper = build_dataset_mapper(cfg, is_train=True)
    if total_batch_size is None:
        total_batch_size = cfg.SOLVER.IMS_PER_BATCH
    if aspect_ratio_grouping is None:
        aspect_ratio_grouping = cfg.DATALOADER.ASPECT_RATIO_GROUPING if cfg is not None else True
    if num_workers is None:
        num_workers = cfg.DATALOADER.NUM_WORKERS if cfg is not None else 0
    if seed is None and cfg is not None and cfg.SEED >= 0:
        seed = cfg.SEED
    _, world = _world()
    if total_batch_size <= 0 or total_batch_size % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be a positive "
                         f"multiple of the number of processes ({world}).")
    batch_size = total_batch_size // world
    if sampler is None:
        sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed)
    ds = _SampledDataset(MapDataset(dataset, mapper), sampler)
    if aspect_ratio_grouping:
        loader = torchdata.DataLoader(ds, batch_size=None, num_workers=num_workers,
                                      collate_fn=None, worker_init_fn=worker_init_reset_seed,
                                      persistent_workers=num_workers > 0)
        return AspectRatioGroupedDataset(loader, batch_size)
    return torchdata.DataLoader(ds, batch_size=batch_size, drop_last=True, num_workers=num_workers,
                                collate_fn=trivial_batch_collator,
                                worker_init_fn=worker_init_reset_seed,
                                persistent_workers=num_workers > 0)


def build_detection_test_loader(cfg=None, dataset_name: str | None = None, mapper: Callable | None = None,
                                *, dataset=None, num_workers: int | None = None):
    """Ordered, sharded loader with batch size 1 (each batch is a one-element ``list[dict]``)."""
    if dataset is None:
        dataset = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    if mapper is None:
        from .dataset_mappers import TestDatasetMapper

        mapper = TestDatasetMapper.from_config(cfg, dataset_name=dataset_name)
    if cfg is not None and cfg.TEST.USE_SAM_MASKS and dataset_name:
        from ..utils.sam_mask_cache import check_sam_mask_cache

        check_sam_mask_cache(cfg.TEST.SAM_MASKS_DIR, dataset_name, dataset)  # one clear error up front
    if num_workers is None:
        num_workers = cfg.DATALOADER.NUM_WORKERS if cfg is not None else 0
    ds = MapDataset(dataset, mapper)
    return torchdata.DataLoader(ds, batch_size=1, sampler=InferenceSampler(len(dataset)),
                                num_workers=num_workers, collate_fn=trivial_batch_collator)
