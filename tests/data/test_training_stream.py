"""The resumable training stream: a pure function of (seed, position), sharded across processes,
aspect-ratio grouped, identical with any number of data workers and after a resume."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from frozenseg.config import get_cfg
from frozenseg.data.build import (
    TrainingStream,
    aspect_ratio_groups,
    build_detection_train_loader,
    micro_batch_size,
)


def _augment(d):
    """A mapper that only draws augmentation randomness from every global RNG."""
    return {"i": d["i"], "landscape": d["landscape"],
            "r": (random.random(), float(np.random.rand()), float(torch.rand(())))}


def _dicts(tmp_path=None, n_landscape=7, n_portrait=4):
    """Dataset dicts with sizes (landscape first); with ``tmp_path`` one more portrait image
    whose size is only in its file."""
    out = [{"i": i, "height": 40, "width": 60 + i, "landscape": True} for i in range(n_landscape)]
    out += [{"i": n_landscape + i, "height": 50 + i, "width": 50, "landscape": False} for i in range(n_portrait)]
    if tmp_path is not None:
        path = tmp_path / "portrait.png"
        Image.new("RGB", (30, 45)).save(path)
        out.append({"i": len(out), "file_name": str(path), "landscape": False})
    return out


def _flat(batches):
    return [d for b in batches for d in b]


def test_micro_batch_size():
    assert micro_batch_size(16, 4, 2) == 2
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        micro_batch_size(16, 3, 1)


def test_training_stream_is_a_function_of_seed_and_position():
    data = [{"i": i} for i in range(5)]

    def mapper(d):
        return {"i": d["i"], "r": float(torch.rand(()))}  # augmentation randomness

    def stream(rank, world, seed=3):
        return TrainingStream(data, mapper, seed=seed, batch_size=2, rank=rank, world_size=world)

    one = [stream(0, 1)[k] for k in range(6)]  # 12 samples, more than 2 epochs
    flat = _flat(one)
    assert sorted(d["i"] for d in flat[:5]) == list(range(5))  # each epoch a permutation
    assert sorted(d["i"] for d in flat[5:10]) == list(range(5))
    # two processes together read the same positions; resuming at micro-batch 3 repeats it
    two = [stream(r, 2)[k] for k in range(3) for r in range(2)]
    assert _flat(two) == flat
    assert stream(0, 1)[3] == one[3]
    assert [stream(0, 1, seed=4)[k] for k in range(6)] != one  # another seed, another stream


def test_stream_is_sharded_across_processes():
    data = [{"i": i} for i in range(10)]

    def ranks(seed):
        return [[b[0]["i"] for b in (TrainingStream(data, lambda d: d, seed=seed, batch_size=1, rank=r,
                                                    world_size=2)[k] for k in range(10))] for r in range(2)]

    a, b = ranks(3)
    assert sorted(a[:5] + b[:5]) == list(range(10))  # one epoch split across the two ranks
    assert not set(a[:5]) & set(b[:5])
    assert [a, b] == ranks(3) and [a, b] != ranks(4)


def test_aspect_ratio_groups_from_dicts_and_files(tmp_path):
    data = _dicts(tmp_path)
    assert aspect_ratio_groups(data).tolist() == [0 if d["landscape"] else 1 for d in data]


def test_grouped_batches_are_homogeneous_and_cover_every_image(tmp_path):
    data = _dicts(tmp_path)  # 7 landscape, 5 portrait (one sized from its file)
    groups = aspect_ratio_groups(data)
    B, n = 3, len(data)

    def stream(rank=0, world=1, seed=5):
        return TrainingStream(data, _augment, seed=seed, batch_size=B, rank=rank, world_size=world, groups=groups)

    # n global batches = B passes over every group: each image exactly B times
    single = [stream()[k] for k in range(n)]
    for b in single:
        assert len(b) == B and len({d["landscape"] for d in b}) == 1, [d["i"] for d in b]
    assert Counter(d["i"] for d in _flat(single)) == {i: B for i in range(n)}
    # the groups are interleaved at random, in proportion to their sizes
    kinds = [b[0]["landscape"] for b in single]
    assert kinds.count(True) == 7 and kinds.count(False) == 5
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)
    # two processes consume the same batches (global batch j -> rank j % 2, micro-batch j // 2)
    two = [stream(r, 2)[k] for k in range(n // 2) for r in range(2)]
    assert two == single
    # a fresh stream (a resumed run) repeats any micro-batch, augmentation included
    assert stream()[7] == single[7] and stream(1, 2)[3] == single[7]
    assert [stream(seed=6)[k] for k in range(n)] != single


def test_rejected_images_are_replaced_from_the_same_group():
    data = _dicts()
    groups = aspect_ratio_groups(data)

    def mapper(d):
        return None if d["i"] in (0, 8) else _augment(d)  # one landscape, one portrait rejected

    stream = TrainingStream(data, mapper, seed=1, batch_size=2, groups=groups)
    batches = [stream[k] for k in range(12)]
    assert all(len({d["landscape"] for d in b}) == 1 for b in batches)
    seen = {d["i"] for b in batches for d in b}
    assert not seen & {0, 8} and len(seen) == len(data) - 2


def test_train_loader_is_identical_with_workers_and_after_resume(tmp_path):
    data = _dicts(tmp_path)

    def take(workers, start_iter, count):
        loader = build_detection_train_loader(
            mapper=_augment, dataset=data, total_batch_size=4, grad_accum_steps=2, seed=11,
            num_workers=workers, start_iter=start_iter, rank=0, world_size=1)
        return list(itertools.islice(iter(loader), count))

    ref = take(0, 0, 10)  # 5 optimiser steps of 2 micro-batches of 2 images
    assert all(len(b) == 2 and len({d["landscape"] for d in b}) == 1 for b in ref)
    assert take(2, 0, 10) == ref
    assert take(0, 3, 4) == ref[6:] == take(2, 3, 4)  # resumed at step 3 = micro-batch 6


@pytest.mark.slow
def test_train_loader_from_config_resumes_with_workers(synth_root):
    """The real LSJ mapper and the registered dataset: same images, augmentations and targets
    with 0 or 2 workers and after a resume; batches share the original orientation."""
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", ("synthetic_shapes_train_panoptic",), "INPUT.IMAGE_SIZE", 64,
                         "SOLVER.IMS_PER_BATCH", 2, "SEED", 0])  # LSJ mapper, grouping on

    def take(workers, start_iter, count):
        cfg.DATALOADER.NUM_WORKERS = workers
        return list(itertools.islice(iter(build_detection_train_loader(cfg, start_iter=start_iter)), count))

    def key(batches):
        return [(d["file_name"], d["image"], d["sem_seg"], d["instances"].gt_classes) for b in batches for d in b]

    def same(a, b):
        assert len(a) == len(b)
        for x, y in zip(key(a), key(b)):
            assert x[0] == y[0] and all(torch.equal(u, v) for u, v in zip(x[1:], y[1:]))

    ref = take(0, 0, 5)
    assert all(len({d["width"] > d["height"] for d in b}) == 1 for b in ref)
    same(take(2, 0, 5), ref)
    same(take(2, 2, 3), ref[2:])
