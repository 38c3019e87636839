"""Set-prediction losses of Mask2Former-style training, shared by the models: the base criterion
(Hungarian matching, classification, deep supervision) and Mask2Former's point-sampled mask
losses (:class:`SetCriterion`, FrozenSeg's; docs/models/frozenseg.md §6).

Classification: cross-entropy over K+1 classes (no-object last, weight ``eos_coef``); masks:
point-sampled binary cross-entropy and dice on importance-sampled points, normalised by the
number of target masks averaged over workers; applied to the final and every auxiliary output.

Provenance: DETR (Carion et al., 2020) set criterion with Hungarian matching and deep
supervision; Mask2Former (Cheng et al., 2022) point-sampled mask losses with PointRend-style
importance sampling (Kirillov et al., 2020). Written for this project.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..utils import comm
from .point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)

__all__ = [
    "BaseSetCriterion",
    "SetCriterion",
    "dice_loss",
    "sigmoid_ce_loss",
    "build_weight_dict",
]


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss summed over masks and divided by ``num_masks``.

    Args:
        inputs: (M, P) logits; targets: (M, P) values in [0, 1].
    Returns:
        scalar ``sum_m [1 - (2 sum_p s t + 1) / (sum_p s + sum_p t + 1)] / num_masks``,
        s = sigmoid(inputs).
    """
    s = inputs.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (s * targets).sum(-1)
    denominator = s.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over points, summed over masks, / ``num_masks``.

    Args:
        inputs: (M, P) logits; targets: (M, P) values in [0, 1].
    """
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def _pad_masks(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad (N, h', w') masks with zeros at the bottom/right to (N, h, w)."""
    ph, pw = h - masks.shape[-2], w - masks.shape[-1]
    if ph == 0 and pw == 0:
        return masks
    return F.pad(masks, (0, pw, 0, ph), value=0)


class BaseSetCriterion(nn.Module):
    """Hungarian-matched losses "labels" (``loss_ce``) and "masks" (``loss_mask``,
    ``loss_dice``), plus the same with suffix ``_{i}`` for ``outputs["aux_outputs"][i]``; each
    output is matched separately. Subclasses define the mask losses of matched pairs
    (:meth:`mask_losses`).

    ``forward`` returns the *unweighted* losses; multiply by ``weight_dict`` (kept here for the
    caller) to get the training objective.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: dict[str, float],
        eos_coef: float,
        losses: Sequence[str],
    ):
        """
        Args:
            num_classes: K, classes of the training vocabulary (no-object is class K).
            matcher: a ``BaseHungarianMatcher``.
            weight_dict: loss name -> weight (not applied by ``forward``).
            eos_coef: cross-entropy weight of the no-object class.
            losses: subset of ("labels", "masks").
        """
        super().__init__()
        for loss in losses:
            if loss not in ("labels", "masks"):
                raise ValueError(f"Unknown loss {loss!r}; valid: 'labels', 'masks'.")
        self.num_classes = int(num_classes)
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = float(eos_coef)
        self.losses = list(losses)
        empty_weight = torch.ones(self.num_classes + 1)
        empty_weight[-1] = self.eos_coef
        self.register_buffer("empty_weight", empty_weight)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _get_src_permutation_idx(indices):
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    def loss_labels(self, outputs, targets, indices, num_masks):
        """Cross-entropy over K+1 classes; unmatched queries have target K (no-object)."""
        src_logits = outputs["pred_logits"].float()  # (B, Q, K+1)
        if src_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"pred_logits has {src_logits.shape[-1]} columns but the criterion expects "
                f"num_classes + 1 = {self.num_classes + 1} (MODEL.SEM_SEG_HEAD.NUM_CLASSES = "
                f"{self.num_classes} plus no-object): training must use the training vocabulary."
            )
        device = src_logits.device
        batch_idx, src_idx = self._get_src_permutation_idx(indices)
        target_classes_o = torch.cat(
            [t["labels"].to(device)[j.to(device)] for t, (_, j) in zip(targets, indices)]
        ).to(torch.int64)
        target_classes = torch.full(
            src_logits.shape[:2], self.num_classes, dtype=torch.int64, device=device
        )
        target_classes[batch_idx.to(device), src_idx.to(device)] = target_classes_o
        loss_ce = F.cross_entropy(
            src_logits.transpose(1, 2), target_classes, self.empty_weight.to(device)
        )
        return {"loss_ce": loss_ce}

    def mask_losses(
        self, src_masks: torch.Tensor, target_masks: torch.Tensor, num_masks: float
    ) -> dict[str, torch.Tensor]:
        """``loss_mask`` and ``loss_dice`` of matched pairs.

        Args:
            src_masks: (M, 1, H, W) predicted mask logits (the model's dtype).
            target_masks: (M, 1, h, w) float32 binary target masks (the batch's padded size).
            num_masks: normaliser (see :meth:`get_num_masks`).
        """
        raise NotImplementedError

    def loss_masks(self, outputs, targets, indices, num_masks):
        """Mask losses (:meth:`mask_losses`) of the matched (prediction, target) mask pairs."""
        pred_masks = outputs["pred_masks"]  # (B, Q, H, W)
        device = pred_masks.device
        batch_idx, src_idx = self._get_src_permutation_idx(indices)
        if src_idx.numel() == 0:  # no target in the whole batch: keep the graph connected
            zero = pred_masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        src_masks = pred_masks[batch_idx.to(device), src_idx.to(device)][:, None]  # (M,1,H,W)

        # Matched target masks, padded at the bottom/right to a common size across the batch.
        h = max(int(t["masks"].shape[-2]) for t in targets)
        w = max(int(t["masks"].shape[-1]) for t in targets)
        tgt = [
            _pad_masks(t["masks"].to(device)[j.to(device)], h, w)
            for t, (_, j) in zip(targets, indices)
            if j.numel() > 0
        ]
        target_masks = torch.cat(tgt).to(torch.float32)[:, None]  # (M, 1, h, w)
        return self.mask_losses(src_masks, target_masks, num_masks)

    def get_loss(self, loss, outputs, targets, indices, num_masks):
        fn = {"labels": self.loss_labels, "masks": self.loss_masks}[loss]
        return fn(outputs, targets, indices, num_masks)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def get_num_masks(targets, device) -> float:
        """Total number of target masks, averaged over distributed workers, at least 1."""
        n = torch.as_tensor(
            [float(sum(len(t["labels"]) for t in targets))], dtype=torch.float32, device=device
        )
        world = comm.get_world_size()
        if world > 1:
            dist.all_reduce(n)
        return torch.clamp(n / world, min=1).item()

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """
        Args:
            outputs: "pred_logits" (B, Q, K+1), "pred_masks" (B, Q, H, W) and optionally
                "aux_outputs": a list of dicts with the same two keys.
            targets: per image "labels" (N,) int64 and "masks" (N, H', W') binary masks (e.g.
                at the padded image size; images of a batch may differ, they are zero-padded).
        Returns:
            unweighted losses: loss_ce, loss_mask, loss_dice and loss_*_{i} per aux output i.
        """
        outputs_without_aux = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        indices = self.matcher(outputs_without_aux, targets)
        num_masks = self.get_num_masks(targets, outputs["pred_logits"].device)

        losses: dict[str, torch.Tensor] = {}
        for loss in self.losses:
            losses.update(self.get_loss(loss, outputs, targets, indices, num_masks))
        for i, aux in enumerate(outputs.get("aux_outputs", []) or []):
            aux_indices = self.matcher(aux, targets)
            for loss in self.losses:
                l_dict = self.get_loss(loss, aux, targets, aux_indices, num_masks)
                losses.update({f"{k}_{i}": v for k, v in l_dict.items()})
        return losses

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={self.losses}, "
            f"weight_dict={self.weight_dict}"
        )


class SetCriterion(BaseSetCriterion):
    """Mask2Former's criterion (FrozenSeg's): mask losses are sigmoid BCE and dice on importance-sampled points
    (see :class:`BaseSetCriterion` for the rest)."""

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: dict[str, float],
        eos_coef: float,
        losses: Sequence[str],
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
    ):
        """
        Args:
            num_classes, matcher, weight_dict, eos_coef, losses: see :class:`BaseSetCriterion`.
            num_points: points sampled per mask for the mask losses.
            oversample_ratio, importance_sample_ratio: importance sampling of those points.
        """
        super().__init__(num_classes, matcher, weight_dict, eos_coef, losses)
        self.num_points = int(num_points)
        self.oversample_ratio = float(oversample_ratio)
        self.importance_sample_ratio = float(importance_sample_ratio)

    def mask_losses(self, src_masks, target_masks, num_masks):
        """Point-sampled sigmoid BCE and dice (normalised point coordinates refer to the padded
        target frame and to the prediction frame alike)."""
        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks.detach().float(),
                calculate_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )
            point_labels = point_sample(target_masks, point_coords, align_corners=False).squeeze(1)
        point_logits = point_sample(src_masks, point_coords, align_corners=False).squeeze(1)
        point_logits = point_logits.float()
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_points={self.num_points}, "
            f"oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}"
        )


def build_weight_dict(
    class_weight: float, mask_weight: float, dice_weight: float, num_aux: int
) -> dict[str, float]:
    """{"loss_ce", "loss_mask", "loss_dice"} weights plus copies with suffix ``_{i}``, i < num_aux."""
    base = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    weight_dict = dict(base)
    for i in range(num_aux):
        weight_dict.update({f"{k}_{i}": v for k, v in base.items()})
    return weight_dict
