"""Writing a prediction of :class:`frozenseg.engine.predictor.SegmentationPredictor` to files.

:func:`write_prediction` writes three files per image, each atomically
(:func:`frozenseg.utils.file_io.atomic_write`):

* ``<stem>_overlay.png`` (or the ``.png`` / ``.jpg`` path given): the drawn overlay;
* ``<stem>_ids.png``: the id map (segment ids, or class indices for semantic), 8-bit when the
  values fit, else 16-bit;
* ``<stem>_segments.json``: :meth:`Prediction.to_json` plus the names of the other two files.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from .file_io import atomic_write

if TYPE_CHECKING:
    from ..structures.prediction import Prediction

__all__ = ["OVERLAY_EXTENSIONS", "write_prediction"]

#: Extensions that make ``output`` an overlay file name rather than a directory.
OVERLAY_EXTENSIONS = (".png", ".jpg", ".jpeg")


def prediction_paths(output: str, stem: str) -> dict[str, str]:
    """``{"overlay", "ids", "segments"}``: the files :func:`write_prediction` writes for ``output``
    (a directory, with the file-name ``stem``, or an overlay file name)."""
    if os.path.splitext(output)[1].lower() in OVERLAY_EXTENSIONS:
        overlay_path = output
        base = os.path.splitext(output)[0]
    else:
        base = os.path.join(output, stem)
        overlay_path = base + "_overlay.png"
    return {"overlay": overlay_path, "ids": base + "_ids.png", "segments": base + "_segments.json"}


def write_prediction(prediction: Prediction, output: str, *, overlay: np.ndarray,
                     stem: str | None = None) -> dict[str, str]:
    """Write the overlay, the id PNG and the segments JSON of ``prediction``.

    Args:
        prediction: the result of one image.
        output: a directory (files ``<stem>_overlay.png``, ``<stem>_ids.png``,
            ``<stem>_segments.json``) or an image file path for the overlay (``.png``/``.jpg``;
            the other two go next to it as ``<name>_ids.png`` and ``<name>_segments.json``).
        overlay: (H, W', 3) uint8 RGB drawing of the prediction.
        stem: file name stem in a directory (default: the source image's, else ``"image"``).
    Returns:
        ``{"overlay", "ids", "segments"}``: the paths written.
    """
    stem = stem or (os.path.splitext(os.path.basename(prediction.source))[0] if prediction.source else "image")
    paths = prediction_paths(output, stem)
    overlay_path, ids_path, json_path = paths["overlay"], paths["ids"], paths["segments"]

    with atomic_write(overlay_path, mode="wb") as f:
        if overlay_path.lower().endswith((".jpg", ".jpeg")):
            Image.fromarray(overlay).save(f, format="JPEG", quality=95)
        else:
            Image.fromarray(overlay).save(f, format="PNG")

    ids = prediction.ids
    dtype = np.uint8 if ids.max(initial=0) < 256 and prediction.none_value < 256 else np.uint16
    ok, png = cv2.imencode(".png", ids.astype(dtype))
    if not ok:
        raise OSError(f"Could not encode the id map of {ids_path} as PNG.")
    with atomic_write(ids_path, mode="wb") as f:
        f.write(png.tobytes())

    meta = prediction.to_json()
    meta["ids_file"] = os.path.basename(ids_path)
    meta["ids_dtype"] = np.dtype(dtype).name
    meta["overlay_file"] = os.path.basename(overlay_path)
    with atomic_write(json_path, mode="w") as f:
        json.dump(meta, f, indent=2)
    return paths
