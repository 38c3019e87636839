"""Seeding of the global random number generators (Python, numpy, torch) and derived seeds.

Shared by the trainer (per-iteration reseeding of the model's randomness) and the training data
stream (per-sample reseeding of the mapper's augmentation), so both are pure functions of
``(seed, position)`` and resume exactly.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["derive_seed", "seed_all_rng", "rng_state", "set_rng_state"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers with numpy's SeedSequence (well mixed, stable)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def seed_all_rng(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> tuple:
    """The global RNG states of Python, numpy and torch (CPU)."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_rng_state(state: tuple) -> None:
    """Restore states returned by :func:`rng_state`."""
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
