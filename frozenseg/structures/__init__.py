"""Containers passed between data, model, evaluation and the applications (``ImageList``,
``Instances``, ``Prediction``, ``SemanticScores``); no logic beyond padding, field access and summaries.
"""

from .image_list import ImageList, padded_size, same_padded_size_groups
from .instances import Instances
from .prediction import Prediction
from .semantic import SemanticScores, SemanticSummary, semantic_scores

__all__ = ["ImageList", "Instances", "Prediction", "SemanticScores", "SemanticSummary", "padded_size", "semantic_scores", "same_padded_size_groups"]
