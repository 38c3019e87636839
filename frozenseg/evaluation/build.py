"""``build_evaluator``: pick the evaluators of a dataset from its metadata and the enabled tasks.

Selection by ``metadata.evaluator_type`` and ``cfg.MODEL.MASK_FORMER.TEST.{SEMANTIC_ON,
INSTANCE_ON, PANOPTIC_ON, RECALL_ON}`` (FrozenSeg / FC-CLIP ``train_net.py`` rules, with every
task gated by its switch):

==================================  ============================================================
evaluator_type                      evaluators
==================================  ============================================================
``sem_seg``                         SemSeg (SEMANTIC_ON), Recall (RECALL_ON)
``coco_panoptic_seg``,              SemSeg (SEMANTIC_ON), COCOPanoptic (PANOPTIC_ON),
``ade20k_panoptic_seg``,            InstanceSeg (INSTANCE_ON), Recall (RECALL_ON)
``mapillary_vistas_panoptic_seg``,
any other ``*panoptic*`` type
``cityscapes_panoptic_seg``         CityscapesSemSeg (SEMANTIC_ON), COCOPanoptic (PANOPTIC_ON),
                                    CityscapesInstance (INSTANCE_ON), Recall (RECALL_ON)
``cityscapes_sem_seg``              CityscapesSemSeg
``cityscapes_instance``             CityscapesInstance
``coco``                            InstanceSeg (COCO mask AP)
``lvis``                            LVIS
==================================  ============================================================

Seen/unseen classes (for ``mIoU_seen``/``mIoU_unseen``/``hIoU`` and the recall split) come from
``metadata.seen_classes`` when set; otherwise a test class is seen when any of its synonyms is
a synonym of a training class (docs/models/frozenseg.md §7.2) or, for a model that takes each class string as one
prompt (``literal_vocabulary``, OVSeg), when its whole string is a training class string.
Synonyms come from
``frozenseg.data.dataset_vocabulary`` (``metadata.stuff_classes`` for unregistered datasets);
the training vocabulary is the model's (``training_vocabulary(cfg)`` of the model contract:
``DATASETS.TRAIN[0]``'s, or FrozenSeg's ``MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE``). Without a
training vocabulary there is no split.

The tasks evaluated are the model's (``tasks`` of the model contract) when the caller passes
them, else the config's ``MODEL.MASK_FORMER.TEST.*_ON`` switches.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from .cityscapes_evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from .evaluator import DatasetEvaluator, DatasetEvaluators
from .instance_evaluation import InstanceSegEvaluator
from .lvis_evaluation import LVISEvaluator
from .panoptic_evaluation import COCOPanopticEvaluator
from .recall_evaluation import RecallEvaluator
from .sem_seg_evaluation import SemSegEvaluator
from .utils import resolve_metadata, seen_mask_from_names

__all__ = ["build_evaluator", "configured_tasks", "resolve_seen_classes", "task_switch_key"]

logger = logging.getLogger(__name__)


#: The Mask2Former output switches (``MODEL.MASK_FORMER.TEST.<key>``) and their defaults, per task.
_TASK_SWITCHES = {"semantic": ("SEMANTIC_ON", True), "panoptic": ("PANOPTIC_ON", False),
                  "instance": ("INSTANCE_ON", False), "proposals": ("RECALL_ON", False)}


def task_switch_key(task: str) -> str:
    """The config key that switches ``task`` on (``MODEL.MASK_FORMER.TEST.PANOPTIC_ON``, ...)."""
    return f"MODEL.MASK_FORMER.TEST.{_TASK_SWITCHES[task][0]}"


def configured_tasks(cfg) -> tuple[str, ...]:
    """The tasks a config's ``MODEL.MASK_FORMER.TEST.*_ON`` switches ask for (a switch the
    config's model does not define takes its Mask2Former default)."""
    test = cfg.MODEL.get("MASK_FORMER", {}).get("TEST", {})
    return tuple(t for t, (key, default) in _TASK_SWITCHES.items() if bool(test.get(key, default)))


def _vocabulary(dataset_name: str | None, cfg, fallback: Any) -> list[str] | None:
    """Class names with synonyms of a registered dataset (``frozenseg.data.dataset_vocabulary``),
    else ``fallback`` (e.g. ``metadata.stuff_classes``, which holds the first names only)."""
    if dataset_name:
        try:
            from frozenseg.data import dataset_vocabulary

            return list(dataset_vocabulary(dataset_name, cfg))
        except Exception as e:  # noqa: BLE001 - unregistered dataset, files absent, no data package
            logger.debug("No registered vocabulary for %r (%s); using the metadata.", dataset_name, e)
    return list(fallback) if fallback else None


def _train_vocabulary(cfg) -> list[str] | None:
    """The training vocabulary of the config's model (its ``training_vocabulary``); None when the
    training set is not registered (then there is no seen/unseen split)."""
    from frozenseg.data import VocabularyError
    from frozenseg.modeling.build import meta_arch_class

    try:
        return meta_arch_class(cfg).training_vocabulary(cfg)
    except (KeyError, VocabularyError) as e:
        logger.info("No training vocabulary (%s): no seen/unseen split.", e)
        return None


def _literal_vocabulary(cfg) -> bool:
    """True when the model of ``cfg`` takes each class string as one prompt
    (``literal_vocabulary`` of its meta-architecture class, e.g. OVSeg)."""
    from frozenseg.modeling.build import meta_arch_class

    return meta_arch_class(cfg).literal_vocabulary


def resolve_seen_classes(cfg, metadata: Any, dataset_name: str | None = None) -> Any:
    """Seen classes of ``metadata.stuff_classes`` for the seen/unseen split, or ``None``.

    ``metadata.seen_classes`` (mask, indices or names) is returned as given. Otherwise a
    boolean mask is built from the test vocabulary (see :func:`_vocabulary`) and the training
    vocabulary (see :func:`_train_vocabulary`): with the spec's synonym rule, or by whole class
    strings for a model with a literal vocabulary (:func:`_literal_vocabulary`).
    """
    explicit = getattr(metadata, "seen_classes", None)
    if explicit is not None:
        return explicit
    stuff = getattr(metadata, "stuff_classes", None)
    if not stuff or cfg is None:
        return None
    train_names = _train_vocabulary(cfg)
    if not train_names:
        logger.info("No training vocabulary: no seen/unseen split in the evaluation.")
        return None
    test_names = _vocabulary(dataset_name, cfg, stuff)
    if test_names is None or len(test_names) != len(stuff):
        test_names = list(stuff)
    return seen_mask_from_names(test_names, train_names, literal=_literal_vocabulary(cfg))


def build_evaluator(
    cfg, dataset_name: str | None, output_dir: str | None = None, metadata: Any = None,
    tasks: Sequence[str] | None = None,
):
    """Build the evaluator(s) for ``dataset_name`` (a :class:`DatasetEvaluators` when several).

    Args:
        cfg: the config (reads ``TEST.SEM_SEG_MIOU_DENOMINATOR``,
            ``OUTPUT_DIR`` and the training vocabulary for the seen split).
        dataset_name: registered test dataset name (metadata looked up in ``MetadataCatalog``).
        output_dir: where evaluators write their files (default ``cfg.OUTPUT_DIR/inference``).
        metadata: explicit metadata object (tests, or datasets outside the catalog).
        tasks: the outputs the model gives (``"semantic"``, ``"panoptic"``, ``"instance"``,
            ``"proposals"``); None reads the config's ``MODEL.MASK_FORMER.TEST.*_ON`` switches.

    Raises:
        NotImplementedError: for an unknown ``evaluator_type``, or when no evaluator applies.
    """
    dataset_name, metadata = resolve_metadata(dataset_name, metadata)
    if output_dir is None:
        output_dir = os.path.join(getattr(cfg, "OUTPUT_DIR", "./output"), "inference")
    evaluator_type = getattr(metadata, "evaluator_type", None)
    if tasks is None:
        tasks = configured_tasks(cfg)
    semantic_on, instance_on = "semantic" in tasks, "instance" in tasks
    panoptic_on, recall_on = "panoptic" in tasks, "proposals" in tasks
    seen = resolve_seen_classes(cfg, metadata, dataset_name)
    common = dict(metadata=metadata)

    def sem_seg():
        return SemSegEvaluator(
            dataset_name, distributed=True, output_dir=output_dir, seen_classes=seen,
            miou_denominator=cfg.TEST.SEM_SEG_MIOU_DENOMINATOR, **common,
        )

    def recall():
        return RecallEvaluator(dataset_name, distributed=True, output_dir=output_dir, seen_classes=seen, **common)

    evaluators: list[DatasetEvaluator] = []
    if evaluator_type == "sem_seg":
        if semantic_on:
            evaluators.append(sem_seg())
        if recall_on:
            evaluators.append(recall())
    elif evaluator_type in ("cityscapes_panoptic_seg",):
        if semantic_on:
            evaluators.append(CityscapesSemSegEvaluator(dataset_name, output_dir=output_dir, **common))
        if panoptic_on:
            evaluators.append(COCOPanopticEvaluator(dataset_name, output_dir, **common))
        if instance_on:
            evaluators.append(CityscapesInstanceEvaluator(dataset_name, output_dir=output_dir, **common))
        if recall_on:
            evaluators.append(recall())
    elif evaluator_type == "cityscapes_sem_seg":
        evaluators.append(CityscapesSemSegEvaluator(dataset_name, output_dir=output_dir, **common))
    elif evaluator_type == "cityscapes_instance":
        evaluators.append(CityscapesInstanceEvaluator(dataset_name, output_dir=output_dir, **common))
    elif isinstance(evaluator_type, str) and "panoptic" in evaluator_type:
        if semantic_on:
            evaluators.append(sem_seg())
        if panoptic_on:
            evaluators.append(COCOPanopticEvaluator(dataset_name, output_dir, **common))
        if instance_on:
            evaluators.append(InstanceSegEvaluator(dataset_name, output_dir, **common))
        if recall_on:
            evaluators.append(recall())
    elif evaluator_type == "coco":
        evaluators.append(InstanceSegEvaluator(dataset_name, output_dir, **common))
    elif evaluator_type == "lvis":
        evaluators.append(LVISEvaluator(dataset_name, output_dir, **common))
    else:
        raise NotImplementedError(
            f"No evaluator for dataset {dataset_name!r} with evaluator_type {evaluator_type!r}."
        )
    if recall_on and evaluator_type in ("coco", "lvis", "cityscapes_sem_seg", "cityscapes_instance"):
        logger.warning("RECALL_ON is ignored for evaluator_type %r (needs panoptic or semantic GT).", evaluator_type)

    if not evaluators:
        raise NotImplementedError(
            f"No evaluator enabled for dataset {dataset_name!r} ({evaluator_type}): check "
            "MODEL.MASK_FORMER.TEST.SEMANTIC_ON / INSTANCE_ON / PANOPTIC_ON / RECALL_ON."
        )
    logger.info("Evaluators for %s: %s", dataset_name, [type(e).__name__ for e in evaluators])
    if len(evaluators) == 1:
        return evaluators[0]
    return DatasetEvaluators(evaluators)
