"""Hungarian matching of predicted masks to ground-truth segments (docs/models/frozenseg.md §6).

Provenance: bipartite (Hungarian) matching of set predictions is from DETR (Carion et al.,
2020); the mask costs on points shared by prediction and target are Mask2Former's (Cheng et al.,
2022). Written for this project.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from .point_sampling import point_sample

__all__ = [
    "BaseHungarianMatcher",
    "HungarianMatcher",
    "batch_dice_cost",
    "batch_sigmoid_ce_cost",
    "pairwise_mean_cost",
]


def batch_dice_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice cost.

    Args:
        inputs: (N, P) logits. targets: (M, P) values in [0, 1].
    Returns:
        (N, M): ``1 - (2 * sum(s_n * t_m) + 1) / (sum(s_n) + sum(t_m) + 1)``, s = sigmoid.
    """
    s = inputs.sigmoid()
    numerator = 2 * s @ targets.t()
    denominator = s.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_mean_cost(pos: torch.Tensor, neg: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise mean of a per-pixel loss that is ``pos`` where the target is 1 and ``neg`` where 0.

    Args:
        pos, neg: (N, P) per-point losses of prediction n against target value 1 and 0.
        targets: (M, P) values in [0, 1].
    Returns:
        (N, M): ``(pos @ t^T + neg @ (1-t)^T) / P``, i.e. ``mean_p [pos t + neg (1 - t)]``.
    """
    loss = pos @ targets.t() + neg @ (1 - targets).t()
    return loss / max(pos.shape[1], 1)


def batch_sigmoid_ce_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise mean binary cross-entropy with logits.

    Args:
        inputs: (N, P) logits. targets: (M, P) values in [0, 1].
    Returns:
        (N, M): ``mean_p BCE(x_n,p, t_m,p)``, the :func:`pairwise_mean_cost` of
        pos = BCE(x, 1) = softplus(-x) and neg = BCE(x, 0) = softplus(x).
    """
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return pairwise_mean_cost(pos, neg, targets)


def _grid_point_coords(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(h*w, 2) normalised (x, y) coordinates of the pixel centres of an h x w grid."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


class BaseHungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets per image minimising
    ``cost_mask * mask_cost + cost_class * (-p_class) + cost_dice * dice_cost``, with p the
    softmax over the K+1 class logits; subclasses define the two mask costs (:meth:`mask_costs`).
    """

    def __init__(self, cost_class: float = 1, cost_mask: float = 1, cost_dice: float = 1):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("All matching costs are 0.")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice

    def mask_costs(
        self, out_mask: torch.Tensor, tgt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairwise mask and dice costs of one image.

        Args:
            out_mask: (Q, H, W) float32 mask logits. tgt_mask: (N, H', W') float32 binary masks.
        Returns:
            (cost_mask, cost_dice), each (Q, N).
        """
        raise NotImplementedError

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: "pred_logits" (B, Q, K+1) class logits, "pred_masks" (B, Q, H, W) logits.
            targets: per image, "labels" (N,) int64 in [0, K) and "masks" (N, H', W') binary
                (any resolution: :meth:`mask_costs` brings both to a common one).
        Returns:
            per image a pair (index_i, index_j) of int64 CPU tensors of length min(Q, N):
            query index_i[k] is matched to target index_j[k].
        """
        pred_logits = outputs["pred_logits"]
        pred_masks = outputs["pred_masks"]
        bs, num_queries = pred_logits.shape[:2]
        device = pred_logits.device
        indices = []
        with torch.autocast(device_type=device.type, enabled=False):
            for b in range(bs):
                tgt_ids = targets[b]["labels"].to(device=device, dtype=torch.int64)
                if tgt_ids.numel() == 0:
                    empty = torch.empty(0, dtype=torch.int64)
                    indices.append((empty, empty.clone()))
                    continue
                prob = pred_logits[b].float().softmax(-1)  # (Q, K+1)
                cost_class = -prob[:, tgt_ids]  # (Q, N)
                cost_mask, cost_dice = self.mask_costs(
                    pred_masks[b].float(),
                    targets[b]["masks"].to(device=device, dtype=torch.float32),
                )

                c = (
                    self.cost_mask * cost_mask
                    + self.cost_class * cost_class
                    + self.cost_dice * cost_dice
                )
                c = c.reshape(num_queries, -1).cpu()
                if not torch.isfinite(c).all():
                    raise FloatingPointError(
                        "the predictions became infinite or NaN (the matching cost is not finite)"
                    )
                i, j = linear_sum_assignment(c.numpy())
                indices.append(
                    (torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
                )
        return indices

    def extra_repr(self) -> str:
        return f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}"


class HungarianMatcher(BaseHungarianMatcher):
    """FrozenSeg's matcher: mask cost = mean sigmoid BCE, plus dice, on points.

    Mask costs are computed on ``num_points`` uniformly random points shared by all predictions
    and targets of an image (``torch.rand``); with ``num_points <= 0`` they are computed at every
    pixel centre of the prediction grid instead (targets sampled bilinearly there).
    """

    def __init__(
        self, cost_class: float = 1, cost_mask: float = 1, cost_dice: float = 1, num_points: int = 0
    ):
        super().__init__(cost_class=cost_class, cost_mask=cost_mask, cost_dice=cost_dice)
        self.num_points = int(num_points)

    def mask_costs(
        self, out_mask: torch.Tensor, tgt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point-sampled BCE and dice costs, (Q, N) each (see :meth:`BaseHungarianMatcher.mask_costs`)."""
        device = out_mask.device
        out_mask = out_mask[:, None]  # (Q, 1, H, W)
        tgt_mask = tgt_mask[:, None]  # (N, 1, H', W')
        if self.num_points > 0:
            coords = torch.rand(1, self.num_points, 2, device=device)
        else:
            coords = _grid_point_coords(*out_mask.shape[-2:], device=device)[None]
        tgt_pts = point_sample(
            tgt_mask, coords.expand(tgt_mask.shape[0], -1, -1), align_corners=False
        ).squeeze(1)  # (N, P)
        out_pts = point_sample(
            out_mask, coords.expand(out_mask.shape[0], -1, -1), align_corners=False
        ).squeeze(1)  # (Q, P)
        return batch_sigmoid_ce_cost(out_pts, tgt_pts), batch_dice_cost(out_pts, tgt_pts)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_points={self.num_points}"
