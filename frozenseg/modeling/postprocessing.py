"""Inference-time post-processing (docs/models/frozenseg.md §7): ensembles, semantic/panoptic/instance inference.

All functions are pure (no module state, no I/O) and work on one image unless stated otherwise.

Provenance:
- ``semantic_inference``, ``panoptic_inference``, ``instance_inference`` and
  ``sem_seg_postprocess`` follow Mask2Former's post-processing (Cheng et al., 2022) and
  Detectron2's ``sem_seg_postprocess``.
- ``geometric_ensemble`` follows FC-CLIP's in-/out-of-vocabulary geometric ensemble
  (Yu et al., 2023), reproduced in the release's exact expression form.
- ``sam_proposal_ensemble`` follows FrozenSeg's ensemble with cached SAM "everything" proposals
  (Chen et al., 2024), docs/models/frozenseg.md §7.5.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.ops import masks_to_boxes

from frozenseg.structures.instances import Instances

__all__ = [
    "geometric_ensemble",
    "semantic_inference",
    "panoptic_inference",
    "instance_inference",
    "resize_masks_to_output",
    "sem_seg_postprocess",
    "semantic_only_inference",
    "sam_proposal_ensemble",
    "mask_proposals_for_recall",
    "TILE_BYTES",
]

#: Memory for the per-query maps of one tile of rows in :func:`panoptic_inference`, in bytes.
TILE_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------
# §7.2 geometric ensemble
# --------------------------------------------------------------------------------------------
def geometric_ensemble(
    in_logits: torch.Tensor,
    out_logits: torch.Tensor,
    seen: torch.Tensor,
    alpha: float,
    beta: float,
    valid_mask: torch.Tensor | None = None,
    nan_safe: bool = False,
) -> torch.Tensor:
    """Geometric ensemble of in-vocabulary (decoder) and out-of-vocabulary (CLIP) classification.

    Args:
        in_logits: (B, Q, K + 1) decoder class logits, void last.
        out_logits: (B, Q, K + 1) CLIP mask-pooled class logits, void last (void is dropped).
        seen: (K,) bool, True for classes that overlap the training vocabulary.
        alpha: CLIP weight for seen classes (release 0.4).
        beta: CLIP weight for unseen classes (release 0.8).
        valid_mask: optional (B, Q) bool (``ENSEMBLE_ON_VALID_MASK``); where False, alpha and beta
            are 0 so the ensemble reduces to log p_in.
        nan_safe: False (default) reproduces the release exactly: the seen and unseen terms are
            combined as ``seen_term * seen + unseen_term * (1 - seen)``; when a probability
            underflows to 0 a term is -inf and ``-inf * 0`` yields NaN for that entry (and the
            following softmax spreads it over the row). True selects with ``torch.where`` instead.
    Returns:
        (B, Q, K + 1) log-probabilities: ``log(cat(softmax(ens) * (1 - v), v) + 1e-8)`` where
        ``ens = log(p_in ** (1 - a) * p_out ** a)`` per class (a = alpha for seen, beta for
        unseen), ``p_in = softmax(in_logits[..., :-1])``, ``p_out = softmax(out_logits[..., :-1])``
        and ``v = softmax(in_logits)[..., -1:]``.
    """
    p_in = in_logits[..., :-1].softmax(-1)
    p_out = out_logits[..., :-1].softmax(-1)
    seen_f = seen.to(device=p_in.device, dtype=p_in.dtype)

    if valid_mask is not None:
        valid = valid_mask.to(device=p_in.device, dtype=p_in.dtype).unsqueeze(-1)
        a = torch.ones_like(p_in) * alpha * valid
        b = torch.ones_like(p_in) * beta * valid
    else:
        a, b = alpha, beta

    # Exact release expression form (zeros give -inf).
    seen_term = (p_in ** (1 - a) * p_out**a).log()
    unseen_term = (p_in ** (1 - b) * p_out**b).log()
    if nan_safe:
        ens = torch.where(seen.to(p_in.device).bool(), seen_term, unseen_term)
    else:
        ens = seen_term * seen_f + unseen_term * (1 - seen_f)

    is_void_prob = in_logits.softmax(-1)[..., -1:]
    probs = torch.cat([ens.softmax(-1) * (1.0 - is_void_prob), is_void_prob], dim=-1)
    return torch.log(probs + 1e-8)


# --------------------------------------------------------------------------------------------
# §7.4 semantic / panoptic / instance inference (Mask2Former)
# --------------------------------------------------------------------------------------------
def semantic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    mask_probs: torch.Tensor | None = None,
    classes: slice | None = None,
) -> torch.Tensor:
    """Semantic map ``Σ_q softmax(mask_cls)[q, :K] · sigmoid(mask_pred[q])``.

    Args:
        mask_cls: (Q, K + 1) class logits or log-probabilities (void last).
        mask_pred: (Q, H, W) mask logits.
        mask_probs: ``mask_pred.sigmoid()`` when the caller has it already (shared between the
            semantic, panoptic and instance outputs), else None.
        classes: compute only these classes (a chunk of
            :class:`~frozenseg.structures.semantic.SemanticScores`); None: all K.
    Returns:
        (K, H, W) per-class scores (not normalised over classes); (len(classes), H, W) with
        ``classes``.
    """
    cls = F.softmax(mask_cls, dim=-1)[..., :-1]
    if classes is not None:
        cls = cls[:, classes]
    masks = mask_pred.sigmoid() if mask_probs is None else mask_probs
    return torch.einsum("qc,qhw->chw", cls, masks)


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    is_thing: torch.Tensor,
    object_mask_threshold: float,
    overlap_threshold: float,
    mask_probs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[dict]]:
    """Mask2Former panoptic inference.

    Keeps queries whose argmax label is not void and whose score is ``> object_mask_threshold``.
    Each pixel is owned by ``argmax_k score_k · sigmoid(mask_k)`` over kept queries. For kept
    query k (in query order), exactly as Mask2Former::

        mask_area     = (owner == k).sum()
        original_area = (sigmoid(mask_k) >= 0.5).sum()
        mask          = (owner == k) & (sigmoid(mask_k) >= 0.5)
        if mask_area > 0 and original_area > 0 and mask.sum() > 0:
            if mask_area / original_area < overlap_threshold: skip
            stuff: every query of an already-seen stuff class paints the same segment id
            otherwise: new id (1, 2, ...) painted on ``mask``

    Args:
        mask_cls: (Q, K + 1) class logits or log-probabilities (void last).
        mask_pred: (Q, H, W) mask logits.
        is_thing: (K,) bool, True for thing classes.
        object_mask_threshold: minimum class score to keep a query.
        overlap_threshold: minimum visible/original area ratio to keep a segment.
        mask_probs: ``mask_pred.sigmoid()`` when the caller has it already, else None.
    Returns:
        panoptic_seg: (H, W) int32, 0 = unlabelled, segment ids from 1.
        segments_info: list of ``{"id": int, "isthing": bool, "category_id": int}``.
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    masks = mask_pred.sigmoid() if mask_probs is None else mask_probs
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    cur_scores = scores[keep]
    cur_classes = labels[keep]
    kept_queries = keep.nonzero()[:, 0]

    h, w = masks.shape[-2:]
    panoptic_seg = torch.zeros((h, w), dtype=torch.int32, device=masks.device)
    segments_info: list[dict] = []
    n = int(kept_queries.numel())
    if n == 0:
        return panoptic_seg, segments_info

    is_thing = is_thing.to(device="cpu", dtype=torch.bool)
    # Rows of pixels at a time (each pixel's owner depends on that pixel alone): the owner
    # ``argmax_k score_k · sigmoid(mask_k)``, and the per-query areas of Mask2Former's loop:
    # pixels owned by k, pixels with sigmoid(mask_k) >= 0.5, and pixels owned by k with its own
    # mask >= 0.5 (= ``mask``). Integer counts, so the sums do not depend on the tiling.
    cur_mask_ids = torch.empty((h, w), dtype=torch.int64, device=masks.device)
    owned_confident = torch.empty((h, w), dtype=torch.bool, device=masks.device)
    mask_areas = torch.zeros(n, dtype=torch.int64, device=masks.device)
    original_areas = torch.zeros(n, dtype=torch.int64, device=masks.device)
    kept_areas = torch.zeros(n, dtype=torch.int64, device=masks.device)
    rows = max(1, TILE_BYTES // max(1, n * w * masks.element_size()))
    for r0 in range(0, h, rows):
        tile = masks[kept_queries, r0 : r0 + rows]  # (n, t, w)
        owner = (cur_scores.view(-1, 1, 1) * tile).argmax(0)
        confident = tile >= 0.5
        owned = confident.gather(0, owner[None])[0]
        mask_areas += torch.bincount(owner.flatten(), minlength=n)
        original_areas += confident.flatten(1).sum(1)
        kept_areas += torch.bincount(owner[owned], minlength=n)
        cur_mask_ids[r0 : r0 + rows] = owner
        owned_confident[r0 : r0 + rows] = owned
        del tile, confident
    mask_areas, original_areas, kept_areas = mask_areas.tolist(), original_areas.tolist(), kept_areas.tolist()
    # The owners partition the pixels, so the masks are disjoint: painting them in query order
    # is a lookup of each pixel's owner in the segment id chosen for it (0 = not painted).
    segment_of_query = [0] * n
    stuff_memory_list: dict[int, int] = {}
    current_segment_id = 0
    for k, pred_class in enumerate(cur_classes.tolist()):
        isthing = bool(is_thing[pred_class].item())
        mask_area, original_area = mask_areas[k], original_areas[k]
        if mask_area > 0 and original_area > 0 and kept_areas[k] > 0:
            if mask_area / original_area < overlap_threshold:
                continue
            if not isthing:
                if pred_class in stuff_memory_list:
                    segment_of_query[k] = stuff_memory_list[pred_class]
                    continue
                stuff_memory_list[pred_class] = current_segment_id + 1
            current_segment_id += 1
            segment_of_query[k] = current_segment_id
            segments_info.append(
                {"id": current_segment_id, "isthing": isthing, "category_id": pred_class}
            )
    lookup = torch.tensor(segment_of_query, dtype=torch.int32, device=masks.device)
    panoptic_seg = torch.where(owned_confident, lookup[cur_mask_ids], panoptic_seg)
    return panoptic_seg, segments_info


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    is_thing: torch.Tensor,
    topk: int,
    panoptic_on: bool,
    mask_probs: torch.Tensor | None = None,
) -> Instances:
    """Mask2Former instance inference: top-k over all (query, class) pairs.

    ``scores = softmax(mask_cls)[:, :K]`` is flattened query-major (index = q·K + c); the top
    ``min(topk, Q·K)`` are taken in descending order (``sorted=True``, deterministic; the release
    uses ``sorted=False``, which only changes the order). With ``panoptic_on`` only thing classes
    are kept. Binary masks are ``mask_pred > 0``; the final score is the class score times the
    mean mask probability inside the binary mask (``/(area + 1e-6)``).

    Args:
        mask_cls: (Q, K + 1) class logits or log-probabilities (void last).
        mask_pred: (Q, H, W) mask logits.
        is_thing: (K,) bool.
        topk: detections per image.
        panoptic_on: keep thing classes only.
        mask_probs: ``mask_pred.sigmoid()`` when the caller has it already, else None.
    Returns:
        ``Instances`` of image_size (H, W) with ``pred_masks`` (N, H, W) bool, ``scores`` (N,),
        ``pred_classes`` (N,) int64 and ``pred_boxes`` (N, 4) float XYXY computed from the binary
        masks with ``torchvision.ops.masks_to_boxes`` (inclusive max pixel index; empty masks give
        zeros). The release leaves boxes at zero (its mask-derived alternative, Detectron2's
        ``BitMasks.get_bounding_boxes``, uses exclusive x2/y2 = max index + 1).
    """
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = (
        torch.arange(num_classes, device=mask_cls.device)
        .unsqueeze(0)
        .repeat(num_queries, 1)
        .flatten(0, 1)
    )
    k = min(int(topk), num_queries * num_classes)
    scores_per_image, topk_indices = scores.flatten(0, 1).topk(k, sorted=True)
    labels_per_image = labels[topk_indices]
    query_indices = topk_indices // num_classes
    if panoptic_on:
        keep = is_thing.to(device=labels_per_image.device, dtype=torch.bool)[labels_per_image]
        scores_per_image = scores_per_image[keep]
        labels_per_image = labels_per_image[keep]
        query_indices = query_indices[keep]
    # Several detections may share a query (its mask with other classes): the mask statistics
    # are computed once per query, one query at a time (no (N, H, W) float temporaries).
    queries, which = torch.unique(query_indices, return_inverse=True)
    h, w = mask_pred.shape[-2:]
    binary = torch.empty((len(queries), h, w), dtype=torch.bool, device=mask_pred.device)
    mask_scores = torch.empty(len(queries), dtype=mask_pred.dtype, device=mask_pred.device)
    for i, q in enumerate(queries.tolist()):
        logits = mask_pred[q]
        probs = logits.sigmoid() if mask_probs is None else mask_probs[q]
        torch.gt(logits, 0, out=binary[i])
        binary_f = binary[i].flatten().to(logits.dtype)
        mask_scores[i] = (probs.flatten() * binary_f).sum() / (binary_f.sum() + 1e-6)
        del probs, binary_f

    boxes = torch.zeros((binary.shape[0], 4), dtype=torch.float32, device=mask_pred.device)
    nonempty = binary.flatten(1).any(1)
    if nonempty.any():
        boxes[nonempty] = masks_to_boxes(binary[nonempty]).to(torch.float32)
    binary, mask_scores, boxes = binary[which], mask_scores[which], boxes[which]

    h, w = mask_pred.shape[-2:]
    return Instances(
        (h, w),
        pred_masks=binary,
        scores=scores_per_image * mask_scores,
        pred_classes=labels_per_image.to(torch.int64),
        pred_boxes=boxes,
    )


# --------------------------------------------------------------------------------------------
# §7.3 mask resizing
# --------------------------------------------------------------------------------------------
def sem_seg_postprocess(
    result: torch.Tensor, image_size: tuple[int, int], output_height: int, output_width: int
) -> torch.Tensor:
    """Detectron2's ``sem_seg_postprocess``: crop the padding, then resize.

    Args:
        result: (C, Hp, Wp) map at the padded input size.
        image_size: (h, w) of the unpadded input, ``h <= Hp``, ``w <= Wp``.
        output_height, output_width: requested output size.
    Returns:
        (C, output_height, output_width), bilinear with ``align_corners=False``.
    """
    result = result[:, : image_size[0], : image_size[1]].expand(1, -1, -1, -1)
    return F.interpolate(
        result, size=(int(output_height), int(output_width)), mode="bilinear", align_corners=False
    )[0]


def resize_masks_to_output(
    mask_pred: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
) -> torch.Tensor:
    """Upsample mask logits to the padded input, crop to the image, resize to the output.

    Used when panoptic, instance or recall output is enabled (the masks are resized before
    inference).

    Args:
        mask_pred: (Q, h4, w4) mask logits (stride 4).
        padded_size: (Hp, Wp) padded input size.
        image_size: (h, w) unpadded input size.
        output_size: (oh, ow) requested output size.
    Returns:
        (Q, oh, ow) mask logits; both resizes bilinear with ``align_corners=False``.
    """
    up = F.interpolate(
        mask_pred[None], size=tuple(int(s) for s in padded_size), mode="bilinear",
        align_corners=False,
    )[0]
    return sem_seg_postprocess(up, image_size, output_size[0], output_size[1])


def semantic_only_inference(
    mask_cls: torch.Tensor,
    mask_pred_padded: torch.Tensor,
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    classes: slice | None = None,
) -> torch.Tensor:
    """Release order when only semantic output is enabled: infer at padded size, then resize.

    The semantic map is computed from the masks at the padded input size and then cropped and
    resized. This differs numerically from resizing the mask logits first
    (``semantic_inference(cls, sem_seg_postprocess(masks, ...))``) because the sigmoid does not
    commute with bilinear interpolation (they agree when no resize happens).

    Args:
        mask_cls: (Q, K + 1) class logits or log-probabilities.
        mask_pred_padded: (Q, Hp, Wp) mask logits at the padded input size.
        image_size: (h, w) unpadded input size.
        output_size: (oh, ow).
        classes: only these classes (see :func:`semantic_inference`); each class's map is
            resized on its own, so a chunk equals the same classes of the whole map.
    Returns:
        (K, oh, ow), or (len(classes), oh, ow).
    """
    r = semantic_inference(mask_cls, mask_pred_padded, classes=classes)
    return sem_seg_postprocess(r, image_size, output_size[0], output_size[1])


# --------------------------------------------------------------------------------------------
# §7.5 SAM proposal ensemble, §7.6 recall
# --------------------------------------------------------------------------------------------
def sam_proposal_ensemble(
    query_cls_probs: torch.Tensor,
    query_masks: torch.Tensor,
    proposal_cls_probs: torch.Tensor,
    proposal_masks: torch.Tensor,
    seen: torch.Tensor,
    alpha_s: float,
    unseen_threshold: float = 0.5,
    classes: slice | None = None,
) -> torch.Tensor:
    """Semantic map ensembling decoder queries with cached SAM proposals (docs/models/frozenseg.md §7.5).

    ``semseg = Σ_q p_q⊙[seen]·m_q + (1 − α_s) Σ_q p_q⊙[unseen]·m_q
    + α_s Σ_{m : max_{c unseen} p'_m[c] > 0.5} p'_m⊙[unseen]·m'_m``
    where ``p⊙[seen]`` zeroes the unseen entries of the probability vector.

    Units: class inputs are probabilities in [0, 1] (softmax with void already dropped), mask
    inputs are sigmoid probabilities in [0, 1] (not logits); the output has the same units as
    ``semantic_inference`` (a sum of class-probability × mask-probability products, not
    normalised over classes).

    Args:
        query_cls_probs: (Q, K).
        query_masks: (Q, H, W).
        proposal_cls_probs: (M, K).
        proposal_masks: (M, H, W).
        seen: (K,) bool.
        alpha_s: proposal weight for unseen classes (``TEST.SAM_MASK_PRED_ALPHA``, release 0.2).
        unseen_threshold: a proposal contributes only if its largest unseen-class probability is
            strictly greater than this (0.5).
        classes: only these classes (the proposals taking part are still chosen over all
            unseen classes); None: all K.
    Returns:
        (K, H, W), or (len(classes), H, W).
    """
    seen_f = seen.to(device=query_cls_probs.device, dtype=query_cls_probs.dtype)
    unseen_f = 1 - seen_f
    q_weight = query_cls_probs * seen_f + (1 - alpha_s) * query_cls_probs * unseen_f
    if classes is not None:
        q_weight = q_weight[:, classes]
    semseg = torch.einsum("qc,qhw->chw", q_weight, query_masks.to(query_cls_probs.dtype))

    if proposal_cls_probs.shape[0] > 0 and bool(seen.logical_not().any()):
        p_unseen = proposal_cls_probs * unseen_f
        max_unseen = p_unseen[:, ~seen.to(device=p_unseen.device, dtype=torch.bool)].amax(-1)
        sel = max_unseen > unseen_threshold
        if sel.any():
            weights = p_unseen[sel] if classes is None else p_unseen[sel][:, classes]
            semseg = semseg + alpha_s * torch.einsum(
                "mc,mhw->chw", weights, proposal_masks[sel].to(p_unseen.dtype)
            )
    return semseg


def mask_proposals_for_recall(
    mask_pred: torch.Tensor, extra_proposals: torch.Tensor | None = None
) -> torch.Tensor:
    """All mask proposals for recall evaluation (docs/models/frozenseg.md §7.6), binarised with ``> 0``.

    Args:
        mask_pred: (Q, H, W) query mask logits.
        extra_proposals: optional (M, H, W) SAM proposal logits at the same size.
    Returns:
        (Q + M, H, W) bool, queries first.
    """
    masks = [mask_pred > 0]
    if extra_proposals is not None:
        if extra_proposals.shape[-2:] != mask_pred.shape[-2:]:
            raise ValueError(
                f"extra_proposals size {tuple(extra_proposals.shape[-2:])} differs from mask_pred "
                f"size {tuple(mask_pred.shape[-2:])}."
            )
        masks.append(extra_proposals.to(mask_pred.device) > 0)
    return torch.cat(masks, dim=0)
