"""Containers passed between data, model and evaluation."""

from .image_list import ImageList
from .instances import Instances

__all__ = ["ImageList", "Instances"]
