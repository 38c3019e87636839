"""Text classifier of a vocabulary (docs/models/frozenseg.md §2): prompt templates through the frozen CLIP text tower.

For every class name (comma-separated synonyms) and every synonym, the 14 ViLD prompts are
encoded, each embedding L2-normalised, averaged and L2-normalised again: one row per synonym.
``num_templates[k]`` is the number of synonyms of class k (the name follows the release).
The learnable void row is *not* built here; the meta-architecture appends it.

Same bits however a row is obtained: prompts are tokenised once and encoded in text-encoder
calls of one fixed shape each: always ``batch_size`` rows (the last call of a width is filled up
with zero rows) and one of a few widths, a prompt's width being the tokens it runs rounded up
to a multiple of 8 (CLIP's causal attention mask makes the end-of-text feature independent of the
padding after it). Calls of varying shapes round differently (the matrix-product kernels of
another shape sum in another order), so a synonym's row would depend on which other classes were
encoded with it. With one shape per width, a prompt's row does not depend on its place in the
call nor on the other rows (a property of the kernels, which
tests/modeling/test_text_classifier_per_synonym.py checks bit for bit: the whole vocabulary at
once, each class alone, reversed, with 1 and 2 threads). The template average and the
normalisations run per synonym. So a row is the same bits whether it comes from a fresh encoding
of the whole vocabulary, from the memory cache or from the disk cache, which is what lets both
caches work per synonym: a vocabulary that differs from a cached one by one class encodes that
class only. The price: every call is full size, so even a one-class vocabulary costs one call of
``batch_size`` rows.

Prefix sharing: with the same causal mask, the tokens a prompt shares with its template's text
before the synonym (SOT + e.g. "a photo of a") have the same hidden states in every prompt of the
template. When the encoder offers it (``encode_text_prefixes`` / ``encode_text_shared_prefix``,
as ``CLIPBackbone`` and OVSeg's ``OpenCLIPTextEncoder`` do through
``clip_text.OpenCLIPTextEncoding``), those template prefixes are encoded once per builder and only the rest
of each prompt (synonym, template tail, end-of-text) is run, attending to the cached prefix keys
and values (for the ViLD prompts, 44 % of the tokens, before the widths are rounded up), with the
same outputs as the full path up to float rounding. A template's prefix is the tokens of its text
before ``{}``; a prompt uses it only when its own tokens start with it and its end-of-text token
comes after it (a BPE merge across the placeholder, or a prompt cut at the context length, runs
the whole prompt), so the tokens a prompt runs depend on that prompt alone. Encoders without the two methods use the full path.

Caches, both per synonym (the string that is encoded: a synonym, or a literal class string):

- memory: the rows of every synonym encoded or read so far, keyed by the encoder's identity, the
  device and the encoding path; the last few vocabularies' assembled classifiers are kept too, so
  a repeat costs nothing;
- disk (``cache_dir``, ``MODEL.FROZEN_SEG.TEXT_CACHE_DIR``): one file per (text encoder identity,
  templates, encoding path, device type, synonym), so that other processes and other vocabularies
  reuse the embeddings without running the text encoder. ``WeightsFingerprint`` hashes the text
  encoder's weights for that identity (``CLIPBackbone.text_cache_identity``). A leading
  ``$FROZENSEG_CACHE`` in ``cache_dir`` is the project's cache folder (:func:`~frozenseg.utils.paths.cache_root`,
  the folder the released weights are cached in), also when the variable is not set.

Provenance: the ViLD templates and the synonym-averaged classifier follow FC-CLIP (Yu et al.,
2023) / ViLD (Gu et al., 2022); the caches and the encoding schedule are this project's.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from typing import NamedTuple, Optional, Protocol, Sequence

import torch
from torch.nn import functional as F

from ...config.config import configurable
from ...data.vocabulary import class_prompts, parse_class_names
from ...utils.file_io import atomic_write
from ...utils.paths import CACHE_ENV, cache_root

__all__ = [
    "VILD_PROMPT_TEMPLATES",
    "parse_class_names",
    "resolve_text_cache_dir",
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

#: Version of the disk-cache entries: v2 rows come from fixed-shape encoder calls (v1 rows, from
#: calls truncated to their longest prompt, differ in the last bits).
_CACHE_FORMAT_VERSION = "frozenseg-text-v2"

#: Prompt widths (tokens run per prompt) are rounded up to a multiple of this: the few widths
#: the text encoder is called with.
_WIDTH_STEP = 8

#: Assembled classifiers kept in memory (the last vocabularies built); the rows of every synonym
#: are kept regardless, so a vocabulary dropped from here is re-assembled without encoding.
_VOCABULARIES_KEPT = 8


def resolve_text_cache_dir(cache_dir: str) -> str:
    """The directory of a ``TEXT_CACHE_DIR`` setting: "" stays "" (no disk cache); a leading
    ``$FROZENSEG_CACHE`` or ``${FROZENSEG_CACHE}`` is :func:`~frozenseg.utils.paths.cache_root` (so
    ``$FROZENSEG_CACHE/text_classifier`` works when the variable is unset); then ``~`` and other
    environment variables are expanded."""
    if not cache_dir:
        return ""
    for var in ("${" + CACHE_ENV + "}", "$" + CACHE_ENV):
        if cache_dir == var or cache_dir.startswith(var + "/") or cache_dir.startswith(var + os.sep):
            cache_dir = cache_root() + cache_dir[len(var):]
            break
    return os.path.expandvars(os.path.expanduser(cache_dir))


class TextEncoder(Protocol):
    """What the builder needs from a text encoder (``CLIPBackbone`` satisfies it).

    Optional: ``device`` (torch.device, default CPU) and ``text_cache_identity() -> str | None``
    (enables the on-disk cache; None disables it).

    ``encode_text`` and ``encode_text_shared_prefix`` receive ``batch_size`` rows per call;
    all-zero rows are padding, whose outputs are discarded (they must not raise).
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


class _PrefixPlan(NamedTuple):
    """The template prefixes of the shared-prefix path, encoded once per builder (and encoder
    identity and device): ``cache`` from ``encode_text_prefixes`` over the distinct prefixes,
    the empty one last (``empty``: its index); per template t, ``tokens[t, :length[t]]`` is its
    prefix and ``index[t]`` the prefix's index in ``cache``."""

    cache: object
    tokens: torch.Tensor  # (T, P) int64, zero padded
    length: torch.Tensor  # (T,)
    index: torch.Tensor  # (T,)
    empty: int


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

    After each :meth:`build`, ``last_build`` counts where its synonyms came from
    (``{"memory": m, "disk": d, "encoded": e}``; all zeros for a repeated vocabulary).
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
            batch_size: at most this many prompts per text-encoder call
                (``MODEL.FROZEN_SEG.TEXT_BATCH_SIZE``); a call holds prompts of one width.
            cache_dir: on-disk cache directory (``MODEL.FROZEN_SEG.TEXT_CACHE_DIR``); "" disables
                it; a leading ``$FROZENSEG_CACHE`` is the project's cache folder, ``~`` and
                environment variables are expanded (:func:`resolve_text_cache_dir`).
            share_prefixes: encode the template prefixes once when the encoder supports it
                (same outputs up to float rounding; False forces the full-prompt path).
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
        self.cache_dir = resolve_text_cache_dir(cache_dir)
        # rows per (identity, device, path): {synonym: (D,) float32 CPU}; the two latest kept
        self._rows: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        # assembled classifiers of the latest vocabularies
        self._vocabularies: OrderedDict[tuple, tuple[torch.Tensor, list[int]]] = OrderedDict()
        self._prefix_plan: Optional[tuple[tuple, _PrefixPlan]] = None
        self._templates_key = _sha256("\n".join(templates))
        self._disk_write_failed = False
        self._warned_cut: set[str] = set()  # synonyms whose prompts were cut (warned once)
        self.last_build = {"memory": 0, "disk": 0, "encoded": 0}

    @classmethod
    def from_config(cls, cfg, encoder: TextEncoder) -> dict:
        """Constructor arguments from ``MODEL.FROZEN_SEG.TEXT_*``."""
        return {
            "encoder": encoder,
            "batch_size": cfg.MODEL.FROZEN_SEG.TEXT_BATCH_SIZE,
            "cache_dir": cfg.MODEL.FROZEN_SEG.TEXT_CACHE_DIR,
        }

    # ---- public ----------------------------------------------------------------------------
    def clear_cache(self, prefixes: bool = True) -> None:
        """Drop the in-memory caches (the disk cache is kept).

        Args:
            prefixes: also drop the encoded template prefixes; False keeps them (they depend
                on the encoder's weights and the templates only, not on any class), so the next
                build encodes its classes as a process that has built a vocabulary before does.
        """
        self._rows.clear()
        self._vocabularies.clear()
        if prefixes:
            self._prefix_plan = None

    def build(
        self, class_names: Sequence[str], literal: bool = False, cached: bool = True
    ) -> tuple[torch.Tensor, list[int]]:
        """Text classifier of a vocabulary.

        Args:
            class_names: K class names, each a comma-separated list of synonyms.
            literal: encode each class string as one prompt, commas kept (OVSeg's convention;
                :func:`frozenseg.data.vocabulary.literal_class_prompts`); then K' = K.
            cached: read and write the memory and disk caches; False encodes every prompt and
                stores nothing (e.g. to time the text encoder). Either way the rows are the
                same bits.
        Returns:
            text_classifier: (K', D) float32 on the encoder's device, L2-normalised rows, one
                per synonym in class order (K' = total number of synonyms);
            num_templates: K ints, the number of synonyms of each class.
        """
        parsed = class_prompts(class_names, literal)
        identity = self._encoder_identity()
        device = self._device()
        path = self._encoding_path()
        vocab_key = (identity, str(device), path, tuple(class_names), literal)
        if cached and vocab_key in self._vocabularies:
            self._vocabularies.move_to_end(vocab_key)
            self.last_build = {"memory": 0, "disk": 0, "encoded": 0}
            emb, counts = self._vocabularies[vocab_key]
            return emb, list(counts)

        synonyms = [s for syns in parsed for s in syns]
        unique = list(dict.fromkeys(synonyms))
        rows = self._row_store(identity, device, path) if cached else {}
        embeddings = {s: rows[s] for s in unique if s in rows}
        n_memory = len(embeddings)
        use_disk = cached and bool(self.cache_dir) and identity is not None
        if use_disk:
            for s in unique:
                if s not in embeddings:
                    from_disk = self._load_from_disk(identity, path, device, s)
                    if from_disk is not None:
                        embeddings[s] = from_disk
        n_disk = len(embeddings) - n_memory
        missing = [s for s in unique if s not in embeddings]
        if missing:
            computed = self._encode_synonyms(missing)  # (M, D) on CPU, float32
            for s, row in zip(missing, computed):
                embeddings[s] = row
                if use_disk:
                    self._save_to_disk(identity, path, device, s, row)
        if cached:
            rows.update(embeddings)
        self.last_build = {"memory": n_memory, "disk": n_disk, "encoded": len(missing)}
        if n_disk or missing:  # INFO where a disk cache is in use (DEBUG for e.g. pair mining's nouns)
            logger.log(
                logging.INFO if use_disk else logging.DEBUG,
                "Text classifier: %d classes, %d synonyms: %d encoded, %d from the disk cache%s, "
                "%d from memory.",
                len(parsed), len(unique), len(missing), n_disk,
                f" ({self.cache_dir})" if use_disk else "", n_memory,
            )
        classifier = torch.stack([embeddings[s] for s in synonyms]).to(device=device, dtype=torch.float32)
        counts = [len(syns) for syns in parsed]
        if cached:
            self._vocabularies[vocab_key] = (classifier, counts)
            while len(self._vocabularies) > _VOCABULARIES_KEPT:
                self._vocabularies.popitem(last=False)
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

    def _encoding_path(self) -> str:
        """"prefix" (shared template prefixes) or "full": the two round differently, so their
        rows are cached apart."""
        return "prefix" if self.share_prefixes and self._encoder_shares_prefixes() else "full"

    def _row_store(self, identity: Optional[str], device: torch.device, path: str) -> dict[str, torch.Tensor]:
        key = (identity, str(device), path)
        if key not in self._rows:
            self._rows[key] = {}
            while len(self._rows) > 2:  # e.g. before and after a checkpoint load
                self._rows.popitem(last=False)
        self._rows.move_to_end(key)
        return self._rows[key]

    @torch.no_grad()
    def _encode_synonyms(self, synonyms: list[str]) -> torch.Tensor:
        """(M, D) float32 CPU: normalize(mean_t normalize(encode(template_t(synonym)))), each
        row the same bits whatever else is encoded with it (see the module docstring)."""
        n_t = len(self.templates)
        prompts = [t.format(s) for s in synonyms for t in self.templates]
        tokens = self.encoder.tokenize(prompts).long()  # (M*T, L_ctx)
        lengths = tokens.argmax(dim=-1) + 1  # end-of-text (largest id) position + 1
        self._warn_cut_prompts(synonyms, lengths.view(len(synonyms), n_t), tokens.shape[1])
        if self._encoding_path() == "prefix":
            feats = self._encode_prompts_shared_prefix(self._prefix_plan_for_encoding(), tokens, lengths)
        else:
            feats = self._encode_prompts(tokens, lengths)
        feats = feats.view(len(synonyms), n_t, -1)
        # one synonym at a time: the reductions see the same shapes whatever M is
        return torch.stack([F.normalize(f.mean(dim=0), dim=-1) for f in feats])

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

    def _calls(self, run: torch.Tensor, n_ctx: int) -> list[tuple[torch.Tensor, int]]:
        """The text-encoder calls of N prompts that run ``run`` (N,) tokens each: ``(rows, width)``
        pairs, every call ``batch_size`` rows (the caller pads) of one width, a prompt's width being
        its own ``run`` rounded up to a multiple of ``_WIDTH_STEP`` (at most ``n_ctx``)."""
        width = ((run + _WIDTH_STEP - 1) // _WIDTH_STEP * _WIDTH_STEP).clamp(max=n_ctx)
        calls = []
        for w in torch.unique(width).tolist():
            rows = (width == w).nonzero().flatten()
            calls += [(chunk, int(w)) for chunk in rows.split(self.batch_size)]
        return calls

    def _encode_prompts(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised features of whole prompts ``tokens`` (N, L_ctx), zero-padded."""
        device = self._device()
        feats = torch.empty(0)
        for rows, width in self._calls(lengths, tokens.shape[1]):
            batch = torch.zeros(self.batch_size, width, dtype=torch.long)  # padding rows: zeros
            batch[: len(rows)] = tokens[rows, :width]
            out = F.normalize(self.encoder.encode_text(batch.to(device)).float(), dim=-1).cpu()
            if feats.numel() == 0:
                feats = torch.empty(len(tokens), out.shape[-1], dtype=torch.float32)
            feats[rows] = out[: len(rows)]
        return feats

    def _prefix_plan_for_encoding(self) -> _PrefixPlan:
        """The encoded template prefixes (memoised per encoder identity and device; recomputed
        every time for an encoder without an identity)."""
        identity = self._encoder_identity()
        key = (identity, str(self._device()))
        if identity is not None and self._prefix_plan is not None and self._prefix_plan[0] == key:
            return self._prefix_plan[1]
        prefix_tokens = []
        for template in self.templates:
            text = template[: template.index("{}")].rstrip()
            t = self.encoder.tokenize([text]).long()[0]
            prefix_tokens.append(t[: int(t.argmax())])  # SOT + the words, without end-of-text
        distinct: dict[tuple, int] = {}  # identical prefixes (e.g. "a photo of a") run once
        index = [distinct.setdefault(tuple(p.tolist()), len(distinct)) for p in prefix_tokens]
        empty = distinct.setdefault((), len(distinct))  # for prompts that run whole
        cache = self.encoder.encode_text_prefixes([torch.tensor(k, dtype=torch.long) for k in distinct])
        length = torch.tensor([len(p) for p in prefix_tokens], dtype=torch.long)
        tokens = torch.zeros(len(prefix_tokens), int(length.max()), dtype=torch.long)
        for t, p in enumerate(prefix_tokens):
            tokens[t, : len(p)] = p
        plan = _PrefixPlan(cache, tokens, length, torch.tensor(index, dtype=torch.long), empty)
        self._prefix_plan = (key, plan)
        return plan

    def _encode_prompts_shared_prefix(
        self, plan: _PrefixPlan, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Same as ``_encode_prompts`` (prompt i from template i % T), each prompt starting from its
        template's encoded prefix when its tokens begin with it and its end-of-text token comes
        after it, else from the empty prefix."""
        n, n_ctx = tokens.shape
        template = torch.arange(n) % len(self.templates)
        length, index = plan.length[template], plan.index[template]
        p = plan.tokens.shape[1]
        in_prefix = torch.arange(p) < length[:, None]  # (N, P)
        matches = ((tokens[:, :p] == plan.tokens[template]) | ~in_prefix).all(dim=1)
        usable = matches & (length > 0) & (length < lengths)
        pid = torch.where(usable, index, plan.empty)
        plen = torch.where(usable, length, 0)
        run = lengths - plen  # the suffix: synonym, template tail, end-of-text
        device = self._device()
        feats = torch.empty(0)
        for rows, width in self._calls(run, n_ctx):
            offsets = torch.arange(width)
            cols = (plen[rows, None] + offsets).clamp(max=n_ctx - 1)
            batch = torch.zeros(self.batch_size, width, dtype=torch.long)  # padding rows: zeros,
            batch[: len(rows)] = tokens[rows[:, None], cols] * (offsets < run[rows, None])
            prefix = torch.full((self.batch_size,), plan.empty, dtype=torch.long)  # no prefix
            prefix[: len(rows)] = pid[rows]
            out = self.encoder.encode_text_shared_prefix(plan.cache, prefix.to(device), batch.to(device))
            out = F.normalize(out.float(), dim=-1).cpu()
            if feats.numel() == 0:
                feats = torch.empty(n, out.shape[-1], dtype=torch.float32)
            feats[rows] = out[: len(rows)]
        return feats

    # ---- disk cache -------------------------------------------------------------------------
    def _cache_path(self, identity: str, path: str, device: torch.device, synonym: str) -> tuple[str, str]:
        model_dir = _sha256(f"{_CACHE_FORMAT_VERSION}|{identity}")[:24]
        key = (
            f"{_CACHE_FORMAT_VERSION}|{identity}|templates={self._templates_key}|path={path}"
            f"|device={device.type}|synonym={synonym}"
        )
        return os.path.join(self.cache_dir, model_dir, _sha256(key) + ".pt"), key

    def _load_from_disk(self, identity: str, path: str, device: torch.device, synonym: str) -> Optional[torch.Tensor]:
        file, key = self._cache_path(identity, path, device, synonym)
        if not os.path.isfile(file):
            return None
        try:
            data = torch.load(file, map_location="cpu", weights_only=True)
            emb = data["embedding"]
            if data.get("key") != key:
                raise ValueError("the stored key does not match")
            if not (isinstance(emb, torch.Tensor) and emb.dim() == 1 and torch.isfinite(emb).all()):
                raise ValueError("the stored embedding is not a finite vector")
            return emb.float()
        except Exception as e:
            logger.warning(
                "Ignoring unreadable text-classifier cache file %s (%s: %s); recomputing it.",
                file, type(e).__name__, e,
            )
            return None

    def _save_to_disk(
        self, identity: str, path: str, device: torch.device, synonym: str, embedding: torch.Tensor
    ) -> None:
        if self._disk_write_failed:
            return
        file, key = self._cache_path(identity, path, device, synonym)
        try:
            with atomic_write(file) as f:  # readers see the old or the new file, never a torn one
                torch.save({"key": key, "embedding": embedding.detach().cpu().float().clone()}, f)
        except OSError as e:
            self._disk_write_failed = True
            logger.warning(
                "Cannot write the text-classifier cache under %s (%s); continuing without "
                "writing it (set MODEL.FROZEN_SEG.TEXT_CACHE_DIR to a writable directory or '').",
                self.cache_dir, e,
            )
