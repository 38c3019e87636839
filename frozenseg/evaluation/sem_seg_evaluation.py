"""Semantic segmentation evaluation: mIoU, fwIoU, mACC, pACC (Detectron2) plus seen/unseen mIoU.

A confusion matrix over ``K + 1`` labels (the extra one collects ignored pixels) is accumulated
with ``np.bincount``; ``conf[pred, gt]`` counts pixels predicted ``pred`` with ground truth
``gt``. Metrics follow Detectron2's ``SemSegEvaluator``: a class that has no ground-truth pixel
gets NaN IoU/accuracy and is left out of every mean (even when it is predicted; its false
positives still lower the IoU of the ground-truth classes they cover). All values are ×100.

``miou_denominator`` chooses how many classes the mIoU averages over:

- ``"gt"`` (default; current Detectron2, the FrozenSeg release): classes with ground-truth
  pixels.
- ``"gt_or_pred"`` (Detectron2 0.6, the evaluator the OVSeg release used, spec OVSEG §6 /
  docs/models/ovseg.md quirk 7): classes with ground-truth *or predicted* pixels; a class that is predicted but
  absent from the ground truth counts as IoU 0 in the mean (its per-class IoU stays NaN). This
  gives lower numbers, most visibly on A-847 and PC-459.

With a seen-class mask (``seen_classes``), ``mIoU_seen`` / ``mIoU_unseen`` are the means over
the valid seen / unseen classes and ``hIoU`` is their harmonic mean (always over classes with
ground truth).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from ..utils.image_io import check_label_ids
from .evaluator import DatasetEvaluator
from .utils import (
    catalog_records,
    gather_on_main,
    normalize_seen_classes,
    semantic_labels,
    read_label_image,
    resolve_metadata,
    save_results_json,
    semantic_ground_truth,
)

__all__ = ["SemSegEvaluator", "semantic_metrics_from_confusion", "harmonic_mean", "MIOU_DENOMINATORS"]

#: Accepted values of ``miou_denominator`` (``TEST.SEM_SEG_MIOU_DENOMINATOR``); see the module docstring.
MIOU_DENOMINATORS = ("gt", "gt_or_pred")

logger = logging.getLogger(__name__)


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean ``2ab / (a + b)``; 0 when both are 0, NaN when either is NaN."""
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    if a + b == 0:
        return 0.0
    return float(2.0 * a * b / (a + b))


def semantic_metrics_from_confusion(
    conf_matrix: np.ndarray,
    class_names: Sequence[str] | None = None,
    seen_mask: np.ndarray | None = None,
    miou_denominator: str = "gt",
) -> "OrderedDict[str, float]":
    """Compute Detectron2's semantic metrics from a ``(K+1, K+1)`` ``conf[pred, gt]`` matrix.

    The last row/column hold ignored pixels and are excluded. Returns an ordered dict with
    ``mIoU, fwIoU, IoU-<class>..., mACC, pACC, ACC-<class>...`` (×100), followed by
    ``mIoU_seen, mIoU_unseen, hIoU`` when ``seen_mask`` is given. ``miou_denominator`` is one of
    :data:`MIOU_DENOMINATORS` (module docstring).
    """
    if miou_denominator not in MIOU_DENOMINATORS:
        raise ValueError(
            f"miou_denominator {miou_denominator!r} is not one of {MIOU_DENOMINATORS} "
            "(TEST.SEM_SEG_MIOU_DENOMINATOR)."
        )
    k = conf_matrix.shape[0] - 1
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a confusion matrix of {k} classes.")
    conf = conf_matrix[:-1, :-1].astype(np.float64)
    acc = np.full(k, np.nan, dtype=np.float64)
    iou = np.full(k, np.nan, dtype=np.float64)
    tp = np.diagonal(conf).copy()
    pos_gt = conf.sum(axis=0)
    pos_pred = conf.sum(axis=1)
    total_gt = pos_gt.sum()
    acc_valid = pos_gt > 0
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    union = pos_gt + pos_pred - tp
    iou_valid = np.logical_and(acc_valid, union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    if total_gt > 0:
        class_weights = pos_gt / total_gt
        macc = float(np.sum(acc[acc_valid]) / np.sum(acc_valid))
        counted = iou_valid if miou_denominator == "gt" else (pos_gt + pos_pred) > 0
        miou = float(np.sum(iou[iou_valid]) / np.sum(counted))
        fiou = float(np.sum(iou[iou_valid] * class_weights[iou_valid]))
        pacc = float(np.sum(tp) / total_gt)
    else:
        logger.warning("Semantic evaluation saw no valid ground-truth pixel; metrics are NaN.")
        macc = miou = fiou = pacc = float("nan")

    res: OrderedDict[str, float] = OrderedDict()
    res["mIoU"] = 100 * miou
    res["fwIoU"] = 100 * fiou
    for i, name in enumerate(names):
        res[f"IoU-{name}"] = 100 * float(iou[i])
    res["mACC"] = 100 * macc
    res["pACC"] = 100 * pacc
    for i, name in enumerate(names):
        res[f"ACC-{name}"] = 100 * float(acc[i])
    if seen_mask is not None:
        seen_valid = np.logical_and(iou_valid, seen_mask)
        unseen_valid = np.logical_and(iou_valid, ~seen_mask)
        miou_seen = float(iou[seen_valid].mean()) if seen_valid.any() else float("nan")
        miou_unseen = float(iou[unseen_valid].mean()) if unseen_valid.any() else float("nan")
        res["mIoU_seen"] = 100 * miou_seen
        res["mIoU_unseen"] = 100 * miou_unseen
        res["hIoU"] = 100 * harmonic_mean(miou_seen, miou_unseen)
    return res


class SemSegEvaluator(DatasetEvaluator):
    """Semantic segmentation evaluator (Detectron2's ``SemSegEvaluator`` + seen/unseen split).

    Args:
        dataset_name: registered dataset name, or a metadata-like object (attributes
            ``stuff_classes``, ``ignore_label``, optional ``seen_classes``).
        distributed: gather the confusion matrices to rank 0 in :meth:`evaluate`.
        output_dir: where ``sem_seg_evaluation.json`` and ``sem_seg_evaluation.pth`` go.
        num_classes: number of classes K (default ``len(metadata.stuff_classes)``).
        ignore_label: ground-truth label to ignore (default ``metadata.ignore_label`` or 255).
            Any other ground-truth value outside ``[0, K)`` is ignored too, with a warning.
        seen_classes: boolean mask / class indices / class names of the seen classes (default
            ``metadata.seen_classes``); enables ``mIoU_seen``, ``mIoU_unseen`` and ``hIoU``.
        miou_denominator: ``"gt"`` or ``"gt_or_pred"`` (module docstring).
        metadata: explicit metadata object (overrides the catalog look-up).

    Ground truth per image: ``input["sem_seg_file_name"]`` (PNG/TIFF label map), else a
    ``input["sem_seg"]`` label tensor, else the dataset catalog record with the same
    ``file_name``. Prediction: ``output["sem_seg"]`` as (K, H, W) scores (argmax) or an (H, W)
    label map; it must have the ground truth's size.
    """

    needs_full_semantic_map = False  # reads "sem_seg_scores" or no semantic output

    def __init__(
        self,
        dataset_name: Any = None,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        num_classes: int | None = None,
        ignore_label: int | None = None,
        seen_classes: Any = None,
        metadata: Any = None,
        miou_denominator: str = "gt",
    ):
        self._dataset_name, self._metadata = resolve_metadata(dataset_name, metadata)
        self._distributed = distributed
        self._output_dir = output_dir
        class_names = getattr(self._metadata, "stuff_classes", None)
        if num_classes is None:
            if class_names is None:
                raise ValueError("SemSegEvaluator needs num_classes or metadata.stuff_classes.")
            num_classes = len(class_names)
        if class_names is None or len(class_names) != num_classes:
            class_names = [str(i) for i in range(num_classes)]
        self._num_classes = int(num_classes)
        self._class_names = list(class_names)
        if ignore_label is None:
            ignore_label = getattr(self._metadata, "ignore_label", 255)
        self._ignore_label = int(ignore_label)
        if seen_classes is None:
            seen_classes = getattr(self._metadata, "seen_classes", None)
        self._seen_mask = normalize_seen_classes(seen_classes, self._num_classes, self._class_names)
        if miou_denominator not in MIOU_DENOMINATORS:
            raise ValueError(
                f"miou_denominator {miou_denominator!r} is not one of {MIOU_DENOMINATORS} "
                "(TEST.SEM_SEG_MIOU_DENOMINATOR)."
            )
        self._miou_denominator = miou_denominator
        self._file_to_gt: dict[str, str] | None = None
        self._warned_out_of_range = False
        self.reset()

    def reset(self) -> None:
        n = self._num_classes + 1
        self._conf_matrix = np.zeros((n, n), dtype=np.int64)
        self._num_images = 0

    # -- ground truth -----------------------------------------------------------------------
    def _gt_file_from_catalog(self, file_name: str) -> str | None:
        """Detectron2 fallback: find ``sem_seg_file_name`` in the registered dataset records."""
        if self._file_to_gt is None:
            self._file_to_gt = {}  # stays empty when the catalog look-up fails
            for record in catalog_records(self._dataset_name):
                if "sem_seg_file_name" in record:
                    self._file_to_gt[record["file_name"]] = record["sem_seg_file_name"]
        return self._file_to_gt.get(file_name)

    def _load_gt(self, inp: dict) -> np.ndarray:
        gt = semantic_ground_truth(inp)
        if gt is not None:
            return gt
        path = self._gt_file_from_catalog(inp.get("file_name", ""))
        if path:
            return read_label_image(path)
        raise KeyError(
            "SemSegEvaluator found no ground truth for image "
            f"{inp.get('file_name', '?')!r}: give 'sem_seg_file_name' or 'sem_seg' in the input."
        )

    # -- protocol ---------------------------------------------------------------------------
    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        k = self._num_classes
        for inp, out in zip(inputs, outputs):
            pred = semantic_labels(out, "SemSegEvaluator", "SEMANTIC_ON").to("cpu").numpy().astype(np.int64)
            gt = self._load_gt(inp)
            if pred.shape != gt.shape:
                raise ValueError(
                    f"Prediction size {pred.shape} differs from ground truth size {gt.shape} "
                    f"for {inp.get('file_name', '?')!r}."
                )
            if pred.size and (pred.min() < 0 or pred.max() >= k):
                raise ValueError(f"Predicted labels must lie in [0, {k}).")
            if inp.get("sem_seg_num_classes") is not None and inp.get("sem_seg_file_name"):
                # a dataset that declares its classes: a label outside them is an error in the file
                check_label_ids(gt, inp["sem_seg_file_name"], int(inp["sem_seg_num_classes"]), self._ignore_label)
            invalid = (gt < 0) | (gt >= k)
            if not self._warned_out_of_range and np.any(invalid & (gt != self._ignore_label)):
                self._warned_out_of_range = True
                logger.warning(
                    "Ground-truth labels outside [0, %d) other than ignore_label=%d found; "
                    "they are ignored.", k, self._ignore_label,
                )
            gt = np.where(invalid, k, gt)
            self._conf_matrix += np.bincount(
                (k + 1) * pred.reshape(-1) + gt.reshape(-1), minlength=(k + 1) ** 2
            ).reshape(k + 1, k + 1)
            self._num_images += 1

    def evaluate(self) -> dict:
        gathered = gather_on_main((self._conf_matrix, self._num_images), self._distributed)
        if gathered is None:
            return {}
        conf_matrix = sum(c for c, _ in gathered)
        num_images = sum(n for _, n in gathered)
        if num_images == 0:
            logger.warning("SemSegEvaluator.evaluate() called without any processed image.")

        res = semantic_metrics_from_confusion(
            conf_matrix, self._class_names, self._seen_mask, self._miou_denominator
        )
        results = OrderedDict({"sem_seg": res})
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            torch.save(dict(res), os.path.join(self._output_dir, "sem_seg_evaluation.pth"))
            save_results_json(results, self._output_dir, "sem_seg_evaluation.json")
        logger.info("Semantic segmentation results on %d images: %s", num_images, dict(res))
        return results
