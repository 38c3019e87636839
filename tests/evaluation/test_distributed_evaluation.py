"""Distributed evaluation: two CPU processes (gloo) each feed half of the images; the results on
rank 0 must equal the single-process results, and rank 1 must get ``{}``."""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from frozenseg.evaluation import (
    COCOPanopticEvaluator,
    DatasetEvaluators,
    InstanceSegEvaluator,
    RecallEvaluator,
    SemSegEvaluator,
)
from frozenseg.utils import comm

from .eval_test_utils import PAN_H, PAN_W, build_panoptic_dataset, make_instances, one_hot_scores, perfect_outputs, rect

# The panoptic evaluator joins when panopticapi is installed; the others need nothing extra.
HAVE_PANOPTICAPI = importlib.util.find_spec("panopticapi") is not None


def _evaluators(metadata, distributed: bool, with_panoptic: bool = HAVE_PANOPTICAPI) -> DatasetEvaluators:
    evaluators = [
        SemSegEvaluator(metadata, distributed=distributed),
        InstanceSegEvaluator(metadata, distributed=distributed),
        RecallEvaluator(metadata, distributed=distributed),
    ]
    if with_panoptic:
        evaluators.append(COCOPanopticEvaluator(metadata, distributed=distributed))
    return DatasetEvaluators(evaluators)


def _outputs(dataset) -> list[dict]:
    """Perfect on image 1, imperfect on image 2 (so the numbers are not all 100)."""
    outputs = perfect_outputs(dataset)
    out = outputs[1]
    person_c = rect(PAN_H, PAN_W, slice(6, 8), slice(0, 8))
    half_c = rect(PAN_H, PAN_W, slice(6, 7), slice(0, 8))
    sem = out["sem_seg"].argmax(0).numpy()
    sem[2] = 0  # a grass row predicted as person
    out["sem_seg"] = one_hot_scores(sem, 2)
    ids, infos = out["panoptic_seg"]
    ids = ids.clone()
    ids[torch.from_numpy(person_c & ~half_c)] = 3  # person_c shrinks to IoU 0.5 (no match)
    out["panoptic_seg"] = (ids, infos)
    person_b = rect(PAN_H, PAN_W, slice(0, 2), slice(0, 8))
    out["instances"] = make_instances([person_b, half_c], [0, 0], [0.9, 0.95])
    out["proposals"] = out["proposals"][[0, 2]]  # no proposal for person_c
    return outputs


def _worker(rank: int, world_size: int, init_file: str, dataset, out_dir: str, with_panoptic: bool) -> None:
    # Spawned children inherit the "spawn" start method; panopticapi's worker pool then
    # re-imports the test session for every worker. Forking is safe here and much faster.
    multiprocessing.set_start_method("fork", force=True)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        assert comm.get_world_size() == world_size and comm.get_rank() == rank
        assert comm.all_gather(rank) == list(range(world_size))
        evaluator = _evaluators(dataset.metadata, distributed=True, with_panoptic=with_panoptic)
        evaluator.reset()
        outputs = _outputs(dataset)
        for i in range(rank, len(dataset.inputs), world_size):
            evaluator.process([dataset.inputs[i]], [outputs[i]])
        results = evaluator.evaluate()
        torch.save(dict(results), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for task in a:
        assert list(a[task]) == list(b[task]), task
        for k, v in a[task].items():
            w = b[task][k]
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w), (task, k, v, w)


@pytest.mark.slow
def test_two_process_gather_matches_single_process(tmp_path):
    dataset = build_panoptic_dataset(str(tmp_path / "data"))
    single = _evaluators(dataset.metadata, distributed=False)
    single.reset()
    for inp, out in zip(dataset.inputs, _outputs(dataset)):
        single.process([inp], [out])
    expected = single.evaluate()
    # Sanity: the imperfect image really lowers the numbers.
    assert expected["sem_seg"]["mIoU"] < 100
    assert not HAVE_PANOPTICAPI or expected["panoptic_seg"]["PQ"] < 100
    assert expected["segm"]["AP"] < 100 and expected["recall"]["R@50"] == pytest.approx(100 * 4 / 5)

    out_dir = tmp_path / "results"
    out_dir.mkdir()
    ctx = mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "dist_init"), dataset, str(out_dir), HAVE_PANOPTICAPI),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("distributed evaluation did not finish in time")

    rank0 = torch.load(out_dir / "rank0.pt", weights_only=False)
    rank1 = torch.load(out_dir / "rank1.pt", weights_only=False)
    assert rank1 == {}
    _assert_same(rank0, dict(expected))
    assert not HAVE_PANOPTICAPI or np.isfinite(rank0["panoptic_seg"]["PQ"])
