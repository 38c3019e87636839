"""Mining mask-noun pairs from COCO Captions with a trained OVSeg (docs/models/ovseg.md §3.B1): the run loop of
``tools/mine_mask_noun_pairs.py``.

The release never published this stage (the OVSeg maintainers' answer in their repository's thread #7); its hints are followed:
the proposals are OVSeg's own CLIP inputs (the valid masks of the trained proposal generator,
cropped, filled and squashed exactly as at inference: :meth:`OVSeg.proposals`), the nouns come
from the captions, one caption per image by default (the release's "1cap" data), and nouns are
matched to proposals with CLIP. **This project's matching rule** (the release is silent;
:class:`MatchingRule`, every number a flag):

1. Proposals whose MaskFormer objectness ``1 - p(no-object)`` is below ``min_score`` are not
   candidates (default 0: every valid proposal is).
2. CLIP similarity ``s[k, j]`` = cosine between noun k's text embedding (OVSeg's own classifier
   row: the mean of the normalised prompt embeddings of ``MODEL.CLIP_ADAPTER.TEXT_TEMPLATES``,
   renormalised) and proposal j's image embedding (OVSeg's CLIP on the CLIP-normalised crop,
   with mask prompts when ``MASK_PROMPT_FWD``), both from the model being mined with.
3. Each noun takes the candidate with the highest similarity (the first on ties), kept when
   that similarity is at least ``min_similarity`` and exceeds the second-best candidate's by at
   least ``margin`` (a single candidate has no competitor).
4. With ``exclusive`` (default), a proposal taken by several nouns keeps only the noun most
   similar to it (the first noun on ties); the others get no pair.

Nouns of several captions of an image are matched per caption; a (noun, proposal) pair found
twice is written once. Run-level behaviour is that of the SAM-mask job
(:mod:`frozenseg.apps.sam_masks`, whose shard and parameter helpers are reused): resumable
(an image whose record file exists is skipped), shardable (``shard_id::num_shards``, from
``WORLD_SIZE``/``RANK`` under torchrun), parameters recorded in ``cache_info.json`` and compared on
resume, unreadable images listed in ``failed_images.shard-I-of-N.json``. File format:
:mod:`frozenseg.models.ovseg.adaptation.mask_noun_pairs`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .mask_noun_pairs import FORMAT_VERSION, is_image_done, write_image_pairs, write_pair_index
from ....utils.image_io import ImageReadError, read_image
from ....data.sharded_jobs import SaveSummary, format_duration, prepare_cache_dir, shard_indices, write_failed_images

__all__ = ["MatchingRule", "match_nouns", "NounEmbeddings", "mine_pairs", "EMPTY_WEIGHTS_WARNING"]

logger = logging.getLogger(__name__)


#: Logged by ``tools/mine_mask_noun_pairs.py`` when MODEL.WEIGHTS is empty: the weights to pass
#: are an OVSeg checkpoint (stage A's, or a released OVSeg by its name or file).
EMPTY_WEIGHTS_WARNING = (
    "MODEL.WEIGHTS is empty: the OVSeg that mines has a random proposal generator and CLIP, so its pairs "
    "are arbitrary. Pass an OVSeg checkpoint: stage A's (MODEL.WEIGHTS output/ovseg_a/model_final.pth) or "
    "a released OVSeg by name (MODEL.WEIGHTS ovseg_swinb_vitl14, fetched into the cache) or file "
    "(MODEL.WEIGHTS /path/to/ovseg_swinbase_vitL14_ft_mpt.pth)."
)


def require_ovseg(model_class: type, config_file: str) -> None:
    """Refuse, in one sentence, a config whose model is not an OVSeg (mining needs its proposals
    and its mask-adapted CLIP)."""
    from ..meta_arch import OVSeg

    if not issubclass(model_class, OVSeg):
        raise ValueError(
            f"{config_file} builds {model_class.__name__}; pass an OVSeg config (MODEL.META_ARCHITECTURE OVSeg)."
        )


@dataclass(frozen=True)
class MatchingRule:
    """This project's noun-to-proposal rule (module doc); similarities are cosines in [-1, 1]."""

    min_similarity: float = 0.2
    margin: float = 0.01
    exclusive: bool = True
    min_score: float = 0.0


def match_nouns(
    similarity: torch.Tensor, rule: MatchingRule, scores: torch.Tensor | None = None
) -> list[tuple[int, int]]:
    """The (noun, proposal) pairs of one caption by ``rule`` (module doc, steps 1, 3, 4).

    Args:
        similarity: (K, N) cosine of noun k and proposal j.
        rule: the thresholds.
        scores: (N,) proposal objectness (None: every proposal is a candidate).
    Returns:
        ``(k, j)`` pairs sorted by noun.
    """
    num_nouns, num_props = similarity.shape
    candidates = torch.ones(num_props, dtype=torch.bool) if scores is None else scores.cpu() >= rule.min_score
    if num_nouns == 0 or not bool(candidates.any()):
        return []
    sim = similarity.detach().float().cpu().masked_fill(~candidates[None], float("-inf"))
    top = sim.topk(min(2, int(candidates.sum())), dim=1)
    kept: list[tuple[int, int, float]] = []
    for k in range(num_nouns):
        best, j = float(top.values[k, 0]), int(top.indices[k, 0])
        second = float(top.values[k, 1]) if top.values.shape[1] > 1 else float("-inf")
        if best >= rule.min_similarity and best - second >= rule.margin:
            kept.append((k, j, best))
    if rule.exclusive:
        owner: dict[int, tuple[int, float]] = {}
        for k, j, s in kept:
            if j not in owner or s > owner[j][1]:
                owner[j] = (k, s)
        kept = [(k, j, s) for k, j, s in kept if owner[j][0] == k]
    return [(k, j) for k, j, _ in kept]


class NounEmbeddings:
    """Normalised text embeddings of nouns from an OVSeg model's text classifier builder,
    computed once per noun and kept here; the builder's caches are neither read nor written, so
    the model's own vocabulary classifier stays cached between images."""

    def __init__(self, builder):
        self.builder = builder
        self._rows: dict[str, torch.Tensor] = {}

    def __call__(self, nouns: Sequence[str]) -> torch.Tensor:
        """(K, D) rows of ``nouns`` (literal class strings)."""
        new = [n for n in dict.fromkeys(nouns) if n not in self._rows]
        if new:
            rows, _ = self.builder.build(new, literal=True, cached=False)
            self._rows.update(zip(new, rows))
        return torch.stack([self._rows[n] for n in nouns])


def _image_pairs(model, image: torch.Tensor, captions: Sequence[str], extract, embed: NounEmbeddings,
                 rule: MatchingRule) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """The pairs of one image (module doc); ``image`` is the resized (3, H, W) uint8 input."""
    props = model.proposals([{"image": image}])[0]
    per_caption = [(c, extract(c)) for c in captions]
    if props.crops.shape[0] == 0 or not any(nouns for _, nouns in per_caption):
        return []
    with torch.no_grad():
        features = model.clip_adapter.encode_regions(props.regions, props.masks.to(props.regions.dtype))
    pairs, seen = [], set()
    for caption, nouns in per_caption:
        if not nouns:
            continue
        text = embed(nouns).to(features)
        similarity = text @ F.normalize(features, dim=-1).t()
        for k, j in match_nouns(similarity, rule, props.scores):
            if (nouns[k], j) in seen:
                continue
            seen.add((nouns[k], j))
            fields = {
                "title": nouns[k], "caption": caption, "query": int(props.query_indices[j]),
                "box": [float(v) for v in props.boxes[j]], "score": float(props.scores[j]),
                "similarity": float(similarity[k, j]),
            }
            pairs.append((props.crops[j].permute(1, 2, 0).cpu().numpy(), props.masks[j, 0].cpu().numpy(), fields))
    return pairs


def mine_pairs(
    dataset: Sequence[dict],
    model,
    output_dir: str,
    *,
    extract_nouns: Callable[[str], list[str]],
    resize: Callable[[torch.Tensor], torch.Tensor],
    rule: MatchingRule = MatchingRule(),
    num_shards: int = 1,
    shard_id: int = 0,
    overwrite: bool = False,
    max_images: int | None = None,
    log_every: int = 50,
    image_reader: Callable[[str], np.ndarray] = read_image,
    info: dict[str, Any] | None = None,
) -> SaveSummary:
    """Mine this shard's images and write their pairs; then, when every image of ``dataset``
    is done, the pair index ``pairs.tsv``.

    Args:
        dataset: ``{"image_id", "file_name", "captions"}`` per image, in a fixed order
            (:func:`frozenseg.models.ovseg.adaptation.mask_noun_pairs.load_coco_captions`).
        model: an eval-mode :class:`~frozenseg.models.ovseg.OVSeg` with its weights.
        output_dir: where the pairs go (format: :mod:`frozenseg.models.ovseg.adaptation.mask_noun_pairs`).
        extract_nouns: caption -> nouns (:func:`frozenseg.models.ovseg.adaptation.caption_nouns.build_noun_extractor`).
        resize: uint8 (3, H, W) -> the model input (the test mapper's resize).
        rule: the matching rule.
        num_shards, shard_id: this process handles images ``shard_id::num_shards``.
        overwrite: recompute images that are already done.
        max_images: stop after this many images of the shard.
        log_every: progress line every this many images (and at least once a minute).
        image_reader: path -> uint8 RGB (H, W, 3).
        info: run parameters recorded in ``cache_info.json`` (besides the rule and the format).
    Returns:
        a :class:`~frozenseg.data.sharded_jobs.SaveSummary` (``files_in_cache``: the pairs in
        ``pairs.tsv`` when it was written, else 0).
    """
    full_info = {"format_version": FORMAT_VERSION, "matching_rule": asdict(rule), **(info or {})}
    prepare_cache_dir(output_dir, full_info, overwrite)
    indices = shard_indices(len(dataset), num_shards, shard_id)
    if max_images is not None:
        indices = indices[: max(0, int(max_images))]
    summary = SaveSummary(total=len(indices))
    tag = f"[shard {shard_id}/{num_shards}]" if num_shards > 1 else "[all images]"
    logger.info("%s %d of %d images to mine into %s", tag, len(indices), len(dataset), output_dir)
    embed = NounEmbeddings(model.text_classifier_builder)
    pairs_written = 0
    t0 = last_log = time.perf_counter()
    for n, idx in enumerate(indices, start=1):
        d = dataset[idx]
        if not overwrite and is_image_done(output_dir, d["image_id"]):
            summary.skipped += 1
            continue
        try:
            array = image_reader(d["file_name"])
        except (FileNotFoundError, ImageReadError, OSError) as e:
            logger.error("%s Skipping image %r (%s): %s", tag, d["image_id"], d["file_name"], e)
            summary.failed.append({"image_id": str(d["image_id"]), "file_name": d["file_name"], "error": str(e)})
            continue
        image = resize(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1))
        pairs = _image_pairs(model, image, d["captions"], extract_nouns, embed, rule)
        pairs_written += len(write_image_pairs(output_dir, d["image_id"], pairs))
        summary.written += 1
        now = time.perf_counter()
        if n % max(1, log_every) == 0 or now - last_log > 60 or n == len(indices):
            rate = summary.written / max(now - t0, 1e-9)
            eta = (len(indices) - n) / rate if rate > 0 else float("nan")
            logger.info(
                "%s %d/%d images (%d mined, %d pairs, %d already done, %d failed), %.2f img/s, ETA %s",
                tag, n, len(indices), summary.written, pairs_written, summary.skipped, len(summary.failed),
                rate, format_duration(eta),
            )
            last_log = now
    summary.seconds = time.perf_counter() - t0
    failed_file = write_failed_images(output_dir, summary.failed, shard_id, num_shards)
    remaining = sum(1 for d in dataset if not is_image_done(output_dir, d["image_id"]))
    if remaining == 0:
        path, summary.files_in_cache = write_pair_index(output_dir)
        logger.info("Every image is mined: %d pairs listed in %s.", summary.files_in_cache, path)
    else:
        logger.info(
            "%d of %d images are not mined yet (other shards, failures or --max-images); %s is written "
            "when all are (or with --index-only).", remaining, len(dataset), os.path.join(output_dir, "pairs.tsv"),
        )
    logger.info(
        "%s Done in %s: %d images in this shard, %d mined (%d pairs), %d already done, %d failed%s.",
        tag, format_duration(summary.seconds), summary.total, summary.written, pairs_written, summary.skipped,
        len(summary.failed), f" (listed in {failed_file})" if failed_file else "",
    )
    return summary
