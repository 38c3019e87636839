"""Training metrics: the event storage and its writers (Detectron2's ``utils/events.py``).

:class:`EventStorage` keeps a history of every scalar put during training (losses, learning
rate, timings, evaluation results). Writers read it periodically:

* :class:`CommonMetricPrinter` — one console line with ETA, iteration, losses, time per
  iteration, data time, learning rate and peak memory;
* :class:`JSONWriter` — one JSON object per logged iteration in ``OUTPUT_DIR/metrics.json``;
* :class:`TensorboardXWriter` — TensorBoard event files in ``OUTPUT_DIR``.

The file writers create their files at the first scalar they write, so a run that fails before
logging anything leaves no empty ``metrics.json`` or event file behind. The recent values of the
smoothed scalars travel in training checkpoints (:meth:`EventStorage.state_dict`), so the
medians logged after a resume are those of an uninterrupted run.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import math
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any

import torch
from fvcore.common.history_buffer import HistoryBuffer

__all__ = [
    "EventStorage",
    "get_event_storage",
    "EventWriter",
    "JSONWriter",
    "TensorboardXWriter",
    "CommonMetricPrinter",
]

logger = logging.getLogger(__name__)

_CURRENT_STORAGE_STACK: list["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The innermost :class:`EventStorage` in use (raises outside a ``with EventStorage()``)."""
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError("get_event_storage() has to be called inside a 'with EventStorage(...)' context!")
    return _CURRENT_STORAGE_STACK[-1]


class EventStorage:
    """Scalar histories indexed by iteration.

    ``put_scalar(name, value)`` records ``value`` at the current iteration (``self.iter``);
    ``smoothing_hint`` tells writers whether to report the median of a recent window (losses,
    timings) or the latest value (learning rate, evaluation metrics).
    """

    #: Values per smoothed scalar kept by :meth:`state_dict` (at least the longest window a
    #: writer uses, :data:`ETA_WINDOW`).
    STATE_LENGTH = 1000

    def __init__(self, start_iter: int = 0):
        self._history: dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: dict[str, bool] = {}
        self._latest_scalars: dict[str, tuple[float, int]] = {}
        self._iter = int(start_iter)

    def put_scalar(self, name: str, value: float, smoothing_hint: bool = True) -> None:
        """Record ``value`` for ``name`` at the current iteration."""
        value = float(value)
        self._history[name].update(value, self._iter)
        self._latest_scalars[name] = (value, self._iter)
        existing = self._smoothing_hints.get(name)
        if existing is not None and existing != smoothing_hint:
            raise ValueError(f"Scalar {name!r} was put with a different smoothing_hint before.")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, **kwargs: float) -> None:
        """Record several scalars: ``storage.put_scalars(loss=1.0, lr=0.1)``."""
        for k, v in kwargs.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint)

    def history(self, name: str) -> HistoryBuffer:
        """The :class:`HistoryBuffer` of ``name``."""
        if name not in self._history:
            raise KeyError(f"No history metric available for {name}!")
        return self._history[name]

    def histories(self) -> dict[str, HistoryBuffer]:
        """Every history, by name."""
        return self._history

    def latest(self) -> dict[str, tuple[float, int]]:
        """``name -> (latest value, iteration it was put at)``."""
        return self._latest_scalars

    def latest_with_smoothing_hint(self, window_size: int = 20) -> dict[str, tuple[float, int]]:
        """Like :meth:`latest`, with smoothed scalars replaced by their median over ``window_size``."""
        out = {}
        for k, (v, itr) in self._latest_scalars.items():
            out[k] = (self._history[k].median(window_size) if self._smoothing_hints[k] else v, itr)
        return out

    def smoothing_hints(self) -> dict[str, bool]:
        """``name -> smoothing_hint``."""
        return self._smoothing_hints

    def state_dict(self) -> dict[str, Any]:
        """The last :attr:`STATE_LENGTH` ``(value, iteration)`` pairs of every smoothed scalar,
        ``{"smoothed": {name: [[value, iteration], ...]}}`` (plain lists, for a checkpoint)."""
        return {"smoothed": {
            k: [[float(v), int(i)] for v, i in self._history[k].values()[-self.STATE_LENGTH:]]
            for k, smooth in self._smoothing_hints.items() if smooth
        }}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put the values of :meth:`state_dict` back into the histories (before new values), so
        the smoothing windows continue where the saved run left them. ``latest()`` is unchanged:
        writers report only what is put after this."""
        for k, values in (state or {}).get("smoothed", {}).items():
            for v, i in values:
                self._history[k].update(float(v), int(i))
            self._smoothing_hints[k] = True

    def step(self) -> None:
        """Advance the iteration counter (called by the trainer after each iteration)."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The current iteration."""
        return self._iter

    @iter.setter
    def iter(self, val: int) -> None:
        self._iter = int(val)

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        assert _CURRENT_STORAGE_STACK[-1] is self
        _CURRENT_STORAGE_STACK.pop()

    @contextmanager
    def name_scope(self, name: str):  # pragma: no cover - convenience, Detectron2 API
        """Detectron2 compatibility: a no-op scope."""
        yield


class EventWriter:
    """Base class of writers: ``write()`` is called periodically, ``close()`` at the end."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """Append one JSON object per logged iteration to a file (``OUTPUT_DIR/metrics.json``).

    Each object holds ``"iteration"`` and every scalar put since the previous write (smoothed
    scalars as the median of the last ``window_size`` values), one line per iteration.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        self._json_file = json_file
        self._file_handle = None  # opened (appending) at the first line to write
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        to_save: dict[int, dict[str, Any]] = defaultdict(dict)
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr <= self._last_write:
                continue
            to_save[itr][k] = v if math.isfinite(v) else None
        if not to_save:
            return
        self._last_write = max(to_save)
        if self._file_handle is None:
            os.makedirs(os.path.dirname(os.path.abspath(self._json_file)), exist_ok=True)
            self._file_handle = open(self._json_file, "a", encoding="utf-8")
        for itr, scalars in sorted(to_save.items()):
            scalars["iteration"] = itr
            self._file_handle.write(json.dumps(scalars, sort_keys=True) + "\n")
        self._file_handle.flush()
        try:
            os.fsync(self._file_handle.fileno())
        except (AttributeError, OSError):
            pass

    def close(self) -> None:
        if self._file_handle is not None:
            self._file_handle.close()


class TensorboardXWriter(EventWriter):
    """Write scalars to TensorBoard event files with ``torch.utils.tensorboard``.

    Needs the ``tensorboard`` package; without it a warning is logged once and nothing is written.
    The event file is created at the first scalar to write.
    """

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any):
        self._window_size = window_size
        self._last_write = -1
        self._writer = None
        self._summary_writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard not installed
            logger.warning("TensorBoard event files are not written (%s); pip install tensorboard.", e)
            return
        self._summary_writer = functools.partial(SummaryWriter, log_dir, **kwargs)

    def write(self) -> None:
        if self._summary_writer is None:
            return
        storage = get_event_storage()
        new = [(k, v, itr) for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items()
               if itr > self._last_write]
        if not new:
            return
        if self._writer is None:
            self._writer = self._summary_writer()
        for k, v, itr in new:
            self._writer.add_scalar(k, v, itr)
        self._last_write = max(itr for _, _, itr in new)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


#: Iterations whose median time gives the ETA: recent, so that the ETA follows the current speed
#: (a training loop slowed by another process on the machine) within a few dozen iterations,
#: and a median, so that one slow iteration (an evaluation, a checkpoint) does not move it.
ETA_WINDOW = 50


class CommonMetricPrinter(EventWriter):
    """Console line: ``eta  iter  total_loss  loss_*  time  data_time  lr  max_mem``.

    ``eta`` = median time of the last :data:`ETA_WINDOW` iterations × the iterations left.

    Only the main loss terms (names without a ``_<digit>`` auxiliary suffix) are printed, to
    keep the line readable; every term is still in ``metrics.json`` and TensorBoard.
    """

    def __init__(self, max_iter: int | None = None, window_size: int = 20):
        self.logger = logging.getLogger("frozenseg.engine.train")
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_write: tuple[int, float] | None = None

    def _get_eta(self, storage: EventStorage) -> str | None:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        try:
            eta_seconds = storage.history("time").median(ETA_WINDOW) * (self._max_iter - iteration - 1)
            storage.put_scalar("eta_seconds", eta_seconds, smoothing_hint=False)
            return str(datetime.timedelta(seconds=int(eta_seconds)))
        except KeyError:
            # no "time" yet (e.g. the first iterations): estimate from the wall clock
            eta = None
            if self._last_write is not None:
                per_iter = (time.perf_counter() - self._last_write[1]) / max(iteration - self._last_write[0], 1)
                eta = str(datetime.timedelta(seconds=int(per_iter * (self._max_iter - iteration - 1))))
            self._last_write = (iteration, time.perf_counter())
            return eta

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if self._max_iter is not None and iteration == self._max_iter:
            return  # after training: nothing new to print
        latest = storage.latest()

        def fmt(name: str, spec: str = ".4f") -> str | None:
            if name not in latest:
                return None
            h = storage.history(name)
            return format(h.avg(self._window_size) if name.endswith("time") else h.median(self._window_size), spec)

        eta = self._get_eta(storage)
        losses = [
            f"{k}: {storage.history(k).median(self._window_size):.4g}"
            for k in latest
            if k == "total_loss" or (k.startswith("loss_") and not k.split("_")[-1].isdigit())
        ]
        iter_time, data_time = fmt("time"), fmt("data_time")
        lr = f"{latest['lr'][0]:.5g}" if "lr" in latest else "N/A"
        max_mem = None
        if torch.cuda.is_available():
            max_mem = torch.cuda.max_memory_allocated() / 1024.0 / 1024.0
        parts = [
            f"eta: {eta}" if eta else "",
            f"iter: {iteration}",
            "  ".join(losses),
            f"time: {iter_time}" if iter_time is not None else "",
            f"data_time: {data_time}" if data_time is not None else "",
            f"lr: {lr}",
            f"max_mem: {max_mem:.0f}M" if max_mem is not None else "",
        ]
        self.logger.info("  ".join(p for p in parts if p))
