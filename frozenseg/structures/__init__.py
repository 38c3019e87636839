"""Containers passed between data, model, evaluation and the applications (``ImageList``,
``Instances``, ``Prediction``); no logic beyond padding, field access and summaries.
"""

from .image_list import ImageList, padded_size, same_padded_size_groups
from .instances import Instances
from .prediction import Prediction

__all__ = ["ImageList", "Instances", "Prediction", "padded_size", "same_padded_size_groups"]
