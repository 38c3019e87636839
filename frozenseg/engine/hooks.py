"""Training hooks (Detectron2's ``engine/hooks.py``): timing, LR scheduling, checkpoints,
periodic evaluation and metric writing."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any, Callable

from fvcore.common.checkpoint import PeriodicCheckpointer as _FvPeriodicCheckpointer
from fvcore.common.timer import Timer

from ..utils import comm
from .events import EventWriter
from .train_loop import HookBase

__all__ = [
    "CallbackHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "PeriodicWriter",
    "flatten_results_dict",
]

logger = logging.getLogger(__name__)


class CallbackHook(HookBase):
    """A hook made of optional functions ``f(trainer)``."""

    def __init__(self, *, before_train=None, after_train=None, before_step=None, after_step=None):
        self._callbacks = {"before_train": before_train, "after_train": after_train,
                           "before_step": before_step, "after_step": after_step}

    def _call(self, stage: str) -> None:
        fn = self._callbacks[stage]
        if fn:
            fn(self.trainer)

    def before_train(self):
        self._call("before_train")

    def after_train(self):
        self._call("after_train")

    def before_step(self):
        self._call("before_step")

    def after_step(self):
        self._call("after_step")


class IterationTimer(HookBase):
    """Puts ``time`` (seconds of ``run_step``) per iteration and logs the total training time.

    Register it first so its ``after_step`` runs before the other hooks'.
    """

    def __init__(self, warmup_iter: int = 3):
        self._warmup_iter = warmup_iter
        self._step_timer = Timer()
        self._start_time = time.perf_counter()
        self._total_timer = Timer()

    def before_train(self):
        self._start_time = time.perf_counter()
        self._total_timer.reset()
        self._total_timer.pause()

    def after_train(self):
        total_time = time.perf_counter() - self._start_time
        total_time_minus_hooks = self._total_timer.seconds()
        hook_time = total_time - total_time_minus_hooks
        num_iter = self.trainer.storage.iter + 1 - self.trainer.start_iter - self._warmup_iter
        if num_iter > 0 and total_time_minus_hooks > 0:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                num_iter, str(datetime.timedelta(seconds=int(total_time_minus_hooks))),
                total_time_minus_hooks / num_iter,
            )
        logger.info(
            "Total training time: %s (%s on hooks)",
            str(datetime.timedelta(seconds=int(total_time))),
            str(datetime.timedelta(seconds=int(hook_time))),
        )

    def before_step(self):
        self._step_timer.reset()
        self._total_timer.resume()

    def after_step(self):
        iter_done = self.trainer.storage.iter - self.trainer.start_iter + 1
        if iter_done >= self._warmup_iter:
            self.trainer.storage.put_scalar("time", self._step_timer.seconds())
        else:
            self._start_time = time.perf_counter()
            self._total_timer.reset()
        self._total_timer.pause()


class LRScheduler(HookBase):
    """Puts the learning rate used in this iteration (``lr``) and steps the scheduler."""

    def __init__(self, optimizer=None, scheduler=None):
        self._optimizer = optimizer
        self._scheduler = scheduler

    def before_train(self):
        self._optimizer = self._optimizer or self.trainer.optimizer
        self._scheduler = self._scheduler or self.trainer.scheduler
        # report the group with the most parameters (the decoder's main group)
        groups = self._optimizer.param_groups
        self._best_index = max(range(len(groups)), key=lambda i: sum(p.numel() for p in groups[i]["params"]))

    def after_step(self):
        lr = self._optimizer.param_groups[self._best_index]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}.pth`` every ``period`` iterations and ``model_final.pth`` at the
    end (fvcore's ``PeriodicCheckpointer``), with the iteration, seed and data position."""

    def __init__(self, checkpointer, period: int, max_iter: int | None = None,
                 extra_state: Callable[[], dict[str, Any]] | None = None, file_prefix: str = "model"):
        self._period = int(period)
        self._fv = _FvPeriodicCheckpointer(checkpointer, self._period, max_iter=max_iter, file_prefix=file_prefix)
        self._extra_state = extra_state

    def before_train(self):
        self._fv.max_iter = self.trainer.max_iter

    def after_step(self):
        it = self.trainer.iter
        if (it + 1) % self._period and it < self.trainer.max_iter - 1:
            return  # fvcore's step saves nothing now: skip gathering the extra state
        extra = self._extra_state() if self._extra_state is not None else {}
        self._fv.step(it, **extra)


def flatten_results_dict(results: Mapping, prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}`` (scalars only)."""
    out: dict[str, float] = {}
    for k, v in results.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_results_dict(v, key))
        else:
            try:
                out[key] = float(v)
            except (TypeError, ValueError):
                continue
    return out


class EvalHook(HookBase):
    """Runs ``eval_function()`` every ``period`` iterations and after the last one.

    ``period <= 0`` evaluates only at the end. The flattened results are put in the event
    storage (so they reach ``metrics.json`` and TensorBoard) and kept in ``last_results``.
    """

    def __init__(self, period: int, eval_function: Callable[[], Mapping]):
        self._period = int(period)
        self._func = eval_function
        self.last_results: Mapping | None = None

    def _do_eval(self):
        results = self._func()
        if results and comm.is_main_process():
            flat = flatten_results_dict(results)
            for k, v in flat.items():
                self.trainer.storage.put_scalar(k, v, smoothing_hint=False)
        self.last_results = results
        comm.synchronize()

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self):
        # only after a completed run (not when training stopped with an exception)
        if self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()
        del self._func  # release references to the model and data


class PeriodicWriter(HookBase):
    """Calls every writer every ``period`` iterations, at the last iteration and at the end."""

    def __init__(self, writers: list[EventWriter], period: int = 20):
        self._writers = writers
        self._period = int(period)

    def after_step(self):
        if (self.trainer.iter + 1) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1:
            for w in self._writers:
                w.write()

    def after_train(self):
        for w in self._writers:
            w.write()
            w.close()
