"""Text classifier of a vocabulary (docs/models/frozenseg.md §2): prompt templates through the frozen CLIP text tower.

For every class name (comma-separated synonyms) and every synonym, the 14 ViLD prompts are
encoded, each embedding L2-normalised, averaged and L2-normalised again: one row per synonym.
``num_templates[k]`` is the number of synonyms of class k (the name follows the release).
The learnable void row is *not* built here; the meta-architecture appends it.

Speed: prompts are tokenised once, sorted by length and encoded in batches that are truncated
to the longest prompt of the batch (position of the last end-of-text token + 1). With CLIP's
causal attention mask the end-of-text feature does not depend on the padding after it, so the
truncated encoding equals the full-length one.

Prefix sharing: with the same causal mask, the tokens that all prompts of a template share before
the synonym (SOT + e.g. "a photo of a") have the same hidden states in every prompt. When the
encoder offers it (``encode_text_prefixes`` / ``encode_text_shared_prefix``, as ``CLIPBackbone``
does), each distinct shared prefix is encoded once and only the rest of each prompt (synonym,
template tail, end-of-text) is run, length-sorted and batched, attending to the cached prefix keys
and values: about 44 % of the tokens of the ViLD prompts (ADE-150: 24k instead of 55k), with the
same outputs up to float rounding. The shared prefix is found on token ids (the longest common
token prefix of the prompts of a template, ending before the end-of-text token), so BPE merges
across the placeholder boundary are safe; encoders without the two methods use the full path.

Caches: an in-memory cache per vocabulary, and an optional on-disk cache with one file per
(text encoder identity, templates, synonym) so that other processes and other vocabularies
reuse the embeddings without running the text encoder. ``WeightsFingerprint`` hashes the text
encoder's weights for that identity (``CLIPBackbone.text_cache_identity``).

Provenance: the ViLD templates and the synonym-averaged classifier follow FC-CLIP (Yu et al.,
2023) / ViLD (Gu et al., 2022); the caches and the batching are this project's.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Optional, Protocol, Sequence

import torch
from torch.nn import functional as F

from ...config.config import configurable
from ...data.vocabulary import class_prompts, parse_class_names
from ...utils.file_io import atomic_write

__all__ = [
    "VILD_PROMPT_TEMPLATES",
    "parse_class_names",
    "TextEncoder",
    "TextClassifierBuilder",
    "WeightsFingerprint",
]

logger = logging.getLogger(__name__)

#: The 14 ViLD prompt templates; ``{}`` is replaced by one class-name synonym.
VILD_PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

_CACHE_FORMAT_VERSION = "frozenseg-text-v1"


class TextEncoder(Protocol):
    """What the builder needs from a text encoder (``CLIPBackbone`` satisfies it).

    Optional: ``device`` (torch.device, default CPU) and ``text_cache_identity() -> str | None``
    (enables the on-disk cache; None disables it).
    """

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:  # (N, L_ctx) int64
        ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, L) -> (N, D)
        ...

    # Optional fast path (see the module docstring and ``CLIPBackbone``):
    #   supports_text_prefix_sharing() -> bool
    #   encode_text_prefixes(prefixes: list of 1-D token tensors) -> opaque prefix cache
    #   encode_text_shared_prefix(cache, prefix_index (B,), suffix_tokens (B, S)) -> (B, D)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class WeightsFingerprint:
    """Memoised SHA-256 of named tensors: the weights part of a text encoder's cache identity.

    The hash covers each tensor's name, dtype, shape and bytes, so different random inits, tags,
    files or checkpoint-supplied weights never share disk-cache entries, while the same weights
    reached by different routes do. It is computed once and recomputed only when a tensor is
    replaced or modified in place (tracked by tensor identity, data pointer and version
    counter), e.g. after a checkpoint load.
    """

    def __init__(self):
        self._memo: Optional[tuple[tuple, str]] = None

    def __call__(self, tensors: Sequence[tuple[str, torch.Tensor]]) -> Optional[str]:
        """Hex SHA-256 of ``tensors`` ((name, tensor) pairs, in a fixed order); None when any
        tensor is on the meta device (no bytes to hash)."""
        state = []
        for _, t in tensors:
            try:
                version = t._version
            except RuntimeError:  # inference tensors have no version counter
                version = -1
            state.append((id(t), t.data_ptr() if t.device.type != "meta" else 0, version))
        state = tuple(state)
        if self._memo is not None and self._memo[0] == state:
            return self._memo[1]
        if any(t.device.type == "meta" for _, t in tensors):
            return None
        h = hashlib.sha256()
        for name, t in tensors:
            t = t.detach()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        digest = h.hexdigest()
        self._memo = (state, digest)
        return digest


class TextClassifierBuilder:
    """Builds (and caches) the synonym-level text classifier of a vocabulary.

    Usage::

        builder = TextClassifierBuilder(cfg, encoder=clip_backbone)
        text_classifier, num_templates = builder.build(["dog,puppy", "cat"])
        # text_classifier: (3, D) float32, L2-normalised rows; num_templates: [2, 1]
    """

    @configurable
    def __init__(
        self,
        *,
        encoder: TextEncoder,
        templates: Sequence[str] = VILD_PROMPT_TEMPLATES,
        batch_size: int = 256,
        cache_dir: str = "",
        share_prefixes: bool = True,
    ):
        """
        Args:
            encoder: object with ``tokenize`` and ``encode_text`` (see ``TextEncoder``).
            templates: prompt templates, each with one ``{}``.
            batch_size: prompts per text-encoder call (``MODEL.FROZEN_SEG.TEXT_BATCH_SIZE``).
            cache_dir: on-disk cache directory (``MODEL.FROZEN_SEG.TEXT_CACHE_DIR``); "" disables
                it; ``~`` and environment variables are expanded.
            share_prefixes: encode the prompt prefixes shared by all synonyms once when the
                encoder supports it (same outputs; False forces the full-prompt path).
        """
        if batch_size < 1:
            raise ValueError(f"TEXT_BATCH_SIZE must be >= 1; got {batch_size}.")
        templates = tuple(templates)
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise ValueError("Every prompt template must contain exactly one '{}' placeholder.")
        self.encoder = encoder
        self.templates = templates
        self.batch_size = int(batch_size)
        self.share_prefixes = bool(share_prefixes)
        self.cache_dir = os.path.expandvars(os.path.expanduser(cache_dir)) if cache_dir else ""
        self._memory: dict[tuple, tuple[torch.Tensor, list[int]]] = {}
        self._templates_key = _sha256("\n".join(templates))
        self._disk_write_failed = False
        self._warned_cut: set[str] = set()  # synonyms whose prompts were cut (warned once)

    @classmethod
    def from_config(cls, cfg, encoder: TextEncoder) -> dict:
        """Constructor arguments from ``MODEL.FROZEN_SEG.TEXT_*``."""
        return {
            "encoder": encoder,
            "batch_size": cfg.MODEL.FROZEN_SEG.TEXT_BATCH_SIZE,
            "cache_dir": cfg.MODEL.FROZEN_SEG.TEXT_CACHE_DIR,
        }

    # ---- public ----------------------------------------------------------------------------
    def clear_cache(self) -> None:
        """Drop the in-memory cache (the disk cache is kept)."""
        self._memory.clear()

    def build(
        self, class_names: Sequence[str], literal: bool = False, cached: bool = True
    ) -> tuple[torch.Tensor, list[int]]:
        """Text classifier of a vocabulary.

        Args:
            class_names: K class names, each a comma-separated list of synonyms.
            literal: encode each class string as one prompt, commas kept (OVSeg's convention;
                :func:`frozenseg.data.vocabulary.literal_class_prompts`); then K' = K.
            cached: read and write the memory and disk caches; False encodes every prompt and
                stores nothing (e.g. to time the text encoder).
        Returns:
            text_classifier: (K', D) float32 on the encoder's device, L2-normalised rows, one
                per synonym in class order (K' = total number of synonyms);
            num_templates: K ints, the number of synonyms of each class.
        """
        parsed = class_prompts(class_names, literal)
        identity = self._encoder_identity()
        device = self._device()
        mem_key = (identity, str(device), tuple(class_names), literal)
        if cached and mem_key in self._memory:
            emb, counts = self._memory[mem_key]
            return emb, list(counts)

        synonyms = [s for syns in parsed for s in syns]
        unique = list(dict.fromkeys(synonyms))
        embeddings: dict[str, torch.Tensor] = {}
        use_disk = cached and bool(self.cache_dir) and identity is not None
        if use_disk:
            for s in unique:
                from_disk = self._load_from_disk(identity, s)
                if from_disk is not None:
                    embeddings[s] = from_disk
        missing = [s for s in unique if s not in embeddings]
        if missing:
            computed = self._encode_synonyms(missing)  # (M, D) on CPU, float32
            for s, row in zip(missing, computed):
                embeddings[s] = row
                if use_disk:
                    self._save_to_disk(identity, s, row)
        logger.debug(
            "Text classifier: %d classes, %d synonyms (%d encoded, %d from disk cache).",
            len(parsed), len(synonyms), len(missing), len(unique) - len(missing),
        )
        classifier = torch.stack([embeddings[s] for s in synonyms]).to(device=device, dtype=torch.float32)
        counts = [len(syns) for syns in parsed]
        if cached:
            self._memory[mem_key] = (classifier, counts)
        return classifier, list(counts)

    __call__ = build

    # ---- encoding ---------------------------------------------------------------------------
    def _device(self) -> torch.device:
        device = getattr(self.encoder, "device", None)
        return torch.device(device) if device is not None else torch.device("cpu")

    def _encoder_identity(self) -> Optional[str]:
        fn = getattr(self.encoder, "text_cache_identity", None)
        return fn() if callable(fn) else None

    def _encoder_shares_prefixes(self) -> bool:
        enc = self.encoder
        if not (
            callable(getattr(enc, "encode_text_prefixes", None))
            and callable(getattr(enc, "encode_text_shared_prefix", None))
        ):
            return False
        supported = getattr(enc, "supports_text_prefix_sharing", None)
        return bool(supported()) if callable(supported) else True

    @torch.no_grad()
    def _encode_synonyms(self, synonyms: list[str]) -> torch.Tensor:
        """(M, D) float32 CPU: normalize(mean_t normalize(encode(template_t(synonym))))."""
        n_t = len(self.templates)
        prompts = [t.format(s) for s in synonyms for t in self.templates]
        tokens = self.encoder.tokenize(prompts).long()  # (M*T, L_ctx)
        lengths = tokens.argmax(dim=-1) + 1  # end-of-text (largest id) position + 1
        self._warn_cut_prompts(synonyms, lengths.view(len(synonyms), n_t), tokens.shape[1])
        feats = None
        if self.share_prefixes and self._encoder_shares_prefixes():
            feats = self._encode_prompts_shared_prefix(tokens, lengths, len(synonyms), n_t)
        if feats is None:
            feats = self._encode_prompts(tokens, lengths)
        feats = feats.reshape(len(synonyms), n_t, -1).mean(dim=1)
        return F.normalize(feats, dim=-1)

    def _word_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` without start/end-of-text, counted word by word (CLIP's
        BPE never merges across spaces), so a text longer than the context is counted whole."""
        words = text.split()
        if not words:
            return 0
        return int((self.encoder.tokenize(words).long().argmax(dim=-1) - 1).sum())

    def _warn_cut_prompts(self, synonyms: list[str], lengths: torch.Tensor, n_ctx: int) -> None:
        """Warn once per synonym whose prompts the tokenizer cut at the context length ``n_ctx``
        (CLIP: 77 tokens), naming it and its token count. ``lengths``: (M, T) prompt lengths in
        tokens as tokenised (a cut prompt ends at the context length)."""
        for i in (lengths >= n_ctx).any(dim=1).nonzero().flatten().tolist():
            synonym = synonyms[i]
            if synonym in self._warned_cut:
                continue
            n_cut = sum(self._word_tokens(t.format(synonym)) + 2 > n_ctx for t in self.templates)
            if n_cut:
                self._warned_cut.add(synonym)
                logger.warning(
                    "Class name %r is %d tokens long: %d of its %d prompts exceed the text encoder's "
                    "%d-token context and are cut, so the end of the name is ignored; shorten it "
                    "(or split it into synonyms with ',').",
                    synonym, self._word_tokens(synonym), n_cut, len(self.templates), n_ctx,
                )

    def _encode_prompts(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised features of whole prompts, length-sorted truncated batches."""
        order = torch.argsort(lengths, stable=True)
        device = self._device()
        feats = None
        for start in range(0, len(tokens), self.batch_size):
            idx = order[start : start + self.batch_size]
            length = int(lengths[idx].max())
            batch = tokens[idx, :length].to(device)
            out = self.encoder.encode_text(batch).float()
            out = F.normalize(out, dim=-1).cpu()
            if feats is None:
                feats = torch.empty(len(tokens), out.shape[-1], dtype=torch.float32)
            feats[idx] = out
        return feats

    def _encode_prompts_shared_prefix(
        self, tokens: torch.Tensor, lengths: torch.Tensor, n_syn: int, n_t: int
    ) -> Optional[torch.Tensor]:
        """Same as ``_encode_prompts`` (prompt i = synonym i // T, template i % T), encoding the
        token prefix shared by all prompts of a template once; None if there is none."""
        n_ctx = tokens.shape[1]
        tok3 = tokens.view(n_syn, n_t, n_ctx)
        len3 = lengths.view(n_syn, n_t)
        prefix_len = []
        for t in range(n_t):
            group = tok3[:, t]
            differs = (group != group[:1]).any(dim=0)  # (L_ctx,)
            p = int(differs.int().argmax()) if bool(differs.any()) else n_ctx
            # the pooled end-of-text token (and everything after it) stays in every suffix
            prefix_len.append(max(0, min(p, int(len3[:, t].min()) - 1)))
        if max(prefix_len) == 0:
            return None
        distinct: dict[tuple, int] = {}  # identical prefixes (e.g. "a photo of a") run once
        prefix_id = [
            distinct.setdefault(tuple(tok3[0, t, : prefix_len[t]].tolist()), len(distinct))
            for t in range(n_t)
        ]
        device = self._device()
        cache = self.encoder.encode_text_prefixes(
            [torch.tensor(key, dtype=torch.long) for key in distinct]
        )
        pid = torch.tensor(prefix_id, dtype=torch.long).repeat(n_syn)  # (N,)
        plen = torch.tensor(prefix_len, dtype=torch.long).repeat(n_syn)
        suffix_len = lengths - plen
        order = torch.argsort(suffix_len, stable=True)
        feats = None
        for start in range(0, len(tokens), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(suffix_len[idx].max())
            offsets = torch.arange(width)
            cols = (plen[idx, None] + offsets).clamp(max=n_ctx - 1)
            batch = tokens[idx[:, None], cols] * (offsets < suffix_len[idx, None])  # zero padded
            out = self.encoder.encode_text_shared_prefix(cache, pid[idx].to(device), batch.to(device))
            out = F.normalize(out.float(), dim=-1).cpu()
            if feats is None:
                feats = torch.empty(len(tokens), out.shape[-1], dtype=torch.float32)
            feats[idx] = out
        return feats

    # ---- disk cache -------------------------------------------------------------------------
    def _cache_path(self, identity: str, synonym: str) -> tuple[str, str]:
        model_dir = _sha256(f"{_CACHE_FORMAT_VERSION}|{identity}")[:24]
        key = f"{_CACHE_FORMAT_VERSION}|{identity}|templates={self._templates_key}|synonym={synonym}"
        return os.path.join(self.cache_dir, model_dir, _sha256(key) + ".pt"), key

    def _load_from_disk(self, identity: str, synonym: str) -> Optional[torch.Tensor]:
        path, key = self._cache_path(identity, synonym)
        if not os.path.isfile(path):
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            emb = data["embedding"]
            if data.get("key") != key:
                raise ValueError("the stored key does not match")
            if not (isinstance(emb, torch.Tensor) and emb.dim() == 1 and torch.isfinite(emb).all()):
                raise ValueError("the stored embedding is not a finite vector")
            return emb.float()
        except Exception as e:
            logger.warning(
                "Ignoring unreadable text-classifier cache file %s (%s: %s); recomputing it.",
                path, type(e).__name__, e,
            )
            return None

    def _save_to_disk(self, identity: str, synonym: str, embedding: torch.Tensor) -> None:
        if self._disk_write_failed:
            return
        path, key = self._cache_path(identity, synonym)
        try:
            with atomic_write(path) as f:  # readers see the old or the new file, never a torn one
                torch.save({"key": key, "embedding": embedding.detach().cpu().float().clone()}, f)
        except OSError as e:
            self._disk_write_failed = True
            logger.warning(
                "Cannot write the text-classifier cache under %s (%s); continuing without "
                "writing it (set MODEL.FROZEN_SEG.TEXT_CACHE_DIR to a writable directory or '').",
                self.cache_dir, e,
            )
