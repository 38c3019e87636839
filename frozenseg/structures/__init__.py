"""Containers passed between data, model and evaluation (``ImageList``, ``Instances``); no logic
beyond padding and field access.
"""

from .image_list import ImageList, padded_size, same_padded_size_groups
from .instances import Instances

__all__ = ["ImageList", "Instances", "padded_size", "same_padded_size_groups"]
