"""Point sampling for point-based mask losses and matching costs.

Provenance: PointRend (Kirillov et al., 2020) introduced point-sampled mask supervision with
importance sampling of uncertain points; Mask2Former (Cheng et al., 2022) uses it for its mask
losses and matching costs. Written for this project.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

__all__ = ["point_sample", "get_uncertain_point_coords_with_randomness", "calculate_uncertainty"]


def point_sample(
    input: torch.Tensor, point_coords: torch.Tensor, align_corners: bool = False, **kwargs
) -> torch.Tensor:
    """Bilinearly sample ``input`` at normalised point coordinates.

    Args:
        input: (N, C, H, W) feature or logit maps.
        point_coords: (N, P, 2) or (N, Hg, Wg, 2) coordinates in [0, 1] x [0, 1], ordered
            (x, y); (0, 0) is the top-left corner of the map and (1, 1) the bottom-right one
            (``align_corners=False`` convention: pixel i covers [i/W, (i+1)/W]).
        align_corners: passed to ``F.grid_sample``.
        **kwargs: further ``F.grid_sample`` options (``mode``, ``padding_mode``).
    Returns:
        (N, C, P) for (N, P, 2) coordinates, or (N, C, Hg, Wg) for 4-D coordinates; float32
        (or float64) even for half-precision inputs.
    """
    add_dim = point_coords.dim() == 3
    if add_dim:
        point_coords = point_coords.unsqueeze(2)
    # Low-precision inputs (AMP) are sampled in float32: fp16/bf16 grids lose sub-pixel accuracy.
    dtype = torch.promote_types(input.dtype, torch.float32)
    input = input.to(dtype)
    grid = 2.0 * point_coords.to(dtype) - 1.0
    out = F.grid_sample(input, grid, align_corners=align_corners, **kwargs)
    if add_dim:
        out = out.squeeze(3)
    return out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of mask logits: ``-|logits|`` (highest at the decision boundary 0)."""
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Choose points by importance sampling of uncertainty plus uniform random points.

    ``int(num_points * oversample_ratio)`` candidate points are drawn uniformly (one
    ``torch.rand(N, num_sampled, 2)`` call), the ``int(importance_sample_ratio * num_points)``
    candidates with the highest uncertainty (``uncertainty_func`` of the point-sampled logits)
    are kept, and the rest of the ``num_points`` are fresh uniform random points.

    Args:
        coarse_logits: (N, 1, H, W) class-agnostic mask logits.
        uncertainty_func: maps (N, 1, P) sampled logits to (N, 1, P) uncertainties.
        num_points: number of points P to return.
        oversample_ratio: >= 1, oversampling of the candidate set.
        importance_sample_ratio: in [0, 1], share of points chosen by uncertainty.
    Returns:
        (N, num_points, 2) coordinates in [0, 1] (x, y).
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}.")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}.")
    num_boxes = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    device = coarse_logits.device
    point_coords = torch.rand(num_boxes, num_sampled, 2, device=device)
    point_logits = point_sample(coarse_logits, point_coords, align_corners=False)
    point_uncertainties = uncertainty_func(point_logits)  # (N, 1, num_sampled)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(point_uncertainties[:, 0, :], k=num_uncertain, dim=1)[1]  # (N, num_uncertain)
    point_coords = torch.gather(point_coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        point_coords = torch.cat(
            [point_coords, torch.rand(num_boxes, num_random, 2, device=device)], dim=1
        )
    return point_coords
