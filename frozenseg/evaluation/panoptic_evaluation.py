"""Panoptic quality (PQ, SQ, RQ for all / things / stuff) via panopticapi (COCO panoptic format).

Predictions are encoded exactly as the COCO panoptic format requires: one RGB PNG per image whose
pixels hold ``id2rgb(segment_id)`` (0 = void) and a JSON entry per image with its
``segments_info`` (``id``, dataset ``category_id``). Ground truth is the standard layout given by
the dataset metadata: ``panoptic_json`` (annotations and categories) and ``panoptic_root`` (PNGs).
The computation itself is panopticapi's ``pq_compute``.

Requires ``panopticapi`` (``pip install --no-deps panopticapi-lite``).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import tempfile
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from PIL import Image

from .evaluator import DatasetEvaluator
from .utils import capture_stdout, gather_list_on_main, resolve_metadata, reverse_id_map, save_results_json

__all__ = ["COCOPanopticEvaluator"]

logger = logging.getLogger(__name__)

_PANOPTICAPI_HINT = "panopticapi is required for panoptic evaluation: pip install --no-deps panopticapi-lite"


def _import_id2rgb():
    try:
        from panopticapi.utils import id2rgb
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_PANOPTICAPI_HINT) from e
    return id2rgb


class COCOPanopticEvaluator(DatasetEvaluator):
    """Panoptic evaluator producing PQ/SQ/RQ ×100 for all, things (``_th``) and stuff (``_st``).

    Args:
        dataset_name: registered dataset name or a metadata-like object with ``panoptic_json``,
            ``panoptic_root``, ``thing_dataset_id_to_contiguous_id`` and
            ``stuff_dataset_id_to_contiguous_id`` (optional ``label_divisor``).
        output_dir: where ``predictions.json`` (the prediction JSON handed to panopticapi) and
            ``panoptic_evaluation.json`` are written; a temporary directory when ``None``.
        distributed: gather the encoded predictions to rank 0 in :meth:`evaluate`.
        metadata: explicit metadata object (overrides the catalog look-up).

    Model output per image: ``output["panoptic_seg"] = (segment_ids (H, W), segments_info)``
    with ``segments_info`` entries ``{"id", "category_id" (contiguous), "isthing"}``; segment id
    0 is void. When ``segments_info`` is ``None``, ids are read as
    ``contiguous_category * label_divisor + instance`` with -1 for void (Detectron2 convention).

    Only the ground-truth images that were processed are evaluated (a warning reports any left
    out); for a full pass this is the whole ground-truth JSON, as in Detectron2.
    """

    needs_full_semantic_map = False  # reads "sem_seg_scores" or no semantic output

    def __init__(
        self,
        dataset_name: Any = None,
        output_dir: str | None = None,
        *,
        distributed: bool = True,
        metadata: Any = None,
    ):
        self._dataset_name, self._metadata = resolve_metadata(dataset_name, metadata)
        self._output_dir = output_dir
        self._distributed = distributed
        self._thing_contiguous_to_dataset = reverse_id_map(
            getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        )
        self._stuff_contiguous_to_dataset = reverse_id_map(
            getattr(self._metadata, "stuff_dataset_id_to_contiguous_id", None)
        )
        self.reset()

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def _convert_category_id(self, segment_info: dict) -> dict:
        """Map a segment's contiguous ``category_id`` to the dataset id (drops ``isthing``)."""
        segment_info = dict(segment_info)
        isthing = segment_info.pop("isthing", None)
        if isthing is None:
            # The model produced dataset category ids already.
            return segment_info
        mapping = self._thing_contiguous_to_dataset if isthing else self._stuff_contiguous_to_dataset
        cid = int(segment_info["category_id"])
        if cid not in mapping:
            # Mask2Former-style metadata lists every class in the stuff mapping; fall back to it.
            mapping = self._stuff_contiguous_to_dataset if isthing else self._thing_contiguous_to_dataset
        if cid not in mapping:
            raise KeyError(
                f"Contiguous category id {cid} (isthing={isthing}) has no dataset id in the "
                "metadata's thing/stuff_dataset_id_to_contiguous_id."
            )
        segment_info["category_id"] = mapping[cid]
        return segment_info

    def _segments_from_label_divisor(self, panoptic_img: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """Detectron2's ``segments_info is None`` convention: ``class * divisor + instance``."""
        label_divisor = int(getattr(self._metadata, "label_divisor", 1000))
        thing_ids = set(self._thing_contiguous_to_dataset)
        segments_info = []
        for panoptic_label in np.unique(panoptic_img):
            if panoptic_label == -1:
                continue  # void
            pred_class = int(panoptic_label) // label_divisor
            segments_info.append(
                {
                    "id": int(panoptic_label) + 1,
                    "category_id": pred_class,
                    "isthing": pred_class in thing_ids,
                }
            )
        # The official evaluation uses 0 for void.
        return panoptic_img + 1, segments_info

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        id2rgb = _import_id2rgb()
        for inp, out in zip(inputs, outputs):
            if "panoptic_seg" not in out:
                raise KeyError("COCOPanopticEvaluator needs 'panoptic_seg' in the model outputs.")
            panoptic_img, segments_info = out["panoptic_seg"]
            if isinstance(panoptic_img, torch.Tensor):
                panoptic_img = panoptic_img.cpu().numpy()
            panoptic_img = np.asarray(panoptic_img).astype(np.int64)
            if segments_info is None:
                panoptic_img, segments_info = self._segments_from_label_divisor(panoptic_img)

            present = set(np.unique(panoptic_img).tolist())
            listed = {int(s["id"]) for s in segments_info}
            unlisted = present - listed - {0}
            if unlisted:
                logger.warning(
                    "Image %s: segment ids %s are in the panoptic map but not in segments_info; "
                    "they are evaluated as void.", inp.get("file_name"), sorted(unlisted),
                )
                panoptic_img = np.where(np.isin(panoptic_img, list(unlisted)), 0, panoptic_img)
            # panopticapi rejects JSON segments that have no pixel.
            segments_info = [s for s in segments_info if int(s["id"]) in present]
            segments_info = [self._convert_category_id(s) for s in segments_info]
            for s in segments_info:
                s["id"] = int(s["id"])
                s["category_id"] = int(s["category_id"])

            file_name = os.path.basename(inp["file_name"])
            file_name_png = os.path.splitext(file_name)[0] + ".png"
            with io.BytesIO() as buf:
                Image.fromarray(id2rgb(panoptic_img)).save(buf, format="PNG")
                png_bytes = buf.getvalue()
            self._predictions.append(
                {
                    "image_id": inp["image_id"],
                    "file_name": file_name_png,
                    "png_string": png_bytes,
                    "segments_info": segments_info,
                }
            )

    def evaluate(self) -> dict:
        predictions = gather_list_on_main(self._predictions, self._distributed)
        if predictions is None:
            return {}
        if not predictions:
            logger.warning("COCOPanopticEvaluator: no predictions to evaluate.")
        try:
            from panopticapi.evaluation import pq_compute
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(_PANOPTICAPI_HINT) from e

        gt_json = getattr(self._metadata, "panoptic_json", None)
        gt_folder = getattr(self._metadata, "panoptic_root", None)
        if not gt_json or not gt_folder:
            raise ValueError("Panoptic evaluation needs metadata.panoptic_json and metadata.panoptic_root.")
        with open(gt_json, encoding="utf-8") as f:
            gt_data = json.load(f)

        with tempfile.TemporaryDirectory(prefix="panoptic_eval") as tmp:
            pred_dir = os.path.join(tmp, "pred")
            os.makedirs(pred_dir)
            pred_annotations = []
            for p in predictions:
                p = dict(p)
                with open(os.path.join(pred_dir, p["file_name"]), "wb") as f:
                    f.write(p.pop("png_string"))
                pred_annotations.append(p)

            # Evaluate the processed images only (identical to Detectron2 on a full pass).
            processed = {p["image_id"] for p in pred_annotations}
            gt_anns = [a for a in gt_data["annotations"] if a["image_id"] in processed]
            if len(gt_anns) != len(gt_data["annotations"]):
                logger.warning(
                    "Panoptic evaluation on %d of the %d ground-truth images (the processed ones).",
                    len(gt_anns), len(gt_data["annotations"]),
                )
                gt_data = dict(gt_data, annotations=gt_anns)
                gt_data["images"] = [i for i in gt_data.get("images", []) if i["id"] in processed]
                gt_json = os.path.join(tmp, "gt_subset.json")
                with open(gt_json, "w", encoding="utf-8") as f:
                    json.dump(gt_data, f)

            pred_data = copy.copy(gt_data)
            pred_data["annotations"] = pred_annotations
            out_dir = self._output_dir or tmp
            os.makedirs(out_dir, exist_ok=True)
            pred_json = os.path.join(out_dir, "predictions.json")
            with open(pred_json, "w", encoding="utf-8") as f:
                json.dump(pred_data, f)

            with capture_stdout(logger, logging.DEBUG):
                try:
                    pq_res = pq_compute(gt_json, pred_json, gt_folder=gt_folder, pred_folder=pred_dir)
                except ZeroDivisionError:
                    # panopticapi divides by zero when things or stuff have no category with any
                    # segment; recompute the statistics and report NaN for the empty group.
                    pq_res = _pq_compute_guarded(gt_data, pred_data, gt_folder, pred_dir)

        # Detectron2 order: PQ, SQ, RQ, PQ_th, SQ_th, RQ_th, PQ_st, SQ_st, RQ_st.
        res: OrderedDict[str, float] = OrderedDict()
        for key, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
            for metric in ("PQ", "SQ", "RQ"):
                res[metric + key] = 100 * float(pq_res[group][metric.lower()])
        results = OrderedDict({"panoptic_seg": res})
        _log_panoptic_results(pq_res, gt_data.get("categories", []))
        save_results_json(results, self._output_dir, "panoptic_evaluation.json")
        return results


def _pq_compute_guarded(gt_data: dict, pred_data: dict, gt_folder: str, pred_folder: str) -> dict:
    """panopticapi's statistics with NaN (instead of a ZeroDivisionError) for empty groups."""
    from panopticapi.evaluation import pq_compute_multi_core

    preds = {a["image_id"]: a for a in pred_data["annotations"]}
    matched = []
    for gt_ann in gt_data["annotations"]:
        if gt_ann["image_id"] not in preds:
            raise KeyError(f"No prediction for the image with id {gt_ann['image_id']}.")
        matched.append((gt_ann, preds[gt_ann["image_id"]]))
    categories = {c["id"]: c for c in gt_data["categories"]}
    pq_stat = pq_compute_multi_core(matched, gt_folder, pred_folder, categories)
    out: dict = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        try:
            out[name], per_class = pq_stat.pq_average(categories, isthing=isthing)
        except ZeroDivisionError:
            out[name], per_class = {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}, {}
        if name == "All":
            out["per_class"] = per_class
    return out


def _log_panoptic_results(pq_res: dict, categories: list[dict]) -> None:
    """Log the all/things/stuff table and the per-category table (tabulate when installed)."""
    headers = ["", "PQ", "SQ", "RQ", "#categories"]
    rows = [
        [name, 100 * pq_res[name]["pq"], 100 * pq_res[name]["sq"], 100 * pq_res[name]["rq"], pq_res[name]["n"]]
        for name in ("All", "Things", "Stuff")
    ]
    names = {c["id"]: c.get("name", str(c["id"])) for c in categories}
    per_class = pq_res.get("per_class", {})
    class_rows = [
        [names.get(cid, str(cid)), 100 * v["pq"], 100 * v["sq"], 100 * v["rq"]] for cid, v in per_class.items()
    ]
    try:
        from tabulate import tabulate

        table = tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".3f", stralign="center", numalign="center")
        class_table = tabulate(class_rows, headers=headers[:4], tablefmt="pipe", floatfmt=".3f")
    except ImportError:  # pragma: no cover - tabulate ships with fvcore's dependencies
        fmt = lambda r: " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in r)  # noqa: E731
        table = "\n".join([" | ".join(headers)] + [fmt(r) for r in rows])
        class_table = "\n".join([" | ".join(headers[:4])] + [fmt(r) for r in class_rows])
    logger.info("Panoptic Evaluation Results:\n%s", table)
    logger.debug("Per-category panoptic results:\n%s", class_table)

