"""MaskFormer-v1 matcher and set criterion: the losses of OVSeg's proposal generator (OVSeg spec
§3.A).

Differs from FrozenSeg's point-sampled criterion (:mod:`frozenseg.modeling.criterion`) in the mask
terms only: the mask loss and cost are a sigmoid **focal** loss (alpha 0.25, gamma 2) instead of
BCE, and both they and dice are computed on **every pixel** instead of on sampled points — for
matching at the prediction resolution (H/4) with the targets downsampled nearest, for the loss at
the target resolution with the predictions upsampled bilinearly. The Hungarian loop, the class
cost and loss, dice, ``num_masks`` and deep supervision are FrozenSeg's
(:class:`~frozenseg.modeling.matcher.BaseHungarianMatcher`,
:class:`~frozenseg.modeling.criterion.BaseSetCriterion`).

Provenance: MaskFormer (Cheng, Schwing and Kirillov, NeurIPS 2021), whose criterion OVSeg (Liang
et al., CVPR 2023) trains with; focal loss from Lin et al. (ICCV 2017). Written for this project.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...modeling.criterion import BaseSetCriterion, build_weight_dict, dice_loss
from ...modeling.matcher import BaseHungarianMatcher, batch_dice_cost, pairwise_mean_cost

__all__ = [
    "FOCAL_ALPHA",
    "FOCAL_GAMMA",
    "MaskFormerHungarianMatcher",
    "MaskFormerSetCriterion",
    "batch_sigmoid_focal_cost",
    "build_maskformer_criterion",
    "sigmoid_focal_loss",
]

#: Focal-loss parameters of MaskFormer-v1 (fixed in the release; no config keys).
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_masks: float,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> torch.Tensor:
    """Sigmoid focal loss, mean over pixels, summed over masks, / ``num_masks``.

    Args:
        inputs: (M, P) logits; targets: (M, P) values in [0, 1].
        alpha: weight of the positive term (1 - alpha for the negative one); < 0 disables it.
        gamma: focusing exponent.
    Returns:
        scalar ``sum_m mean_p [a_t (1 - p_t)^gamma BCE(x, t)] / num_masks`` with p = sigmoid(x),
        ``p_t = p t + (1 - p)(1 - t)`` and ``a_t = alpha t + (1 - alpha)(1 - t)``.
    """
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def batch_sigmoid_focal_cost(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> torch.Tensor:
    """Pairwise mean sigmoid focal loss (the per-pair value of :func:`sigmoid_focal_loss`).

    Args:
        inputs: (N, P) logits. targets: (M, P) binary values.
    Returns:
        (N, M): :func:`~frozenseg.modeling.matcher.pairwise_mean_cost` of
        pos = alpha (1 - p)^gamma BCE(x, 1) and neg = (1 - alpha) p^gamma BCE(x, 0), p = sigmoid(x).
    """
    prob = inputs.sigmoid()
    pos = (1 - prob) ** gamma * F.binary_cross_entropy_with_logits(
        inputs, torch.ones_like(inputs), reduction="none"
    )
    neg = prob**gamma * F.binary_cross_entropy_with_logits(
        inputs, torch.zeros_like(inputs), reduction="none"
    )
    if alpha >= 0:
        pos = pos * alpha
        neg = neg * (1 - alpha)
    return pairwise_mean_cost(pos, neg, targets)


class MaskFormerHungarianMatcher(BaseHungarianMatcher):
    """MaskFormer-v1 matcher: ``C = cost_class (-p[q, c]) + cost_mask focal + cost_dice dice``
    (p: softmax over K+1), mask terms on every pixel of the prediction grid with the targets
    resized **nearest** to it (the released ``memory_efficient_forward``)."""

    def mask_costs(
        self, out_mask: torch.Tensor, tgt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            out_mask: (Q, h, w) float32 mask logits (h, w: prediction grid, H/4 x W/4 padded).
            tgt_mask: (N, H, W) float32 binary masks at any resolution (the padded image's).
        Returns:
            (focal cost, dice cost), each (Q, N).
        """
        tgt = F.interpolate(tgt_mask[:, None], size=out_mask.shape[-2:], mode="nearest")
        out = out_mask.flatten(1)  # (Q, h*w)
        tgt = tgt[:, 0].flatten(1)  # (N, h*w)
        return batch_sigmoid_focal_cost(out, tgt), batch_dice_cost(out, tgt)


class MaskFormerSetCriterion(BaseSetCriterion):
    """MaskFormer-v1 set criterion (docs/models/ovseg.md §3.A): ``loss_ce`` (cross-entropy over K+1,
    no-object weight ``eos_coef`` in the persistent buffer ``empty_weight`` (K+1,), a key of the
    released checkpoints), ``loss_mask`` (sigmoid focal) and ``loss_dice`` at **target
    resolution**: matched predictions (B, Q, h, w) are upsampled bilinearly
    (``align_corners=False``) to the padded target size, no point sampling. Each loss is summed
    over matched masks and divided by ``num_masks`` (target masks all-reduced over ranks / world
    size, at least 1); aux outputs get the suffixes ``_0`` .. ``_{L-2}``.
    """

    def mask_losses(self, src_masks, target_masks, num_masks):
        """Focal and dice on all pixels of the (M, 1, h, w) targets, float32."""
        src = F.interpolate(
            src_masks.float(), size=target_masks.shape[-2:], mode="bilinear", align_corners=False
        )
        src = src[:, 0].flatten(1)  # (M, H*W)
        tgt = target_masks[:, 0].flatten(1)
        return {
            "loss_mask": sigmoid_focal_loss(src, tgt, num_masks),
            "loss_dice": dice_loss(src, tgt, num_masks),
        }


def build_maskformer_criterion(cfg) -> MaskFormerSetCriterion:
    """MaskFormer-v1 criterion of OVSeg's proposal generator from the config.

    Reads MODEL.SEM_SEG_HEAD.NUM_CLASSES (K; ``empty_weight`` has K+1 entries) and OVSeg's
    MODEL.MASK_FORMER.{CLASS_WEIGHT, NO_OBJECT_WEIGHT, MASK_WEIGHT, DICE_WEIGHT, DEEP_SUPERVISION,
    DEC_LAYERS}. MASK_WEIGHT weighs the **focal** loss and cost (20 in the release); CLASS_WEIGHT
    is 1 in the release, which hard-codes it. With DEEP_SUPERVISION, ``weight_dict`` also weighs
    the DEC_LAYERS - 1 aux outputs (DEC_LAYERS = DETR decoder layers, 6 in the release: suffixes
    ``_0`` .. ``_4``).
    """
    mf = cfg.MODEL.MASK_FORMER
    class_weight = mf.CLASS_WEIGHT
    matcher = MaskFormerHungarianMatcher(
        cost_class=class_weight, cost_mask=mf.MASK_WEIGHT, cost_dice=mf.DICE_WEIGHT
    )
    num_aux = mf.DEC_LAYERS - 1 if mf.DEEP_SUPERVISION else 0
    return MaskFormerSetCriterion(
        num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        matcher=matcher,
        weight_dict=build_weight_dict(class_weight, mf.MASK_WEIGHT, mf.DICE_WEIGHT, num_aux),
        eos_coef=mf.NO_OBJECT_WEIGHT,
        losses=["labels", "masks"],
    )
