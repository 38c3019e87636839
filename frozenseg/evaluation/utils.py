"""Helpers shared by the evaluators: metadata look-up, gathering to the main process, ground
truth from inputs or the dataset catalog, seen/unseen masks, result files.

These are implementation details of :mod:`frozenseg.evaluation`; the public entry points are
the evaluator classes and :func:`frozenseg.evaluation.build_evaluator`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import math
import os
import types
from collections.abc import Mapping, Sequence
from typing import Any, Iterator

import numpy as np
import torch

from ..data.vocabulary import seen_class_mask
from ..structures.semantic import semantic_scores
from ..utils import comm
from ..utils.file_io import atomic_write
from ..utils.image_io import read_annotation

__all__ = [
    "resolve_metadata",
    "gather_on_main",
    "gather_list_on_main",
    "catalog_records",
    "semantic_ground_truth",
    "model_output",
    "output_tensor",
    "seen_mask_from_names",
    "normalize_seen_classes",
    "save_results_json",
    "capture_stdout",
    "read_label_image",
    "reverse_id_map",
    "patch_numpy_aliases",
]

logger = logging.getLogger(__name__)


def resolve_metadata(dataset_name_or_metadata: Any = None, metadata: Any = None) -> tuple[str, Any]:
    """Return ``(dataset_name, metadata)`` from a registered name or a metadata-like object.

    ``dataset_name_or_metadata`` may be a string (looked up lazily in
    ``frozenseg.data.MetadataCatalog``) or any object with metadata attributes
    (for example ``types.SimpleNamespace``). An explicit ``metadata`` wins over the look-up.
    """
    name = dataset_name_or_metadata if isinstance(dataset_name_or_metadata, str) else None
    if metadata is None and dataset_name_or_metadata is not None and name is None:
        metadata = dataset_name_or_metadata
    if metadata is None:
        if name is None:
            raise ValueError("An evaluator needs a dataset name or a metadata object.")
        from frozenseg.data import MetadataCatalog  # lazy: the data package is optional here

        metadata = MetadataCatalog.get(name)
    if name is None:
        name = str(getattr(metadata, "name", "") or "")
    return name, metadata


def gather_on_main(state: Any, distributed: bool = True) -> list[Any] | None:
    """Every process's ``state``, in rank order, on the main process; None on the other ranks.

    With ``distributed=False`` (each process evaluates on its own): ``[state]``.
    """
    if not distributed:
        return [state]
    comm.synchronize()
    gathered = comm.gather(state, dst=0)
    if not comm.is_main_process():
        return None
    return gathered


def gather_list_on_main(items: list, distributed: bool = True) -> list | None:
    """The concatenation of every process's ``items`` (rank order) on the main process; None on
    the other ranks (see :func:`gather_on_main`)."""
    gathered = gather_on_main(items, distributed)
    if gathered is None:
        return None
    return list(itertools.chain(*gathered))


def catalog_records(dataset_name: str | None) -> list[dict]:
    """The registered records of ``dataset_name`` (Detectron2's ground-truth fallback when an
    input carries none); ``[]`` without a name or without :mod:`frozenseg.data`."""
    if not dataset_name:
        return []
    try:
        from frozenseg.data import DatasetCatalog
    except ImportError:
        return []
    return DatasetCatalog.get(dataset_name)


def semantic_ground_truth(record: Mapping) -> np.ndarray | None:
    """A record's semantic labels as an int64 (H, W) array: its ``sem_seg_file_name`` label
    image, else its ``sem_seg`` labels; None when it has neither."""
    path = record.get("sem_seg_file_name")
    if path:
        return read_label_image(path)
    if "sem_seg" in record:
        gt = record["sem_seg"]
        gt = gt.cpu().numpy() if isinstance(gt, torch.Tensor) else np.asarray(gt)
        return gt.astype(np.int64)
    return None


def model_output(output: Mapping, key: str, evaluator: str, flag: str) -> Any:
    """``output[key]``; when the model did not produce it, a KeyError naming ``evaluator`` and the
    config ``flag`` that enables that output."""
    if key not in output:
        raise KeyError(f"{evaluator} needs '{key}' in the model outputs ({flag}).")
    return output[key]


def output_tensor(output: Mapping, key: str, evaluator: str, flag: str) -> torch.Tensor:
    """:func:`model_output` as a tensor (arrays and lists are converted)."""
    value = model_output(output, key, evaluator, flag)
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(np.asarray(value))
    return value


def semantic_labels(output: Mapping, evaluator: str, flag: str) -> torch.Tensor:
    """A model output's semantic labels, (H, W) int64: the arg-max class of its
    ``"sem_seg_scores"`` (computed a few classes at a time), else of its (K, H, W) ``"sem_seg"``,
    or that (H, W) label map itself; a KeyError naming ``evaluator`` and ``flag`` without either."""
    if "sem_seg_scores" in output:
        return semantic_scores(output).summarize().labels
    pred = output_tensor(output, "sem_seg", evaluator, flag)
    if pred.dim() == 3:
        return pred.argmax(dim=0)
    if pred.dim() != 2:
        raise ValueError(f"'sem_seg' output must be (K, H, W) or (H, W), got {tuple(pred.shape)}.")
    return pred


def seen_mask_from_names(
    class_names: Sequence[str], train_class_names: Sequence[str], literal: bool = False
) -> np.ndarray:
    """Boolean mask over ``class_names`` by the spec's synonym rule (§7.2), or with ``literal``
    by whole class strings (a model that takes each class string as one prompt); see
    :func:`frozenseg.data.vocabulary.seen_class_mask`."""
    return np.array(seen_class_mask(class_names, train_class_names, literal), dtype=bool)


def normalize_seen_classes(
    seen_classes: Any, num_classes: int, class_names: Sequence[str] | None = None
) -> np.ndarray | None:
    """Turn a user-supplied seen-class description into a boolean mask of length ``num_classes``.

    Accepted forms: ``None`` (no seen/unseen split); a boolean sequence/array/tensor of length
    ``num_classes``; a sequence of integer class indices; a sequence of class names (matched
    against ``class_names`` with :func:`seen_mask_from_names`).
    """
    if seen_classes is None:
        return None
    if isinstance(seen_classes, torch.Tensor):
        seen_classes = seen_classes.cpu().numpy()
    arr = np.asarray(list(seen_classes) if not isinstance(seen_classes, np.ndarray) else seen_classes)
    if arr.dtype == bool:
        if arr.shape != (num_classes,):
            raise ValueError(
                f"seen_classes mask has shape {arr.shape}, expected ({num_classes},) "
                "(one entry per evaluated class)."
            )
        return arr.copy()
    if arr.size == 0:
        return np.zeros(num_classes, dtype=bool)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(f"seen_classes indices must lie in [0, {num_classes}), got {arr}.")
        mask = np.zeros(num_classes, dtype=bool)
        mask[arr] = True
        return mask
    if arr.dtype.kind in ("U", "S", "O"):
        if class_names is None:
            raise ValueError("seen_classes given as names, but the evaluator has no class names.")
        return seen_mask_from_names(class_names, [str(x) for x in arr.tolist()])
    raise TypeError(f"Unsupported seen_classes of dtype {arr.dtype}.")


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats by ``None`` (strict JSON) and numpy scalars by Python ones."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.generic):  # integers, booleans, ...
        return obj.item()
    return obj


def save_results_json(results: Mapping, output_dir: str | None, filename: str) -> str | None:
    """Write ``results`` to ``output_dir/filename`` as strict JSON (NaN -> null); return the path.

    The file is written atomically: a failure while writing leaves no partial file."""
    if not output_dir:
        return None
    path = os.path.join(output_dir, filename)
    with atomic_write(path, "w") as f:
        json.dump(_json_safe(results), f, indent=2)
    logger.info("Saved evaluation results to %s", path)
    return path


@contextlib.contextmanager
def capture_stdout(log: logging.Logger, level: int = logging.INFO) -> Iterator[io.StringIO]:
    """Capture what third-party evaluation code prints and forward it to ``log``."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        text = buf.getvalue().strip()
        if text:
            log.log(level, "%s", text)


def read_label_image(path: str) -> np.ndarray:
    """Read a single-channel label PNG/TIFF as an int64 array (H, W); an unreadable file is an
    :class:`~frozenseg.utils.errors.AnnotationError` naming it."""
    arr = read_annotation(path)
    if arr.ndim == 3:
        raise ValueError(f"Label image {path} has {arr.shape[2]} channels, expected 1.")
    return arr.astype(np.int64)


def reverse_id_map(mapping: Mapping | None) -> dict[int, int]:
    """Invert a ``dataset_id -> contiguous_id`` mapping (keys may be strings after JSON)."""
    if not mapping:
        return {}
    return {int(v): int(k) for k, v in mapping.items()}


def _in1d(ar1, ar2, assume_unique: bool = False, invert: bool = False) -> np.ndarray:
    """``np.in1d`` (removed in NumPy 2.4): flattened ``np.isin``."""
    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique, invert=invert)


class _NumpyWithAliases(types.ModuleType):
    """Proxy of the numpy module that also provides names removed from recent NumPy releases.

    ``float`` (the alias meant ``np.float64`` in these call sites: ``.astype(dtype=np.float)``)
    and ``in1d`` (a flattened ``isin``). Every other attribute is numpy's own.
    """

    float = np.float64
    in1d = staticmethod(_in1d)

    def __getattr__(self, name: str):
        return getattr(np, name)


def patch_numpy_aliases(module: types.ModuleType) -> None:
    """Give a third-party ``module`` a numpy proxy with removed aliases (``np.float``, ``np.in1d``).

    Only that module's global ``np`` is replaced, and only when NumPy lacks one of the aliases;
    NumPy itself is left untouched.
    """
    if getattr(module, "np", None) is np and not (hasattr(np, "float") and hasattr(np, "in1d")):
        module.np = _NumpyWithAliases("numpy")
