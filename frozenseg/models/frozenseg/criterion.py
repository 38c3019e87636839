"""FrozenSeg's training criterion from its config: Mask2Former's point-sampled set criterion
(:class:`frozenseg.modeling.criterion.SetCriterion`; docs/models/frozenseg.md §6)."""

from __future__ import annotations

from ...modeling.criterion import SetCriterion, build_weight_dict
from ...modeling.matcher import HungarianMatcher

__all__ = ["build_criterion"]


def build_criterion(cfg) -> SetCriterion:
    """SetCriterion from MODEL.MASK_FORMER.* loss keys and MODEL.SEM_SEG_HEAD.NUM_CLASSES.

    With DEEP_SUPERVISION, ``weight_dict`` also holds the aux keys for DEC_LAYERS - 1 auxiliary
    outputs (suffixes ``_0`` .. ``_{DEC_LAYERS-2}``).
    """
    mf = cfg.MODEL.MASK_FORMER
    matcher = HungarianMatcher(
        cost_class=mf.CLASS_WEIGHT,
        cost_mask=mf.MASK_WEIGHT,
        cost_dice=mf.DICE_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS,
    )
    num_aux = mf.DEC_LAYERS - 1 if mf.DEEP_SUPERVISION else 0
    weight_dict = build_weight_dict(mf.CLASS_WEIGHT, mf.MASK_WEIGHT, mf.DICE_WEIGHT, num_aux)
    return SetCriterion(
        num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=mf.NO_OBJECT_WEIGHT,
        losses=["labels", "masks"],
        num_points=mf.TRAIN_NUM_POINTS,
        oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
    )
