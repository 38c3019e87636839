"""Containers passed between data, model and evaluation (``ImageList``, ``Instances``); no logic
beyond padding and field access.
"""

from .image_list import ImageList
from .instances import Instances

__all__ = ["ImageList", "Instances"]
