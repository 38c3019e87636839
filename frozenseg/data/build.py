"""Training and test data loaders (Detectron2's protocol).

Training: :class:`TrainingStream`, an infinite stream of micro-batches (``list[dict]``) that is a
pure function of ``(seed, position)``, so it resumes exactly and does not depend on the number of
data workers:

* the dataset is split into aspect-ratio groups (landscape ``w > h`` / portrait, from the
  dataset dicts' ``width`` / ``height``; one group without ``DATALOADER.ASPECT_RATIO_GROUPING``);
  every batch holds images of one group only;
* each group has its own infinite stream of shuffled passes over its images, pass ``e`` of
  group ``g`` being a permutation drawn from ``(seed, g, e)``; batch number ``k`` of group ``g``
  holds the next ``B`` images of it (``k * B .. k * B + B - 1``), so no image is dropped;
* the global sequence of batches is cut into blocks: block ``c`` holds, for every group ``g``,
  the ``floor((c + 1) * n_g / B) - floor(c * n_g / B)`` next batches of that group (``n_g``
  images; about one pass over the dataset in ``N / B`` blocks), in an order shuffled from
  ``(seed, c)``; so the groups are interleaved at random, in proportion to their sizes, and any
  batch can be located directly;
* global batch ``j`` goes to process ``j % W`` as its micro-batch ``j // W`` (``W`` processes,
  each taking ``B`` images per micro-batch: the processes together consume consecutive batches);
* the dataset mapper's random augmentation for the image at global position ``j * B + b`` runs
  with every global RNG (``random``, numpy, torch) seeded from ``(seed, j * B + b)`` and restored
  afterwards.

:func:`build_detection_train_loader` wraps it in a ``DataLoader`` (worker processes map whole
micro-batches; the output order is the sampler's, whatever the number of workers) starting at
micro-batch ``start_iter * GRAD_ACCUM_STEPS``: a resumed run sees the same images, in the same
order, with the same augmentations as an uninterrupted one.

Testing: each process takes a contiguous shard of the dataset in order, in batches of
``TEST.IMS_PER_BATCH`` images (default 1).
"""

from __future__ import annotations

import copy
import itertools
import logging
import random
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.utils.data as torchdata

from ..utils import comm
from ..utils.errors import ConfigValueError
from ..utils.rng import derive_seed, rng_state, seed_all_rng, set_rng_state
from .catalog import DatasetCatalog

__all__ = [
    "TrainingStream",
    "InferenceSampler",
    "MapDataset",
    "aspect_ratio_groups",
    "micro_batch_size",
    "get_detection_dataset_dicts",
    "filter_images_with_only_crowd_annotations",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)

# Seed domains of derive_seed(seed, domain, ...): group passes, block orders, mapper randomness.
_PASS, _BLOCK, _MAP = 1, 2, 3


def micro_batch_size(total_batch: int, world_size: int, accum_steps: int) -> int:
    """Images per process and micro-batch: ``IMS_PER_BATCH / (world_size * GRAD_ACCUM_STEPS)``."""
    if accum_steps < 1:
        raise ConfigValueError(f"SOLVER.GRAD_ACCUM_STEPS must be >= 1, got {accum_steps}.")
    div = world_size * accum_steps
    if total_batch <= 0 or total_batch % div:
        raise ConfigValueError(
            f"SOLVER.IMS_PER_BATCH ({total_batch}) must be a positive multiple of "
            f"processes x SOLVER.GRAD_ACCUM_STEPS ({world_size} x {accum_steps} = {div})."
        )
    return total_batch // div


def aspect_ratio_groups(dataset_dicts: Sequence[dict]) -> np.ndarray:
    """Aspect-ratio group of every image: 0 when landscape (``width > height``), else 1.

    The size is the dataset dict's ``height`` / ``width`` (the original image: with fixed-size
    crops every mapped image is square, so the original orientation is what groups); dicts
    without it (semantic-only datasets) get it from the image file's header.
    """
    from PIL import Image

    groups = np.empty(len(dataset_dicts), np.int64)
    n_read = 0
    for i, d in enumerate(dataset_dicts):
        h, w = d.get("height"), d.get("width")
        if h is None or w is None:
            with Image.open(d["file_name"]) as im:
                w, h = im.size
            n_read += 1
        groups[i] = 0 if w > h else 1
    if n_read:
        logger.info("Aspect-ratio grouping: read the size of %d image(s) from their files.", n_read)
    return groups


class TrainingStream(torchdata.Dataset):
    """Map-style dataset whose item ``k`` is micro-batch ``k`` of this process (a ``list[dict]``);
    see the module docstring for the order.

    Args:
        dataset: the dataset dicts.
        mapper: dataset dict -> model input dict (may return ``None`` for an unusable sample;
            another deterministically chosen image of the same group is then used).
        seed: the stream seed (identical in every process).
        batch_size: images per micro-batch and process.
        rank, world_size: this process and the number of processes.
        groups: the group of every image (e.g. :func:`aspect_ratio_groups`); batches hold images
            of one group. ``None``: one group (no grouping).
        shuffle: shuffle the passes and the blocks (else dataset order, groups in turn).
    """

    def __init__(self, dataset: Sequence[dict], mapper: Callable[[dict], dict | None], *, seed: int,
                 batch_size: int, rank: int = 0, world_size: int = 1, groups: Sequence[int] | None = None,
                 shuffle: bool = True):
        if len(dataset) == 0:
            raise ValueError("The training dataset is empty.")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Bad batch_size {batch_size} / rank {rank} of world_size {world_size}.")
        self.dataset = dataset
        self.mapper = mapper
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shuffle = shuffle
        labels = np.zeros(len(dataset), np.int64) if groups is None else np.asarray(groups)
        if labels.shape != (len(dataset),):
            raise ValueError(f"{labels.shape[0]} group labels for {len(dataset)} images.")
        #: dataset indices of each group (groups in sorted label order, empty ones left out)
        self.members = [np.flatnonzero(labels == g) for g in np.unique(labels)]
        self._sizes = np.array([len(m) for m in self.members], np.int64)
        self._passes: dict[int, tuple[int, np.ndarray]] = {}  # group -> (pass, permutation)
        self._block: tuple[int, np.ndarray] | None = None  # (block, group of each batch)

    def __len__(self) -> int:  # the stream is infinite; DataLoader only needs the sampler
        return 2**62

    # -- the order -------------------------------------------------------------------------------
    def _batches_before(self, block: int) -> np.ndarray:
        """Batches of each group in blocks ``0 .. block - 1``."""
        return (block * self._sizes) // self.batch_size

    def _block_groups(self, block: int) -> np.ndarray:
        """The group of each batch of ``block``, in order."""
        if self._block is None or self._block[0] != block:
            counts = self._batches_before(block + 1) - self._batches_before(block)
            order = np.repeat(np.arange(len(self.members)), counts)
            if self.shuffle:
                order = np.random.default_rng(derive_seed(self.seed, _BLOCK, block)).permutation(order)
            self._block = (block, order)
        return self._block[1]

    def _group_index(self, group: int, q: int) -> int:
        """Dataset index at position ``q`` of the infinite stream of passes over ``group``."""
        n = int(self._sizes[group])
        epoch, offset = divmod(int(q), n)
        if not self.shuffle:
            return int(self.members[group][offset])
        cached = self._passes.get(group)
        if cached is None or cached[0] != epoch:
            perm = np.random.default_rng(derive_seed(self.seed, _PASS, group, epoch)).permutation(n)
            self._passes[group] = cached = (epoch, perm)
        return int(self.members[group][cached[1][offset]])

    def batch(self, j: int) -> tuple[int, list[int]]:
        """``(group, dataset indices)`` of global batch ``j`` (of all processes together)."""
        j = int(j)
        total = int(self._sizes.sum())
        block = j * self.batch_size // total  # first guess; blocks hold N / B batches on average
        while int(self._batches_before(block + 1).sum()) <= j:
            block += 1
        while int(self._batches_before(block).sum()) > j:
            block -= 1
        order = self._block_groups(block)
        o = j - int(self._batches_before(block).sum())
        g = int(order[o])
        k = int(self._batches_before(block)[g]) + int(np.count_nonzero(order[:o] == g))
        start = k * self.batch_size
        return g, [self._group_index(g, q) for q in range(start, start + self.batch_size)]

    def positions(self, k: int) -> list[int]:
        """Global sample positions of micro-batch ``k`` of this process."""
        start = (int(k) * self.world_size + self.rank) * self.batch_size
        return list(range(start, start + self.batch_size))

    # -- loading ---------------------------------------------------------------------------------
    def map_position(self, position: int, idx: int, group: int = 0) -> dict:
        """Load and augment image ``idx`` (at global ``position``) with RNGs seeded from
        ``(seed, position)``; a rejected image is replaced by another one of ``group``."""
        saved = rng_state()
        try:
            for attempt in itertools.count():
                attempt_seed = derive_seed(self.seed, _MAP, position, attempt)
                seed_all_rng(attempt_seed)
                if attempt:  # the mapper rejected the sample: a deterministic replacement
                    members = self.members[group]
                    idx = int(members[np.random.default_rng(attempt_seed).integers(len(members))])
                out = self.mapper(copy.deepcopy(self.dataset[idx]))
                if out is not None:
                    return out
                if attempt >= 20:
                    raise RuntimeError(f"The dataset mapper rejected 20 samples in a row at position {position}.")
                logger.warning("The mapper rejected image %d (position %d); using another one.", idx, position)
        finally:
            set_rng_state(saved)
        raise AssertionError("unreachable")

    def __getitem__(self, k: int) -> list[dict]:
        j = int(k) * self.world_size + self.rank
        group, indices = self.batch(j)
        return [self.map_position(p, i, group) for p, i in zip(self.positions(k), indices)]


class _CountFrom(torchdata.Sampler):
    """Infinite sampler ``start, start + 1, ...`` (micro-batch indices)."""

    def __init__(self, start: int):
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


class InferenceSampler(torchdata.Sampler):
    """Contiguous, ordered shard of ``range(size)`` for this process."""

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None):
        rank = comm.get_rank() if rank is None else rank
        world_size = comm.get_world_size() if world_size is None else world_size
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


def trivial_batch_collator(batch):
    """Keep a batch as the list of dicts."""
    return batch


def _worker_init(worker_id: int) -> None:
    # one torch thread per worker: the main process's compute threads count the workers as busy
    # cores (frozenseg.engine.launch.compute_threads), so together they do not oversubscribe
    torch.set_num_threads(1)
    # every sample reseeds itself; this only keeps stray randomness in workers distinct
    seed = torch.initial_seed() % 2**31
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


def build_detection_train_loader(cfg=None, mapper: Callable | None = None, *, dataset: Sequence[dict] | None = None,
                                 total_batch_size: int | None = None, grad_accum_steps: int | None = None,
                                 aspect_ratio_grouping: bool | None = None, num_workers: int | None = None,
                                 seed: int | None = None, start_iter: int = 0, rank: int | None = None,
                                 world_size: int | None = None) -> torchdata.DataLoader:
    """Infinite loader of this process's micro-batches (:class:`TrainingStream`), each a
    ``list[dict]`` of ``total_batch_size / (world_size * grad_accum_steps)`` images, starting at
    optimiser step ``start_iter`` (micro-batch ``start_iter * grad_accum_steps``).

    Arguments left as ``None`` come from ``cfg``: ``DATASETS.TRAIN``,
    ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``, ``SOLVER.IMS_PER_BATCH``, ``SOLVER.GRAD_ACCUM_STEPS``,
    ``DATALOADER.ASPECT_RATIO_GROUPING``, ``DATALOADER.NUM_WORKERS``, ``SEED`` (a seed shared by
    all processes when < 0), the mapper named by ``INPUT.DATASET_MAPPER_NAME``; ``rank`` and
    ``world_size`` from ``torch.distributed``.
    """
    if cfg is not None and cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ConfigValueError(f"Unknown DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r}; only TrainingSampler.")
    if dataset is None:
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        from .dataset_mappers import build_dataset_mapper

        mapper = build_dataset_mapper(cfg, is_train=True)
    if total_batch_size is None:
        total_batch_size = cfg.SOLVER.IMS_PER_BATCH
    if grad_accum_steps is None:
        grad_accum_steps = cfg.SOLVER.GRAD_ACCUM_STEPS if cfg is not None else 1
    if aspect_ratio_grouping is None:
        aspect_ratio_grouping = cfg.DATALOADER.ASPECT_RATIO_GROUPING if cfg is not None else True
    if num_workers is None:
        num_workers = cfg.DATALOADER.NUM_WORKERS if cfg is not None else 0
    if seed is None:
        seed = cfg.SEED if cfg is not None and cfg.SEED >= 0 else comm.shared_random_seed()
    rank = comm.get_rank() if rank is None else int(rank)
    world_size = comm.get_world_size() if world_size is None else int(world_size)
    batch_size = micro_batch_size(total_batch_size, world_size, grad_accum_steps)
    groups = aspect_ratio_groups(dataset) if aspect_ratio_grouping else None
    stream = TrainingStream(dataset, mapper, seed=seed, batch_size=batch_size, rank=rank,
                            world_size=world_size, groups=groups)
    start = int(start_iter) * int(grad_accum_steps)
    logger.info(
        "Training stream: %d images (%s), %d per optimiser step = %d process(es) x %d accumulation "
        "step(s) x %d; seed %d, starting at micro-batch %d, %d data worker(s)",
        len(dataset), " / ".join(str(len(m)) for m in stream.members) + " per aspect-ratio group"
        if aspect_ratio_grouping else "no aspect-ratio grouping",
        total_batch_size, world_size, grad_accum_steps, batch_size, seed, start, num_workers,
    )
    return torchdata.DataLoader(
        stream,
        batch_size=None,
        sampler=_CountFrom(start),
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(derive_seed(seed, rank) % 2**63),
    )


def build_detection_test_loader(cfg=None, dataset_name: str | None = None, mapper: Callable | None = None,
                                *, dataset=None, num_workers: int | None = None, batch_size: int | None = None):
    """Ordered, sharded loader whose batches are ``list[dict]`` of ``batch_size`` images (the
    last one of a shard may be shorter); ``batch_size`` and ``num_workers`` default to
    ``TEST.IMS_PER_BATCH`` and ``DATALOADER.NUM_WORKERS`` (1 and 0 without ``cfg``). The models'
    eval forwards give each image the result of a batch of one, so the batch size changes the
    speed, not the predictions."""
    if dataset is None:
        dataset = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    if mapper is None:
        from .dataset_mappers import TestDatasetMapper

        mapper = TestDatasetMapper.from_config(cfg, dataset_name=dataset_name)
    if cfg is not None and cfg.TEST.USE_SAM_MASKS and dataset_name:
        from .sam_mask_cache import check_sam_mask_cache

        check_sam_mask_cache(cfg.TEST.SAM_MASKS_DIR, dataset_name, dataset)  # one clear error up front
    if num_workers is None:
        num_workers = cfg.DATALOADER.NUM_WORKERS if cfg is not None else 0
    if batch_size is None:
        batch_size = cfg.TEST.IMS_PER_BATCH if cfg is not None else 1
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigValueError(f"TEST.IMS_PER_BATCH must be a positive integer (images per process), got {batch_size!r}.")
    sampler = InferenceSampler(len(dataset))
    logger.info("Test loader%s: %d of %d images in this process, %d per batch, %d data worker(s)",
                f" of {dataset_name}" if dataset_name else "", len(sampler), len(dataset), batch_size, num_workers)
    ds = MapDataset(dataset, mapper)
    return torchdata.DataLoader(ds, batch_size=batch_size, sampler=sampler,
                                num_workers=num_workers, collate_fn=trivial_batch_collator,
                                worker_init_fn=_worker_init if num_workers > 0 else None)
