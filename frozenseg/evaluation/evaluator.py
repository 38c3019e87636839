"""Evaluator protocol, evaluator lists, the inference loop and the "copypaste" result printer.

The protocol is Detectron2's: an evaluator is ``reset()`` before a pass over the dataset, fed
every batch with ``process(inputs, outputs)`` and asked for ``evaluate()`` at the end, which
returns ``{task: {metric: value}}`` on the main process (and ``{}`` on the other ranks of a
distributed run).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, MutableSequence
from contextlib import ExitStack, contextmanager
from typing import Any, Iterable

import torch
from torch import nn

from ..modeling.contract import SegmentationModel
from ..utils import comm

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "inference_on_dataset",
    "inference_context",
    "print_csv_format",
]

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Base class of dataset evaluators (Detectron2 protocol).

    Subclasses accumulate per-batch statistics in :meth:`process` and compute the final metrics
    in :meth:`evaluate`. In a distributed run each process sees part of the dataset; ``evaluate``
    gathers the partial state to rank 0, which returns the results; the other ranks return ``{}``.
    """

    #: True when :meth:`process` reads Detectron2's full (K, H, W) ``"sem_seg"`` tensor; the
    #: package's evaluators read ``"sem_seg_scores"`` instead and set it False, so evaluation
    #: memory does not grow with the number of classes.
    needs_full_semantic_map: bool = True

    def reset(self) -> None:
        """Prepare for a new pass over the dataset (clears accumulated state)."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Accumulate one batch: ``inputs`` are the model inputs, ``outputs`` the model outputs."""

    def evaluate(self) -> dict:
        """Return ``{task_name: {metric_name: value}}`` (``{}`` on non-main ranks)."""
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Runs several evaluators as one and merges their results (task names must be unique)."""

    def __init__(self, evaluators: Iterable[DatasetEvaluator]):
        super().__init__()
        self._evaluators = list(evaluators)

    @property
    def evaluators(self) -> list[DatasetEvaluator]:
        """The wrapped evaluators, in order."""
        return list(self._evaluators)

    def __len__(self) -> int:
        return len(self._evaluators)

    @property
    def needs_full_semantic_map(self) -> bool:  # type: ignore[override]
        return any(getattr(e, "needs_full_semantic_map", True) for e in self._evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict:
        results: dict = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if comm.is_main_process() and result is not None:
                for k, v in result.items():
                    if k in results:
                        raise KeyError(f"Different evaluators produce results with the same key {k!r}.")
                    results[k] = v
        return results


@contextmanager
def inference_context(model: nn.Module):
    """Put ``model`` in eval mode for the duration of the block, then restore its mode."""
    training_mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training_mode)


@contextmanager
def semantic_map_context(model: SegmentationModel, full: bool):
    """Within the context ``model.full_semantic_map`` is ``full``; restored on exit."""
    before = model.full_semantic_map
    model.full_semantic_map = full
    try:
        yield
    finally:
        model.full_semantic_map = before


def _progress_bar(iterable, total: int):
    """Wrap ``iterable`` in a tqdm bar on the main process when tqdm is installed."""
    if not comm.is_main_process():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc="inference", leave=False, dynamic_ncols=True)


def inference_on_dataset(
    model: nn.Module | Any,
    data_loader: Iterable[list[dict]],
    evaluator: DatasetEvaluator | list[DatasetEvaluator] | None,
    log_period_s: float = 5.0,
) -> dict:
    """Run ``model`` over ``data_loader`` and evaluate with ``evaluator`` (Detectron2 semantics).

    The model runs in eval mode (when it is an ``nn.Module``) under ``torch.no_grad()``; each
    batch is a list of input dicts and the model returns a list of output dicts. Progress goes
    to a tqdm bar (main process, when tqdm is installed) and to the log every ``log_period_s``
    seconds with data/compute/eval timings and an ETA; the totals are logged at the end.
    The first ``min(5, N - 1)`` batches are warm-up and are excluded from the timings.

    Returns the evaluator's results (``{}`` on non-main ranks or without an evaluator).
    """
    num_devices = comm.get_world_size()
    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = 0
    logger.info("Start inference on %d batches", total)

    if evaluator is None:
        evaluator = DatasetEvaluators([])
    if isinstance(evaluator, MutableSequence):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()

    num_warmup = max(min(5, total - 1), 0)
    start_time = time.perf_counter()
    total_data_time = total_compute_time = total_eval_time = 0.0
    last_log = time.perf_counter()
    n_done = 0
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        if isinstance(model, SegmentationModel):
            stack.enter_context(semantic_map_context(model, getattr(evaluator, "needs_full_semantic_map", True)))
        stack.enter_context(torch.no_grad())

        start_data_time = time.perf_counter()
        for idx, inputs in enumerate(_progress_bar(data_loader, total)):
            total_data_time += time.perf_counter() - start_data_time
            if idx == num_warmup:
                start_time = time.perf_counter()
                total_data_time = total_compute_time = total_eval_time = 0.0

            start_compute_time = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            total_compute_time += time.perf_counter() - start_compute_time

            start_eval_time = time.perf_counter()
            evaluator.process(inputs, outputs)
            total_eval_time += time.perf_counter() - start_eval_time
            n_done = idx + 1

            iters_after_start = idx + 1 - num_warmup * int(idx >= num_warmup)
            now = time.perf_counter()
            if now - last_log >= log_period_s and iters_after_start > 0:
                last_log = now
                data_s = total_data_time / iters_after_start
                compute_s = total_compute_time / iters_after_start
                eval_s = total_eval_time / iters_after_start
                total_s = (now - start_time) / iters_after_start
                eta = datetime.timedelta(seconds=int(total_s * max(total - idx - 1, 0)))
                logger.info(
                    "Inference done %d/%d. Dataloading: %.4f s/iter. Inference: %.4f s/iter. "
                    "Eval: %.4f s/iter. Total: %.4f s/iter. ETA=%s",
                    idx + 1, total, data_s, compute_s, eval_s, total_s, eta,
                )
            start_data_time = time.perf_counter()

    total_time = time.perf_counter() - start_time
    timed = max(n_done - num_warmup, 1)
    logger.info(
        "Total inference time: %s (%.6f s / iter per device, on %d devices)",
        datetime.timedelta(seconds=int(total_time)), total_time / timed, num_devices,
    )
    logger.info(
        "Total inference pure compute time: %s (%.6f s / iter per device, on %d devices)",
        datetime.timedelta(seconds=int(total_compute_time)), total_compute_time / timed, num_devices,
    )

    results = evaluator.evaluate()
    # An evaluator may return None on non-main ranks; callers expect a dict.
    return {} if results is None else results


def print_csv_format(results: Mapping) -> None:
    """Log ``results`` in Detectron2's "copypaste" format.

    For every task with a dict of metrics, three lines are logged: ``copypaste: Task: <task>``,
    ``copypaste: <comma-separated metric names>`` and ``copypaste: <values as {:.4f}>``; metric
    names containing ``-`` (per-category entries such as ``IoU-person``) are left out, as in
    Detectron2. A non-dict result is logged as ``copypaste: <task>=<value>``.
    """
    if not (isinstance(results, Mapping) or not len(results)):
        raise TypeError(f"results must be a mapping, got {type(results)}")
    for task, res in results.items():
        if isinstance(res, Mapping):
            important = [(k, v) for k, v in res.items() if "-" not in k]
            logger.info("copypaste: Task: {}".format(task))
            logger.info("copypaste: " + ",".join([k for k, _ in important]))
            logger.info("copypaste: " + ",".join(["{0:.4f}".format(v) for _, v in important]))
        else:
            logger.info(f"copypaste: {task}={res}")
