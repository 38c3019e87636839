"""Dataset evaluators with Detectron2's protocol (``reset`` / ``process`` / ``evaluate``).

* :class:`SemSegEvaluator` — mIoU, fwIoU, mACC, pACC (+ mIoU_seen, mIoU_unseen, hIoU);
* :class:`COCOPanopticEvaluator` — PQ, SQ, RQ for all / things / stuff (panopticapi);
* :class:`InstanceSegEvaluator` (alias :data:`COCOEvaluator`) — COCO mask AP (pycocotools);
* :class:`LVISEvaluator` — LVIS AP, APr, APc, APf (lvis);
* :class:`CityscapesSemSegEvaluator`, :class:`CityscapesInstanceEvaluator` — cityscapesScripts;
* :class:`RecallEvaluator` — proposal recall at IoU 0.5 / 0.75 / 0.9, seen / unseen;
* :func:`build_evaluator` — picks them from a dataset's metadata and the enabled tasks;
* :func:`inference_on_dataset`, :func:`print_csv_format` — the evaluation loop and the
  "copypaste" lines.

All evaluators gather their state to rank 0 in ``evaluate()`` under ``torch.distributed``
(other ranks return ``{}``), return ``{task: {metric: value}}`` and save it as JSON in their
``output_dir``. The optional third-party packages are imported only when used.
"""

from .build import build_evaluator, resolve_seen_classes
from .cityscapes_evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
    print_csv_format,
)
from .instance_evaluation import COCOEvaluator, InstanceSegEvaluator, instances_to_coco_json
from .lvis_evaluation import LVISEvaluator
from .panoptic_evaluation import COCOPanopticEvaluator
from .recall_evaluation import RecallEvaluator
from .sem_seg_evaluation import SemSegEvaluator

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "inference_on_dataset",
    "inference_context",
    "print_csv_format",
    "SemSegEvaluator",
    "COCOPanopticEvaluator",
    "InstanceSegEvaluator",
    "COCOEvaluator",
    "instances_to_coco_json",
    "LVISEvaluator",
    "CityscapesSemSegEvaluator",
    "CityscapesInstanceEvaluator",
    "RecallEvaluator",
    "build_evaluator",
    "resolve_seen_classes",
]
