"""Learning-rate schedules with warm-up: ``WarmupMultiStepLR`` and ``WarmupPolyLR``.

Semantics are those of Detectron2 / Mask2Former: at iteration ``it`` (0-based) the learning rate
of each parameter group is ``base_lr * warmup(it) * schedule(it / max_iter)``, where the warm-up
factor goes linearly from ``warmup_factor`` to 1 over ``warmup_iters`` iterations ("linear") or
stays at ``warmup_factor`` during them ("constant"). The decay schedules are fvcore's
:mod:`fvcore.common.param_scheduler` (``MultiStepParamScheduler``,
``PolynomialDecayParamScheduler``). The scheduler is stepped once per optimiser step, and the
rate is a closed form of the iteration, so restoring ``last_epoch`` from a checkpoint gives
exactly the same rates.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from fvcore.common.param_scheduler import (
    MultiStepParamScheduler,
    ParamScheduler,
    PolynomialDecayParamScheduler,
)
from torch.optim.lr_scheduler import LRScheduler

from ..utils.errors import ConfigValueError

__all__ = ["WarmupLR", "WarmupMultiStepLR", "WarmupPolyLR", "warmup_factor_at_iter", "build_lr_scheduler"]

logger = logging.getLogger(__name__)


def warmup_factor_at_iter(method: str, it: int, warmup_iters: int, warmup_factor: float) -> float:
    """Warm-up multiplier at iteration ``it`` (1.0 once ``it >= warmup_iters``)."""
    if it >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = it / warmup_iters
        return warmup_factor * (1 - alpha) + alpha
    raise ConfigValueError(f"Unknown SOLVER.WARMUP_METHOD {method!r}; use 'linear' or 'constant'.")


class WarmupLR(LRScheduler):
    """``base_lr * warmup(it) * schedule(it / max_iter)`` for an fvcore ``ParamScheduler``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: ParamScheduler,
        max_iter: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ):
        if max_iter <= 0:
            raise ConfigValueError(f"SOLVER.MAX_ITER must be positive, got {max_iter}.")
        warmup_factor_at_iter(warmup_method, 0, 1, warmup_factor)  # validates the method
        self.schedule = schedule
        self.max_iter = int(max_iter)
        self.warmup_factor = float(warmup_factor)
        self.warmup_iters = int(warmup_iters)
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    _STATE_KEYS = ("base_lrs", "last_epoch", "_step_count", "_last_lr")

    def state_dict(self) -> dict:
        """The position in the schedule (iteration and base rates); the schedule itself comes
        from the config, so a run resumed with a longer ``SOLVER.MAX_ITER`` follows the new one."""
        return {k: self.__dict__[k] for k in self._STATE_KEYS if k in self.__dict__}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the position and set the optimiser's rates from this schedule."""
        self.__dict__.update({k: v for k, v in state_dict.items() if k in self._STATE_KEYS})
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def factor(self, it: int) -> float:
        """The multiplier of the base learning rate at iteration ``it``."""
        where = min(max(it / self.max_iter, 0.0), 1.0)
        main = float(self.schedule(where))
        return warmup_factor_at_iter(self.warmup_method, it, self.warmup_iters, self.warmup_factor) * main

    def get_lr(self) -> list[float]:  # type: ignore[override]
        f = self.factor(self.last_epoch)
        return [base_lr * f for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class WarmupMultiStepLR(WarmupLR):
    """Multiply the rate by ``gamma`` at each milestone iteration (Detectron2's default)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        max_iter: int,
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ):
        milestones = [int(m) for m in milestones]
        if list(milestones) != sorted(milestones):
            raise ConfigValueError(f"SOLVER.STEPS must be increasing, got {milestones}.")
        kept = [m for m in milestones if m <= max_iter]
        if len(kept) != len(milestones):
            logger.warning("SOLVER.STEPS %s beyond SOLVER.MAX_ITER %d are ignored.", milestones, max_iter)
        self.milestones = kept
        self.gamma = gamma
        if kept:
            schedule = MultiStepParamScheduler(
                values=[gamma**k for k in range(len(kept) + 1)], milestones=kept, num_updates=max_iter
            )
        else:
            schedule = MultiStepParamScheduler(values=[1.0], milestones=[], num_updates=max_iter)
        super().__init__(optimizer, schedule, max_iter, warmup_factor, warmup_iters, warmup_method, last_epoch)


class WarmupPolyLR(WarmupLR):
    """Polynomial decay ``(1 - it / max_iter) ** power`` (Mask2Former's ``WarmupPolyLR``).

    With ``constant_ending > 0`` and no warm-up left, the factor never goes below it.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
        power: float = 0.9,
        constant_ending: float = 0.0,
    ):
        self.power = power
        self.constant_ending = constant_ending
        schedule = PolynomialDecayParamScheduler(base_value=1.0, power=power)
        super().__init__(optimizer, schedule, max_iter, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def factor(self, it: int) -> float:
        f = super().factor(it)
        if self.constant_ending > 0 and it >= self.warmup_iters:
            f = max(f, self.constant_ending)
        return f


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> WarmupLR:
    """The scheduler named by ``SOLVER.LR_SCHEDULER_NAME`` with the ``SOLVER.*`` settings."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    common = dict(
        max_iter=s.MAX_ITER,
        warmup_factor=s.WARMUP_FACTOR,
        warmup_iters=s.WARMUP_ITERS,
        warmup_method=s.WARMUP_METHOD,
    )
    if name == "WarmupMultiStepLR":
        return WarmupMultiStepLR(optimizer, s.STEPS, gamma=s.GAMMA, **common)
    if name == "WarmupPolyLR":
        return WarmupPolyLR(optimizer, power=s.POLY_LR_POWER, constant_ending=s.POLY_LR_CONSTANT_ENDING, **common)
    raise ConfigValueError(f"Unknown SOLVER.LR_SCHEDULER_NAME {name!r}; use 'WarmupMultiStepLR' or 'WarmupPolyLR'.")
