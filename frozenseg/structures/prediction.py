"""The result of segmenting one image, as the predictor, the demos and the writers see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """Result of one image.

    ``image``: the (H, W, 3) uint8 RGB input. ``ids``: (H, W) int64 map: segment ids (0 = none)
    for panoptic and instance, class indices for semantic (``none_value`` = unassigned). Where
    instances overlap, the higher-scoring one is shown. ``segments``: one dict per segment
    (``id``, ``category_id``, ``class``, ``class_name``, ``isthing``, ``score`` (None when the
    task has none), ``area`` (pixels), ``bbox`` [x, y, w, h] in pixels). ``class_colors``: the
    vocabulary's own RGB colour per class (a dataset's), or None. ``seconds``: inference time.
    ``reused_image_features``: True when the image's vocabulary-free features came from the
    predictor's image cache (only the classification and post-processing ran).
    """

    task: str
    image: np.ndarray
    ids: np.ndarray
    none_value: int
    segments: list[dict[str, Any]]
    class_names: list[str]
    seconds: float
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    source: str = ""
    class_colors: list[tuple[int, int, int]] | None = None
    reused_image_features: bool = False

    def summary(self) -> str:
        """``"4 segments (2 cat, 1 dog, 1 grass)"``."""
        counts: dict[str, int] = {}
        for s in self.segments:
            counts[s["class"]] = counts.get(s["class"], 0) + 1
        parts = [f"{n} {c}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        if len(parts) > 6:
            parts = parts[:6] + [f"... {len(parts) - 6} more classes"]
        noun = "segment" if len(self.segments) == 1 else "segments"
        return f"{len(self.segments)} {noun}" + (f" ({', '.join(parts)})" if parts else "")

    def to_json(self) -> dict[str, Any]:
        """The JSON record of the prediction (without the id map)."""
        return {
            "image": self.source,
            "height": int(self.ids.shape[0]),
            "width": int(self.ids.shape[1]),
            "task": self.task,
            "num_classes": len(self.class_names),
            "ids_meaning": "class index" if self.task == "semantic" else "segment id",
            "none_value": int(self.none_value),
            "seconds": round(float(self.seconds), 4),
            "segments": self.segments,
            "classes": list(self.class_names),
        }
