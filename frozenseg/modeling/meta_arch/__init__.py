"""Whole models."""

from .frozenseg import FrozenSeg, Vocabulary

__all__ = ["FrozenSeg", "Vocabulary"]
