"""Training data stream that resumes exactly, test loaders, and the synthetic dataset on demand.

The training stream is a pure function of ``(seed, position)``:

* global sample position ``p`` (0, 1, 2, ...) reads dataset index ``perm_e[p % N]`` with
  ``e = p // N`` and ``perm_e`` a permutation drawn from ``(seed, e)`` (one shuffled pass per
  epoch, the same in every process);
* micro-batch ``k`` of process ``r`` (of ``W``, each taking ``B`` images) holds positions
  ``(k * W + r) * B + b`` for ``b < B``, so the processes together consume consecutive positions;
* the dataset mapper's random augmentation for position ``p`` runs with every global RNG
  (``random``, numpy, torch) seeded from ``(seed, p)`` and restored afterwards.

So the images, their order and their augmentations do not depend on the number of data workers,
and resuming at iteration ``i`` only needs the micro-batch index ``i * GRAD_ACCUM_STEPS``: the
same samples come out as in an uninterrupted run, with any number of data workers.
(Aspect-ratio grouping is not applied: batches are fixed position ranges.)
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.utils.data as torchdata

from . import comm
from .env import derive_seed, rng_state, seed_all_rng, set_rng_state

__all__ = [
    "TrainingStream",
    "build_train_loader",
    "build_test_loader",
    "micro_batch_size",
    "ensure_synthetic_datasets",
    "SHAPES_NUM_TRAIN",
    "SHAPES_NUM_VAL",
]

logger = logging.getLogger(__name__)

#: Size of the shapes dataset generated on first use (seed 0).
SHAPES_NUM_TRAIN = 240
SHAPES_NUM_VAL = 60


def micro_batch_size(total_batch: int, world_size: int, accum_steps: int) -> int:
    """Images per process and micro-batch: ``IMS_PER_BATCH / (world_size * GRAD_ACCUM_STEPS)``."""
    if accum_steps < 1:
        raise ValueError(f"SOLVER.GRAD_ACCUM_STEPS must be >= 1, got {accum_steps}.")
    div = world_size * accum_steps
    if total_batch <= 0 or total_batch % div:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total_batch}) must be a positive multiple of "
            f"processes x SOLVER.GRAD_ACCUM_STEPS ({world_size} x {accum_steps} = {div})."
        )
    return total_batch // div


class TrainingStream(torchdata.Dataset):
    """Map-style dataset whose item ``k`` is micro-batch ``k`` of this process (a ``list[dict]``).

    Args:
        dataset: the dataset dicts.
        mapper: dataset dict -> model input dict (may return ``None`` for an unusable sample;
            another deterministically chosen image is then used).
        seed: the stream seed (identical in every process).
        batch_size: images per micro-batch and process.
        rank, world_size: this process and the number of processes.
        shuffle: permute each epoch (else dataset order).
    """

    def __init__(self, dataset: Sequence[dict], mapper: Callable[[dict], dict | None], *, seed: int,
                 batch_size: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if len(dataset) == 0:
            raise ValueError("The training dataset is empty.")
        self.dataset = dataset
        self.mapper = mapper
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shuffle = shuffle
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:  # the stream is infinite; DataLoader only needs the sampler
        return 2**62

    def index_at(self, position: int) -> int:
        """Dataset index read at global stream position ``position``."""
        n = len(self.dataset)
        epoch, offset = divmod(int(position), n)
        if not self.shuffle:
            return offset
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng(derive_seed(self.seed, epoch)).permutation(n)
            self._perm_epoch = epoch
        return int(self._perm[offset])

    def positions(self, k: int) -> list[int]:
        """Global positions of micro-batch ``k`` of this process."""
        start = (int(k) * self.world_size + self.rank) * self.batch_size
        return list(range(start, start + self.batch_size))

    def map_position(self, position: int) -> dict:
        """Load and augment the sample at ``position`` with RNGs seeded from ``(seed, position)``."""
        saved = rng_state()
        try:
            for attempt in itertools.count():
                seed_all_rng(derive_seed(self.seed, position, attempt))
                if attempt == 0:
                    idx = self.index_at(position)
                else:  # the mapper rejected the sample: a deterministic replacement
                    idx = int(np.random.default_rng(derive_seed(self.seed, position, attempt)).integers(len(self.dataset)))
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
        return [self.map_position(p) for p in self.positions(k)]


class _CountFrom(torchdata.Sampler):
    """Infinite sampler ``start, start + 1, ...`` (micro-batch indices)."""

    def __init__(self, start: int):
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def _identity(batch):
    return batch


def _worker_init(worker_id: int) -> None:
    # every sample reseeds itself; this only keeps stray randomness in workers distinct
    seed = torch.initial_seed() % 2**31
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_train_loader(cfg, *, seed: int, start_micro_batch: int = 0, mapper=None,
                       dataset: Sequence[dict] | None = None) -> torchdata.DataLoader:
    """Infinite loader of this process's micro-batches, starting at ``start_micro_batch``.

    Reads ``DATASETS.TRAIN``, ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``, ``DATALOADER.NUM_WORKERS``,
    ``SOLVER.IMS_PER_BATCH``, ``SOLVER.GRAD_ACCUM_STEPS`` and the mapper named by
    ``INPUT.DATASET_MAPPER_NAME`` (from :mod:`frozenseg.data`).
    """
    from ..data import get_detection_dataset_dicts
    from ..data.dataset_mappers import build_dataset_mapper

    if dataset is None:
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        mapper = build_dataset_mapper(cfg, is_train=True)
    world, rank = comm.get_world_size(), comm.get_rank()
    mb = micro_batch_size(cfg.SOLVER.IMS_PER_BATCH, world, cfg.SOLVER.GRAD_ACCUM_STEPS)
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(f"Unknown DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r}; only TrainingSampler.")
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        logger.debug("DATALOADER.ASPECT_RATIO_GROUPING is not applied by the resumable training stream.")
    stream = TrainingStream(dataset, mapper, seed=seed, batch_size=mb, rank=rank, world_size=world)
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    logger.info(
        "Training stream: %d images, %d per optimiser step = %d process(es) x %d accumulation step(s) x %d; "
        "seed %d, starting at micro-batch %d, %d data worker(s)",
        len(dataset), cfg.SOLVER.IMS_PER_BATCH, world, cfg.SOLVER.GRAD_ACCUM_STEPS, mb, seed,
        start_micro_batch, workers,
    )
    return torchdata.DataLoader(
        stream,
        batch_size=None,
        sampler=_CountFrom(start_micro_batch),
        num_workers=workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=torch.Generator().manual_seed(derive_seed(seed, rank) % 2**63),
        prefetch_factor=2 if workers > 0 else None,
    )


def build_test_loader(cfg, dataset_name: str):
    """Ordered, sharded test loader of ``dataset_name`` (``frozenseg.data``'s, batch size 1)."""
    from ..data import build_detection_test_loader

    return build_detection_test_loader(cfg, dataset_name)


# ---------------------------------------------------------------------------------------------
# Synthetic datasets generated on first use
# ---------------------------------------------------------------------------------------------
def _load_generator():
    """Import ``tools/make_synthetic_dataset.py`` (it lives outside the package)."""
    try:  # a generator moved into the package takes precedence
        from ..data import synthetic  # type: ignore[attr-defined]

        if hasattr(synthetic, "make_shapes"):
            return synthetic
    except ImportError:
        pass
    path = Path(__file__).resolve().parents[2] / "tools" / "make_synthetic_dataset.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"The synthetic dataset generator {path} is missing (install frozenseg from a source "
            "checkout, or generate the data with tools/make_synthetic_dataset.py)."
        )
    spec = importlib.util.spec_from_file_location("frozenseg_make_synthetic_dataset", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def ensure_synthetic_datasets(cfg) -> list[str]:
    """Generate the synthetic "shapes" dataset when a ``synthetic_shapes_*`` dataset of the config
    is registered but its files are absent. Returns the folders written.

    Only rank 0 writes (seed 0, :data:`SHAPES_NUM_TRAIN` / :data:`SHAPES_NUM_VAL` images);
    other processes wait for it. In multi-machine jobs the dataset root must be shared or the
    data generated beforehand.
    """
    from ..data import MetadataCatalog

    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    missing = []
    for name in names:
        if not name.startswith("synthetic_shapes_"):
            continue
        meta = MetadataCatalog.get(name)
        probe = meta.get("panoptic_json") or meta.get("sem_seg_root") or meta.get("image_root")
        if probe and not os.path.exists(probe):
            missing.append(probe)
    written: list[str] = []
    if missing and comm.is_main_process():
        root = _shapes_root(MetadataCatalog.get(next(n for n in names if n.startswith("synthetic_shapes_"))))
        logger.info(
            "The synthetic shapes dataset is missing (%s): generating it under %s "
            "(%d train / %d val images, seed 0) ...", missing[0], root, SHAPES_NUM_TRAIN, SHAPES_NUM_VAL,
        )
        gen = _load_generator()
        written.append(gen.make_shapes(root, 0, SHAPES_NUM_TRAIN, SHAPES_NUM_VAL))
    if missing:
        comm.synchronize()
    return written


def _shapes_root(meta) -> str:
    """The datasets root of a registered synthetic_shapes dataset (parent of synthetic_shapes/)."""
    p = Path(meta.get("image_root"))
    for parent in p.parents:
        if parent.name == "synthetic_shapes":
            return str(parent.parent)
    raise ValueError(f"Cannot find the datasets root of {meta.name} from {p}.")
