"""OVSeg's ensemble of MaskFormer and CLIP class probabilities and its semantic output
(docs/models/ovseg.md §2.6, §2.10-2.12, and the demo's rule §2.14; quirks 1, 2, 10, 15).

Units: logits in, probabilities out; masks are sigmoid probabilities. Nothing is renormalised.

Provenance: ``OVSeg.semantic_inference`` of the OVSeg release (Liang et al., CVPR 2023).
Independent implementation; unlike the host's ``geometric_ensemble`` there is no seen/unseen
split, no renormalisation and no log output.
"""

from __future__ import annotations

import torch

__all__ = ["ovseg_class_scores", "ovseg_semantic_inference", "ovseg_demo_semantic_inference"]


def ovseg_class_scores(
    mf_logits: torch.Tensor,
    clip_logits: torch.Tensor | None,
    valid: torch.Tensor,
    ensemble_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query class scores of one image.

    Args:
        mf_logits: (Q, K + 1) MaskFormer logits, no-object last.
        clip_logits: (N, K + 1) CLIP logits of the valid queries (no-object last), N =
            ``valid.sum()``; None when CLIP is not used (``CLIP_ENSEMBLE False``).
        valid: (Q,) bool, queries whose binarised mask is not empty.
        ensemble_weight: lambda in [0, 1] (``CLIP_ENSEMBLE_WEIGHT``).
    Returns:
        scores (Q', K) and keep (Q,) bool, the queries the scores belong to:
        - without CLIP: ``softmax(mf_logits)[:, :K]`` (no-object dropped *after* the softmax);
        - lambda > 0: ``p_mf ** (1 - lambda) * P ** lambda``, P = ``softmax(clip_logits[:, :K])``
          (no-object dropped *before* the softmax) on valid queries and 1 on invalid ones
          (docs/models/ovseg.md quirk 1); with no valid query this is ``p_mf ** (1 - lambda)`` (quirk 10 FIX);
        - lambda == 0: the CLIP probabilities of the valid queries only (keep = valid).
    """
    num_classes = mf_logits.shape[-1] - 1
    p_mf = mf_logits.softmax(dim=-1)[:, :num_classes]
    all_queries = torch.ones_like(valid, dtype=torch.bool)
    if clip_logits is None:
        return p_mf, all_queries
    if not 0.0 <= ensemble_weight <= 1.0:
        raise ValueError(f"MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT must be in [0, 1]; got {ensemble_weight}.")
    if clip_logits.shape != (int(valid.sum()), num_classes + 1):
        raise ValueError(
            f"clip_logits {tuple(clip_logits.shape)} must have one row per valid query "
            f"({int(valid.sum())}) and K + 1 = {num_classes + 1} columns."
        )
    p_clip = clip_logits[:, :num_classes].softmax(dim=-1)
    if ensemble_weight == 0:
        return p_clip, valid
    full = torch.ones_like(p_mf)
    full[valid] = p_clip
    return p_mf ** (1 - ensemble_weight) * full**ensemble_weight, all_queries


def ovseg_semantic_inference(
    mf_logits: torch.Tensor,
    mask_probs: torch.Tensor,
    clip_logits: torch.Tensor | None,
    valid: torch.Tensor,
    ensemble_weight: float,
    classes: slice | None = None,
) -> torch.Tensor:
    """Semantic scores of one image: ``einsum("qc,qhw->chw", scores, masks)`` over the kept
    queries (soft masks, not binarised; docs/models/ovseg.md §2.12).

    Args:
        mf_logits, clip_logits, valid, ensemble_weight: see :func:`ovseg_class_scores`.
        mask_probs: (Q, H, W) sigmoid mask probabilities.
        classes: only these classes (None: all K).
    Returns:
        (K, H, W) unnormalised class scores (all zeros when no query is kept); (len(classes),
        H, W) with ``classes``.
    """
    scores, keep = ovseg_class_scores(mf_logits, clip_logits, valid, ensemble_weight)
    if classes is not None:
        scores = scores[:, classes]
    return torch.einsum("qc,qhw->chw", scores, mask_probs[keep])


def ovseg_demo_semantic_inference(
    scores: torch.Tensor,
    binary_masks: torch.Tensor,
    num_selecting: int | None = None,
    classes: slice | None = None,
) -> torch.Tensor:
    """The demo's semantic scores (``OVSegDEMO.demo_inference``, docs/models/ovseg.md §2.14): one query per class.

    For each of the first ``num_selecting`` classes the query with the highest score for that
    class is kept (the first one on ties; a query chosen by several classes is kept once) with
    its whole score row; the other queries are dropped, and the kept rows are summed over their
    *binary* masks. Unlike the release, ``scores`` and ``binary_masks`` index the same queries
    (the valid ones; docs/models/ovseg.md quirk 15 FIX: the release indexes the valid queries' scores with indices of
    all queries when lambda > 0).

    Args:
        scores: (N, K) class scores of the N valid queries (:func:`ovseg_class_scores` restricted
            to the valid queries).
        binary_masks: (N, H, W) bool or 0/1 masks of the same queries (``M > MASK_THR``).
        num_selecting: classes that select a query (default all K); the release's one-class
            demo vocabulary ``[name, "others"]`` selects for ``name`` only (1).
        classes: the output's classes (the queries are still chosen by all of them); None: all K.
    Returns:
        (K, H, W) scores, or (len(classes), H, W); a pixel covered by no kept mask has the score
        0 for every class ("unlabelled"); all zeros when N = 0.
    """
    num_classes = scores.shape[-1]
    if scores.shape[0] == 0:
        out_classes = len(range(num_classes)[classes]) if classes is not None else num_classes
        return scores.new_zeros(out_classes, *binary_masks.shape[-2:])
    chosen = scores[:, : (num_classes if num_selecting is None else num_selecting)].argmax(dim=0)
    selected = torch.zeros_like(scores)
    selected[chosen] = scores[chosen]
    if classes is not None:
        selected = selected[:, classes]
    return torch.einsum("qc,qhw->chw", selected, binary_masks.to(scores.dtype))
