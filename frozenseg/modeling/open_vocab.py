"""Open-vocabulary primitives shared by the decoder and the CLIP classifier (docs/models/frozenseg.md §2).

Provenance: the text-classifier logits with one column per synonym and a max over synonyms, and
the binarised mask pooling, follow FC-CLIP (Yu et al., 2023), which FrozenSeg builds on.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F


def mask_pooling(features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Average ``features`` inside each binarised mask.

    Args:
        features: (B, C, h, w).
        mask_logits: (B, Q, h', w'); resized bilinearly to (h, w) when the sizes differ, then
            binarised with ``> 0``.
    Returns:
        (B, Q, C): the mean feature over each mask (denominator + 1e-8; empty masks give 0).
    """
    if mask_logits.shape[-2:] != features.shape[-2:]:
        mask_logits = F.interpolate(
            mask_logits, size=features.shape[-2:], mode="bilinear", align_corners=False
        )
    masks = (mask_logits > 0).to(features.dtype)
    denorm = masks.sum(dim=(-1, -2), keepdim=True) + 1e-8
    pooled = torch.einsum("bchw,bqhw->bqc", features, masks / denorm)
    return pooled


def get_classification_logits(
    x: torch.Tensor,
    text_classifier: torch.Tensor,
    logit_scale: torch.Tensor | float,
    num_templates: Sequence[int] | None = None,
) -> torch.Tensor:
    """Classify embeddings against a text classifier with synonym rows and a void row.

    Args:
        x: (..., Q, D) embeddings (normalised here); Q may be 0.
        text_classifier: (K' + 1, D) L2-normalised rows: one per synonym, then the void row.
        logit_scale: multiplier s applied to the cosine similarities (already exponentiated).
        num_templates: synonyms per class, ``sum(num_templates) == K'``; None: one row per class
            (K' = K).
    Returns:
        (..., Q, K + 1): per class the max over its synonym columns, void last.
    """
    x = F.normalize(x, dim=-1)
    logits = logit_scale * (x @ text_classifier.t())
    if num_templates is None:
        return logits
    synonym_logits, void_logit = logits[..., :-1], logits[..., -1:]
    if sum(num_templates) != synonym_logits.shape[-1]:
        raise ValueError(
            f"num_templates sums to {sum(num_templates)} but the classifier has "
            f"{synonym_logits.shape[-1]} synonym rows."
        )
    if all(n == 1 for n in num_templates):  # the max over one column is that column
        return logits
    per_class = [chunk.amax(dim=-1) for chunk in torch.split(synonym_logits, list(num_templates), -1)]
    return torch.cat([torch.stack(per_class, dim=-1), void_logit], dim=-1)
