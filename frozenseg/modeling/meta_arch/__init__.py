"""Whole models."""

from .frozenseg import FrozenSeg

__all__ = ["FrozenSeg"]
