"""Instance segmentation evaluation: COCO mask AP via pycocotools.

Each predicted instance becomes a COCO result ``{"image_id", "category_id", "segmentation" (RLE),
"score"}``; contiguous class ids are mapped back to dataset ids with the metadata's
``thing_dataset_id_to_contiguous_id``. Ground truth is the COCO instances JSON named by
``metadata.json_file``. Following Detectron2, results carry no ``bbox`` so that COCOeval's
small/medium/large split uses the mask area. Reported: AP, AP50, AP75, APs, APm, APl and
``AP-<category>`` (×100; NaN where COCOeval has no value).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from .evaluator import DatasetEvaluator
from .utils import (
    capture_stdout,
    gather_list_on_main,
    model_output,
    resolve_metadata,
    reverse_id_map,
    save_results_json,
)

__all__ = ["InstanceSegEvaluator", "COCOEvaluator", "instances_to_coco_json", "encode_masks_rle"]

logger = logging.getLogger(__name__)

COCO_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def encode_masks_rle(masks: torch.Tensor | np.ndarray) -> list[dict]:
    """Encode binary masks (N, H, W) to COCO RLEs with ``counts`` as ``str`` (JSON-ready).

    Non-boolean masks are binarised with ``> 0.5`` (Mask2Former returns 0/1 floats).
    """
    import pycocotools.mask as mask_util

    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu()
        masks = (masks if masks.dtype == torch.bool else masks > 0.5).numpy()
    else:
        masks = np.asarray(masks)
        masks = masks if masks.dtype == bool else masks > 0.5
    if masks.shape[0] == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("utf-8")
    return list(rles)


def instances_to_coco_json(instances, image_id: Any) -> list[dict]:
    """Convert an ``Instances`` (pred_masks, scores, pred_classes) to COCO result dicts.

    ``category_id`` stays the contiguous class id; the evaluators map it to dataset ids.
    """
    n = len(instances)
    if n == 0:
        return []
    rles = encode_masks_rle(instances.pred_masks)
    scores = instances.scores.detach().cpu().float().tolist()
    classes = instances.pred_classes.detach().cpu().tolist()
    return [
        {"image_id": image_id, "category_id": int(classes[i]), "segmentation": rles[i], "score": float(scores[i])}
        for i in range(n)
    ]


def file_stem(path: str) -> str:
    """File name without folder and extension (``"a/ADE_val_1.jpg"`` -> ``"ADE_val_1"``)."""
    return os.path.splitext(os.path.basename(path))[0]


def _to_percent(value: float) -> float:
    """COCO / LVIS API values are in [0, 1] with -1 for "undefined": ×100, NaN for undefined."""
    return float(value * 100) if value >= 0 else float("nan")


class InstanceSegEvaluator(DatasetEvaluator):
    """COCO mask AP (pycocotools, ``iouType="segm"``) for ``output["instances"]``.

    Args:
        dataset_name: registered dataset name or a metadata-like object with ``json_file`` and
            ``thing_dataset_id_to_contiguous_id`` (identity mapping when absent).
        output_dir: where ``coco_instances_results.json`` and ``instances_evaluation.json`` go.
        distributed: gather the predictions to rank 0 in :meth:`evaluate`.
        max_dets_per_image: COCOeval ``maxDets`` (default ``[1, 10, 100]``).
        gt_json: COCO instances JSON (default ``metadata.json_file``).
        metadata: explicit metadata object (overrides the catalog look-up).

    Predictions of classes without a dataset thing id (stuff classes, when the model's instance
    output is not restricted to things) are dropped with a warning. Only processed images are
    evaluated (the whole ground truth on a full pass, as in Detectron2).
    """

    needs_full_semantic_map = False  # reads "sem_seg_scores" or no semantic output

    task_name = "segm"
    #: the metrics reported (all NaN when there is no prediction to evaluate), the name the
    #: warnings give them, and the logger of those warnings
    _metric_names = COCO_METRICS
    _metrics_label = "Instance"
    _logger = logger

    def __init__(
        self,
        dataset_name: Any = None,
        output_dir: str | None = None,
        *,
        distributed: bool = True,
        max_dets_per_image: Sequence[int] | None = None,
        gt_json: str | None = None,
        metadata: Any = None,
    ):
        self._dataset_name, self._metadata = resolve_metadata(dataset_name, metadata)
        self._output_dir = output_dir
        self._distributed = distributed
        self._max_dets = list(max_dets_per_image) if max_dets_per_image else [1, 10, 100]
        self._gt_json = gt_json or getattr(self._metadata, "json_file", None)
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        self._contiguous_to_dataset = reverse_id_map(mapping) if mapping else None
        self.reset()

    def reset(self) -> None:
        self._predictions: list[tuple[Any, str, list[dict]]] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            instances = model_output(out, "instances", type(self).__name__, "INSTANCE_ON")
            self._predictions.append((inp["image_id"], file_stem(inp.get("file_name", "")),
                                      instances_to_coco_json(instances, inp["image_id"])))

    def _map_category_ids(self, results: list[dict]) -> list[dict]:
        """Contiguous -> dataset category ids; drops classes that have no thing id."""
        if self._contiguous_to_dataset is None:
            return results
        mapped, dropped = [], 0
        for r in results:
            cid = r["category_id"]
            if cid not in self._contiguous_to_dataset:
                dropped += 1
                continue
            mapped.append(dict(r, category_id=self._contiguous_to_dataset[cid]))
        if dropped:
            logger.warning("Dropped %d predictions of classes that are not things of this dataset.", dropped)
        return mapped

    def evaluate(self) -> dict:
        predictions = gather_list_on_main(self._predictions, self._distributed)
        if predictions is None:
            return {}
        img_ids = [img_id for img_id, _, _ in predictions]
        stems = {img_id: stem for img_id, stem, _ in predictions}
        results = self._map_category_ids(list(itertools.chain(*[r for _, _, r in predictions])))
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            path = os.path.join(self._output_dir, self._results_file_name())
            with open(path, "w", encoding="utf-8") as f:
                json.dump(results, f)
            logger.info("Saved instance predictions to %s", path)
        res = self._evaluate_results(results, img_ids, stems)
        out = OrderedDict({self.task_name: res})
        save_results_json(out, self._output_dir, self._summary_file_name())
        return out

    def _results_file_name(self) -> str:
        return "coco_instances_results.json"

    def _summary_file_name(self) -> str:
        return "instances_evaluation.json"

    def _nan_metrics(self, reason: str) -> "OrderedDict[str, float]":
        """Every metric NaN, with a warning naming ``reason``."""
        self._logger.warning("%s! %s metrics are NaN.", reason, self._metrics_label)
        return OrderedDict((m, float("nan")) for m in self._metric_names)

    def _evaluate_results(self, results: list[dict], img_ids: list,
                          stems: dict[Any, str]) -> "OrderedDict[str, float]":
        """COCO metrics of ``results`` on the processed images ``img_ids``; an image whose id is
        not in the ground truth is matched by file name (``stems``: image id -> file stem), e.g.
        ADE20K's panoptic json names images by stem where its instance json numbers them."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self._gt_json:
            raise ValueError("Instance evaluation needs a COCO-format ground truth (metadata.json_file).")
        if len(results) == 0:
            return self._nan_metrics("No predictions from the model")
        with capture_stdout(logger, logging.DEBUG):
            coco_gt = COCO(self._gt_json)
        gt_img_ids = set(coco_gt.getImgIds())
        by_stem = {file_stem(im.get("file_name", "")): im["id"] for im in coco_gt.dataset.get("images", [])}
        to_gt = {i: by_stem[stems[i]] for i in set(img_ids)
                 if i not in gt_img_ids and stems.get(i) in by_stem}
        if to_gt:
            img_ids = [to_gt.get(i, i) for i in img_ids]
            results = [dict(r, image_id=to_gt.get(r["image_id"], r["image_id"])) for r in results]
        eval_ids = sorted(i for i in set(img_ids) if i in gt_img_ids)
        if len(eval_ids) != len(set(img_ids)):
            logger.warning("%d processed images are not in the ground truth.", len(set(img_ids)) - len(eval_ids))
        results = [r for r in results if r["image_id"] in gt_img_ids]
        if not results:
            return self._nan_metrics("No predictions on ground-truth images")
        with capture_stdout(logger, logging.INFO):
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
            coco_eval = COCOeval(coco_gt, coco_dt, "segm")
            coco_eval.params.imgIds = eval_ids
            coco_eval.params.maxDets = self._max_dets
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()

        res: OrderedDict[str, float] = OrderedDict(
            (m, _to_percent(coco_eval.stats[i])) for i, m in enumerate(COCO_METRICS)
        )
        # Per-category AP: precision has shape (iou, recall, cls, area range, max dets).
        precisions = coco_eval.eval["precision"]
        cats = coco_gt.loadCats(coco_eval.params.catIds)
        for idx, cat in enumerate(cats):
            precision = precisions[:, :, idx, 0, -1]
            precision = precision[precision > -1]
            ap = float(np.mean(precision)) if precision.size else float("nan")
            res[f"AP-{cat.get('name', cat['id'])}"] = ap * 100
        logger.info("Evaluation results for segm: %s", {m: res[m] for m in COCO_METRICS})
        return res


# Detectron2 / Mask2Former names for the same evaluator.
COCOEvaluator = InstanceSegEvaluator
