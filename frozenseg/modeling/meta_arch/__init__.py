"""Whole models."""

from .frozenseg import FrozenSeg, Vocabulary, seen_classes, training_vocabulary

__all__ = ["FrozenSeg", "Vocabulary", "seen_classes", "training_vocabulary"]
