"""The training loop: hooks, the iteration-based trainer and one optimiser step.

As in Detectron2, :class:`TrainerBase` runs ``before_train``, then for each iteration
``before_step`` / ``run_step`` / ``after_step``, then ``after_train``, calling the same methods of
its hooks in order. :class:`SimpleTrainer` implements ``run_step``: one optimiser step made of
``GRAD_ACCUM_STEPS`` micro-batches, with optional mixed precision (fp16 with a gradient scaler,
or bf16), gradient clipping and a stop on a non-finite loss.

Randomness inside the model (e.g. the criterion's random point sampling) is reseeded at every
iteration from ``(seed, iteration, rank)``, so a resumed run draws the same random numbers as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import weakref
from typing import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..utils import comm
from ..utils.errors import ConfigValueError, debug_enabled, is_user_error
from ..utils.rng import derive_seed, seed_all_rng
from .events import EventStorage, get_event_storage

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "check_finite_losses", "amp_settings"]

logger = logging.getLogger(__name__)


class HookBase:
    """Base class of training hooks; ``self.trainer`` is set (as a weak proxy) on registration."""

    trainer: "TrainerBase"

    def before_train(self) -> None:
        """Called before the first iteration."""

    def after_train(self) -> None:
        """Called after the last iteration (also when training stops with an exception)."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def state_dict(self) -> dict:
        """Hooks are stateless by default."""
        return {}


class TrainerBase:
    """Iteration-based training loop with hooks.

    Attributes: ``iter`` (current iteration), ``start_iter``, ``max_iter`` (exclusive),
    ``storage`` (the :class:`EventStorage` of this run) and ``storage_state`` (an
    :meth:`EventStorage.state_dict` put into the new storage when training starts, e.g. the
    smoothing windows of the checkpoint resumed from; None for none).
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: EventStorage
        self.storage_state: dict | None = None

    def register_hooks(self, hooks: Iterable[HookBase | None]) -> None:
        """Append hooks (``None`` entries are skipped); they run in registration order."""
        for h in hooks:
            if h is None:
                continue
            if not isinstance(h, HookBase):
                raise TypeError(f"{h!r} is not a HookBase.")
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter .. max_iter - 1``."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = int(start_iter)
        self.max_iter = int(max_iter)
        with EventStorage(start_iter) as self.storage:
            if self.storage_state:
                self.storage.load_state_dict(self.storage_state)
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                # iter == max_iter tells after_train hooks that the run completed
                self.iter = max(self.max_iter, self.start_iter)
            except Exception as e:
                if is_user_error(e) and not debug_enabled():
                    logger.error("Training stopped: %s", e)  # one sentence; the caller reports it
                else:
                    logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError


def check_finite_losses(loss_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise ``FloatingPointError`` naming the iteration and the first non-finite loss term."""
    bad = []
    for k, v in loss_dict.items():
        value = float(v.detach().float().sum()) if isinstance(v, torch.Tensor) else float(v)
        if not math.isfinite(value):
            bad.append((k, value))
    if bad:
        k, v = bad[0]
        more = f" (also non-finite: {', '.join(f'{n}={x}' for n, x in bad[1:])})" if len(bad) > 1 else ""
        raise FloatingPointError(f"Loss became infinite or NaN at iteration={iteration}: {k}={v}{more}")


def amp_settings(cfg, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a gradient scaler)`` from ``SOLVER.AMP.*`` for ``device``.

    fp16 autocast needs CUDA (with a gradient scaler); on a CPU it falls back to float32 with a
    warning. bf16 works on CUDA and CPU and needs no scaler.
    """
    if not cfg.SOLVER.AMP.ENABLED:
        return None, False
    name = str(cfg.SOLVER.AMP.DTYPE).lower()
    if name in ("float16", "fp16", "half"):
        if device.type != "cuda":
            logger.warning(
                "SOLVER.AMP.DTYPE float16 needs CUDA; training in float32 on %s "
                "(set SOLVER.AMP.DTYPE bfloat16 for bf16 autocast on a CPU).", device,
            )
            return None, False
        return torch.float16, True
    if name in ("bfloat16", "bf16"):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError("SOLVER.AMP.DTYPE bfloat16 is not supported by this GPU; use float16.")
        return torch.bfloat16, False
    raise ConfigValueError(f"Unknown SOLVER.AMP.DTYPE {cfg.SOLVER.AMP.DTYPE!r}; use 'float16' or 'bfloat16'.")


class SimpleTrainer(TrainerBase):
    """One optimiser step per iteration over ``grad_accum_steps`` micro-batches.

    Args:
        model: the model (optionally DDP-wrapped) returning a dict of weighted losses.
        data_loader: iterable of micro-batches (``list[dict]``); may be set later (before train).
        optimizer: the optimiser.
        grad_accum_steps: micro-batches per optimiser step; DDP gradient synchronisation only
            happens on the last one (``no_sync``).
        amp_dtype: autocast dtype (``torch.float16`` / ``torch.bfloat16``) or ``None``.
        grad_scaler: a ``torch.amp.GradScaler`` (fp16) or ``None``.
        clip_fn: called with the trainable parameters after unscaling, before the step.
        seed: base of the per-iteration reseeding of the model's randomness.
    """

    def __init__(self, model: nn.Module, data_loader, optimizer: torch.optim.Optimizer, *,
                 grad_accum_steps: int = 1, amp_dtype: torch.dtype | None = None,
                 grad_scaler: "torch.amp.GradScaler | None" = None,
                 clip_fn: Callable[[list[nn.Parameter]], float | None] | None = None, seed: int = 0):
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj = None
        self.optimizer = optimizer
        self.grad_accum_steps = int(grad_accum_steps)
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}.")
        self.amp_dtype = amp_dtype
        self.grad_scaler = grad_scaler
        self.clip_fn = clip_fn
        self.seed = int(seed)
        self._params = [p for g in optimizer.param_groups for p in g["params"]]

    @property
    def unwrapped_model(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    @property
    def _data_loader_iter(self):
        if self._data_loader_iter_obj is None:
            if self.data_loader is None:
                raise RuntimeError("SimpleTrainer has no data loader.")
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def _device_type(self) -> str:
        try:
            return next(self.unwrapped_model.parameters()).device.type
        except StopIteration:
            return "cpu"

    def run_step(self) -> None:
        """Accumulate ``grad_accum_steps`` micro-batches, then clip and step the optimiser."""
        assert self.model.training, "SimpleTrainer: the model was changed to eval mode!"
        seed_all_rng(derive_seed(self.seed, self.iter, comm.get_rank(), 0x5EED))
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.grad_accum_steps
        device_type = self._device_type()
        data_time = 0.0
        loss_sums: dict[str, float] = {}
        for step in range(accum):
            start = time.perf_counter()
            data = next(self._data_loader_iter)
            data_time += time.perf_counter() - start
            last = step == accum - 1
            sync_ctx = (
                self.model.no_sync()
                if (not last and isinstance(self.model, DistributedDataParallel))
                else contextlib.nullcontext()
            )
            with sync_ctx:
                amp_ctx = (
                    torch.autocast(device_type=device_type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None
                    else contextlib.nullcontext()
                )
                with amp_ctx:
                    try:
                        loss_dict = self.model(data)
                    except FloatingPointError as e:  # diverged before any loss (e.g. at matching)
                        raise FloatingPointError(f"Training diverged at iteration={self.iter}: {e}.") from None
                if isinstance(loss_dict, torch.Tensor):
                    loss_dict = {"total_loss": loss_dict}
                check_finite_losses(loss_dict, self.iter)
                losses = sum(v.float() for v in loss_dict.values()) / accum
                if self.grad_scaler is not None:
                    self.grad_scaler.scale(losses).backward()
                else:
                    losses.backward()
            for k, v in loss_dict.items():
                loss_sums[k] = loss_sums.get(k, 0.0) + float(v.detach().float()) / accum

        grad_norm = None
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)
        if self.clip_fn is not None:
            grad_norm = self.clip_fn(self._params)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self._write_metrics(loss_sums, data_time, grad_norm)

    def _write_metrics(self, loss_dict: dict[str, float], data_time: float, grad_norm: float | None) -> None:
        """Average the loss terms over processes and put them in the event storage."""
        metrics = dict(loss_dict)
        metrics["data_time"] = data_time
        metrics = comm.reduce_dict(metrics, average=True)
        storage = get_event_storage()
        data_time = metrics.pop("data_time")
        storage.put_scalar("data_time", data_time)
        total = sum(metrics.values())
        if not math.isfinite(total):  # cannot happen after check_finite_losses; kept as a guard
            raise FloatingPointError(f"Loss became infinite or NaN at iteration={self.iter}: total_loss={total}")
        storage.put_scalar("total_loss", total)
        storage.put_scalars(**metrics)
        if grad_norm is not None:
            storage.put_scalar("grad_norm", grad_norm)
        if self.grad_scaler is not None:
            storage.put_scalar("amp_scale", float(self.grad_scaler.get_scale()))
