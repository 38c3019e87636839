"""LVIS instance segmentation evaluation (AP, APr, APc, APf, ...) via the ``lvis`` package.

Two compatibility measures keep the released ``lvis==0.5.3`` usable here without touching it:

* ``lvis/__init__.py`` imports the visualiser (matplotlib, OpenCV). When that import fails, the
  three evaluation modules (``lvis.lvis``, ``lvis.results``, ``lvis.eval``) are loaded on their
  own, under a package object that skips ``__init__``.
* ``lvis.eval`` uses ``np.float``, removed in NumPy 1.24. That module alone gets a NumPy proxy
  providing ``float`` (= ``np.float64``, what the alias meant); NumPy itself is not modified.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import logging
import sys
import types
import warnings
from collections import OrderedDict
from typing import Any, Sequence

from .instance_evaluation import InstanceSegEvaluator, _to_percent
from .utils import capture_stdout, patch_numpy_aliases

__all__ = ["LVISEvaluator", "import_lvis"]

logger = logging.getLogger(__name__)

LVIS_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"]


@functools.lru_cache(maxsize=None)
def import_lvis() -> tuple[type, type, type]:
    """Return ``(LVIS, LVISResults, LVISEval)`` from the ``lvis`` package (see module doc)."""
    try:
        from lvis import LVIS, LVISEval, LVISResults  # noqa: F401

        eval_module = sys.modules["lvis.eval"]
    except ImportError as first_error:
        spec = importlib.util.find_spec("lvis")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("The lvis package is required for LVIS evaluation: pip install lvis") from first_error
        for name in [m for m in sys.modules if m == "lvis" or m.startswith("lvis.")]:
            del sys.modules[name]
        package = types.ModuleType("lvis")
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = "lvis"
        package.__spec__ = spec
        sys.modules["lvis"] = package
        try:
            lvis_module = importlib.import_module("lvis.lvis")
            results_module = importlib.import_module("lvis.results")
            eval_module = importlib.import_module("lvis.eval")
        except ImportError:
            del sys.modules["lvis"]
            raise
        LVIS, LVISResults, LVISEval = lvis_module.LVIS, results_module.LVISResults, eval_module.LVISEval
        package.LVIS, package.LVISResults, package.LVISEval = LVIS, LVISResults, LVISEval
        logger.debug("Loaded lvis evaluation modules without lvis.vis (%s).", first_error)
    patch_numpy_aliases(eval_module)
    return LVIS, LVISResults, LVISEval


class LVISEvaluator(InstanceSegEvaluator):
    """LVIS mask AP (``iou_type="segm"``) for ``output["instances"]``.

    Args:
        dataset_name: registered dataset name or a metadata-like object with ``json_file`` and
            optionally ``thing_dataset_id_to_contiguous_id`` (without it, dataset id =
            contiguous id + 1, Detectron2's LVIS convention).
        output_dir: where ``lvis_instances_results.json`` and ``lvis_evaluation.json`` go.
        distributed: gather the predictions to rank 0 in :meth:`evaluate`.
        max_dets_per_image: detections kept per image (LVIS standard: 300).
        gt_json: LVIS annotation JSON (default ``metadata.json_file``).
        metadata: explicit metadata object (overrides the catalog look-up).

    Reported (×100): AP, AP50, AP75, APs, APm, APl, APr, APc, APf; a value LVIS leaves
    undefined (-1, e.g. no rare category in the evaluated images) is NaN.
    """

    _metric_names = LVIS_METRICS
    _metrics_label = "LVIS"
    _logger = logger

    def __init__(
        self,
        dataset_name: Any = None,
        output_dir: str | None = None,
        *,
        distributed: bool = True,
        max_dets_per_image: int | Sequence[int] | None = 300,
        gt_json: str | None = None,
        metadata: Any = None,
    ):
        if isinstance(max_dets_per_image, Sequence):
            max_dets_per_image = max(max_dets_per_image)
        super().__init__(dataset_name, output_dir, distributed=distributed, gt_json=gt_json, metadata=metadata)
        self._lvis_max_dets = int(max_dets_per_image or 300)

    def _results_file_name(self) -> str:
        return "lvis_instances_results.json"

    def _summary_file_name(self) -> str:
        return "lvis_evaluation.json"

    def _map_category_ids(self, results: list[dict]) -> list[dict]:
        if self._contiguous_to_dataset is not None:
            return super()._map_category_ids(results)
        return [dict(r, category_id=r["category_id"] + 1) for r in results]

    def _evaluate_results(self, results: list[dict], img_ids: list,
                          stems: dict[Any, str]) -> "OrderedDict[str, float]":
        """LVIS metrics of ``results`` on the processed images ``img_ids`` (LVIS datasets take
        their image ids from the LVIS json itself, so ``stems`` is not needed)."""
        if not self._gt_json:
            raise ValueError("LVIS evaluation needs the LVIS annotation JSON (metadata.json_file).")
        if len(results) == 0:
            return self._nan_metrics("No predictions from the model")
        LVIS, LVISResults, LVISEval = import_lvis()
        with capture_stdout(logger, logging.INFO), warnings.catch_warnings():
            # lvis 0.5.3 calls the deprecated Logger.warn.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lvis\.")
            lvis_gt = LVIS(self._gt_json)
            gt_img_ids = set(lvis_gt.get_img_ids())
            results = [r for r in results if r["image_id"] in gt_img_ids]
            if not results:
                return self._nan_metrics("No predictions on ground-truth images")
            lvis_dt = LVISResults(lvis_gt, copy.deepcopy(results), max_dets=self._lvis_max_dets)
            lvis_eval = LVISEval(lvis_gt, lvis_dt, "segm")
            lvis_eval.params.img_ids = sorted(i for i in set(img_ids) if i in gt_img_ids)
            lvis_eval.run()
            lvis_eval.print_results()
        raw = lvis_eval.get_results()
        res: OrderedDict[str, float] = OrderedDict((m, _to_percent(raw[m])) for m in LVIS_METRICS)
        logger.info("Evaluation results for segm: %s", dict(res))
        return res

