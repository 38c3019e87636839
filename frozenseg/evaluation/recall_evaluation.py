"""Recall of class-agnostic mask proposals (docs/models/frozenseg.md §7.6).

For every ground-truth segment, the best IoU over all proposals of its image is recorded; the
recall at threshold t is the share of ground-truth segments whose best IoU is at least t
(pooled over all segments of the dataset), reported for all classes and split into seen and
unseen classes. The average best overlap (ABO, mean best IoU) is reported as well.

Ground-truth segments come from the panoptic annotation when the input has one
(``pan_seg_file_name`` + ``segments_info`` with contiguous ``category_id``, Detectron2's dataset
dict convention; crowd segments are skipped), otherwise from the semantic label map (one segment
per class present). Void pixels (unlabelled / ignore label / crowd) are removed from the
proposals before the IoU, as panopticapi does for predicted segments, so a proposal is not
penalised for covering unannotated pixels.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
from panopticapi.utils import rgb2id
from ..utils.image_io import read_annotation
from .evaluator import DatasetEvaluator
from .utils import (
    catalog_records,
    gather_on_main,
    normalize_seen_classes,
    output_tensor,
    resolve_metadata,
    save_results_json,
    semantic_ground_truth,
)

__all__ = ["RecallEvaluator", "best_iou_per_segment"]

logger = logging.getLogger(__name__)


def best_iou_per_segment(
    segment_map: torch.Tensor, num_segments: int, proposals: torch.Tensor, chunk_size: int = 16
) -> np.ndarray:
    """Best IoU of each ground-truth segment over the proposals.

    Args:
        segment_map: (H, W) int map, 0 = void, ``s + 1`` = pixel of segment ``s``.
        num_segments: number S of segments.
        proposals: (M, H, W) binary masks (bool, or numbers binarised with ``> 0.5``).
        chunk_size: proposals processed at once (bounds memory).

    Returns:
        float64 array (S,) of best IoUs (0 when there is no proposal). Void pixels are removed
        from the proposals before computing IoU.
    """
    labels = segment_map.reshape(-1).long()
    best = np.zeros(num_segments, dtype=np.float64)
    if num_segments == 0 or proposals.shape[0] == 0:
        return best
    gt_area = torch.bincount(labels, minlength=num_segments + 1)[1:].double()
    if proposals.dtype != torch.bool:
        proposals = proposals > 0.5
    flat = proposals.reshape(proposals.shape[0], -1)
    for start in range(0, flat.shape[0], chunk_size):
        chunk = flat[start : start + chunk_size].double()
        # inter[m, s] = number of pixels of proposal m on segment s (column 0 = void).
        inter = torch.zeros(chunk.shape[0], num_segments + 1, dtype=torch.float64)
        inter.index_add_(1, labels, chunk)
        inter = inter[:, 1:]
        prop_area = inter.sum(dim=1, keepdim=True)  # proposal area without void pixels
        union = prop_area + gt_area[None, :] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
        best = np.maximum(best, iou.max(dim=0).values.numpy())
    return best


class RecallEvaluator(DatasetEvaluator):
    """Proposal recall at IoU thresholds (default 0.5 / 0.75 / 0.9), all / seen / unseen.

    Args:
        dataset_name: registered dataset name or a metadata-like object (``stuff_classes``,
            ``ignore_label``, optional ``seen_classes``).
        distributed: gather the per-segment best IoUs to rank 0 in :meth:`evaluate`.
        output_dir: where ``recall_evaluation.json`` goes.
        iou_thresholds: thresholds t; the result keys are ``R@<100 t>`` (``R@50``, ...).
        seen_classes: boolean mask / indices / names of seen classes (default
            ``metadata.seen_classes``); enables the ``_seen`` / ``_unseen`` keys.
        gt_type: ``"auto"`` (panoptic when the input has it, else semantic), ``"panoptic"`` or
            ``"semantic"``.
        ignore_label: semantic label treated as void (default ``metadata.ignore_label`` or 255).
        metadata: explicit metadata object (overrides the catalog look-up).

    Model output per image: ``output["proposals"]`` (M, H, W) binary masks at the ground-truth
    size. Result task name: ``"recall"``; values ×100 (NaN when a group has no segment).
    """

    needs_full_semantic_map = False  # reads "sem_seg_scores" or no semantic output

    def __init__(
        self,
        dataset_name: Any = None,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        iou_thresholds: Sequence[float] = (0.5, 0.75, 0.9),
        seen_classes: Any = None,
        gt_type: str = "auto",
        ignore_label: int | None = None,
        num_classes: int | None = None,
        metadata: Any = None,
    ):
        self._dataset_name, self._metadata = resolve_metadata(dataset_name, metadata)
        self._distributed = distributed
        self._output_dir = output_dir
        self._thresholds = [float(t) for t in iou_thresholds]
        if gt_type not in ("auto", "panoptic", "semantic"):
            raise ValueError(f"gt_type must be 'auto', 'panoptic' or 'semantic', got {gt_type!r}.")
        self._gt_type = gt_type
        class_names = getattr(self._metadata, "stuff_classes", None)
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        self._num_classes = num_classes
        if ignore_label is None:
            ignore_label = getattr(self._metadata, "ignore_label", 255)
        self._ignore_label = int(ignore_label)
        if seen_classes is None:
            seen_classes = getattr(self._metadata, "seen_classes", None)
        if seen_classes is not None and num_classes is None:
            raise ValueError("A seen/unseen split needs num_classes or metadata.stuff_classes.")
        self._seen_mask = (
            normalize_seen_classes(seen_classes, num_classes, class_names) if seen_classes is not None else None
        )
        self._records: dict[str, dict] | None = None
        self.reset()

    def reset(self) -> None:
        self._best_ious: list[np.ndarray] = []
        self._categories: list[np.ndarray] = []

    # -- ground truth -----------------------------------------------------------------------
    def _catalog_record(self, file_name: str) -> dict:
        """Detectron2-style fallback: the registered dataset record with this ``file_name``."""
        if self._records is None:
            self._records = {}  # stays empty when the catalog look-up fails
            self._records = {r["file_name"]: r for r in catalog_records(self._dataset_name)}
        return self._records.get(file_name, {})

    def _ground_truth(self, inp: dict) -> tuple[torch.Tensor, np.ndarray]:
        """Return (segment map with 0 = void, contiguous category of each segment)."""
        source = inp
        if not any(k in inp for k in ("pan_seg_file_name", "sem_seg_file_name", "sem_seg")):
            source = self._catalog_record(inp.get("file_name", ""))
        use_panoptic = self._gt_type == "panoptic" or (
            self._gt_type == "auto" and "pan_seg_file_name" in source and "segments_info" in source
        )
        if use_panoptic:
            ids = rgb2id(read_annotation(source["pan_seg_file_name"], rgb=True))
            seg_map = np.zeros(ids.shape, dtype=np.int64)
            categories = []
            for seg in source["segments_info"]:
                if seg.get("iscrowd", 0):
                    continue
                categories.append(int(seg["category_id"]))
                seg_map[ids == seg["id"]] = len(categories)
            return torch.from_numpy(seg_map), np.asarray(categories, dtype=np.int64)
        sem = semantic_ground_truth(source)
        if sem is None:
            raise KeyError(
                f"RecallEvaluator found no ground truth for {inp.get('file_name', '?')!r}: give "
                "'pan_seg_file_name' + 'segments_info', 'sem_seg_file_name' or 'sem_seg'."
            )
        valid = sem != self._ignore_label
        if self._num_classes is not None:
            valid &= (sem >= 0) & (sem < self._num_classes)
        classes = np.unique(sem[valid])
        seg_map = np.zeros(sem.shape, dtype=np.int64)
        for i, c in enumerate(classes):
            seg_map[(sem == c) & valid] = i + 1
        return torch.from_numpy(seg_map), classes.astype(np.int64)

    # -- protocol ---------------------------------------------------------------------------
    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            proposals = output_tensor(out, "proposals", "RecallEvaluator", "RECALL_ON").detach().cpu()
            seg_map, categories = self._ground_truth(inp)
            if proposals.dim() != 3 or tuple(proposals.shape[1:]) != tuple(seg_map.shape):
                raise ValueError(
                    f"Proposals of shape {tuple(proposals.shape)} do not match the ground-truth size "
                    f"{tuple(seg_map.shape)} for {inp.get('file_name', '?')!r}."
                )
            self._best_ious.append(best_iou_per_segment(seg_map, len(categories), proposals))
            self._categories.append(categories)

    def evaluate(self) -> dict:
        gathered = gather_on_main((self._best_ious, self._categories), self._distributed)
        if gathered is None:
            return {}
        best_ious = list(itertools.chain(*[b for b, _ in gathered]))
        categories = list(itertools.chain(*[c for _, c in gathered]))
        best = np.concatenate(best_ious) if best_ious else np.zeros(0)
        cats = np.concatenate(categories) if categories else np.zeros(0, dtype=np.int64)

        groups: list[tuple[str, np.ndarray]] = [("", np.ones(best.shape, dtype=bool))]
        if self._seen_mask is not None:
            in_range = (cats >= 0) & (cats < len(self._seen_mask))
            seen = np.zeros(best.shape, dtype=bool)
            seen[in_range] = self._seen_mask[cats[in_range]]
            groups += [("_seen", seen), ("_unseen", ~seen)]

        res: OrderedDict[str, float] = OrderedDict()
        for suffix, sel in groups:
            for t in self._thresholds:
                key = f"R@{int(round(t * 100))}{suffix}"
                res[key] = 100.0 * float(np.mean(best[sel] >= t)) if sel.any() else float("nan")
        for suffix, sel in groups:
            res[f"ABO{suffix}"] = 100.0 * float(np.mean(best[sel])) if sel.any() else float("nan")
        counts = {(s.lstrip("_") or "all"): int(sel.sum()) for s, sel in groups}
        logger.info("Proposal recall over %s ground-truth segments: %s", counts, dict(res))
        results = OrderedDict({"recall": res})
        save_results_json(results, self._output_dir, "recall_evaluation.json")
        return results
