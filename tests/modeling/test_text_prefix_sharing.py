"""Shared-prefix text encoding in the classifier builder (text_classifier.py): the prompt prefix
common to all synonyms is encoded once, with the same classifier as the full-prompt path. The
backbone's shared-prefix forward itself is tested in test_clip_text.py."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from frozenseg.modeling.backbone import VILD_PROMPT_TEMPLATES, CLIPBackbone, TextClassifierBuilder

from .tiny_clip import TEXT_TOWERS, build_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG_NAME = " ".join(f"w{i}" for i in range(30))  # ~60 tokens: prompts end near the 77 limit
TOO_LONG_NAME = " ".join(["zebra"] * 80)  # longer than the context: every prompt truncated
AWKWARD = [
    "dog, puppy, dog house",  # a synonym that extends another one
    "traffic light",
    "wall-brick, brick wall",
    "café, naïve 日本語, Zürich façade",
    "st., ok..., !?",  # punctuation merging with the template's '.' in BPE
    "a",  # shorter than most words of the templates
    "ThIs Is",  # case folding; same words as the template
    LONG_NAME,
    TOO_LONG_NAME,
]


@pytest.fixture(scope="module", params=TEXT_TOWERS)
def clip(request):
    kind, quick_gelu = request.param
    return build_tiny_clip(kind, load_pretrained=False, quick_gelu=quick_gelu)


class Counting:
    """Wraps an encoder and counts the calls of each text method and the prompts encoded (the
    builder's all-zero padding rows are not prompts); ``fast=False`` hides the shared-prefix
    methods (an encoder without the fast path)."""

    def __init__(self, inner, fast: bool = True):
        self.inner = inner
        self.calls = {"encode_text": 0, "encode_text_prefixes": 0, "encode_text_shared_prefix": 0}
        self.prompts = 0
        if fast:
            self.supports_text_prefix_sharing = inner.supports_text_prefix_sharing
            self.encode_text_prefixes = self._count("encode_text_prefixes")
            self.encode_text_shared_prefix = self._count("encode_text_shared_prefix")

    def _count(self, name):
        fn = getattr(self.inner, name)

        def wrapper(*args):
            self.calls[name] += 1
            if name == "encode_text_shared_prefix":
                self.prompts += int(args[-1].ne(0).any(dim=1).sum())  # not the all-zero padding rows
            return fn(*args)

        return wrapper

    @property
    def device(self):
        return self.inner.device

    def tokenize(self, texts):
        return self.inner.tokenize(texts)

    def encode_text(self, tokens):
        self.calls["encode_text"] += 1
        self.prompts += int(tokens.ne(0).any(dim=1).sum())  # not the all-zero padding rows
        return self.inner.encode_text(tokens)


def reference_rows(clip: CLIPBackbone, synonyms) -> torch.Tensor:
    """open_clip's own full-length encode_text, one prompt set per synonym."""
    rows = []
    for s in synonyms:
        tokens = clip.tokenize([t.format(s) for t in VILD_PROMPT_TEMPLATES])
        with torch.no_grad():
            v = F.normalize(clip.clip_model.encode_text(tokens), dim=-1)
        rows.append(F.normalize(v.mean(0), dim=0))
    return torch.stack(rows)


def test_tokenisation_of_the_awkward_vocabulary_is_awkward(clip):
    """The vocabulary does exercise the edge cases it claims to."""
    tok = clip.tokenize
    assert int(tok([f"There is a large {LONG_NAME} in the scene."]).argmax(-1)) > 60
    assert int(tok([f"a photo of a {TOO_LONG_NAME}."]).argmax(-1)) == 76  # truncated
    # "ok..." + "." -> one "...." token: the synonym's tokens are not a prefix of the prompt's
    alone = tok(["a photo of a ok..."])[0]
    full = tok(["a photo of a ok...."])[0]
    n = int(alone.argmax())  # tokens before EOT
    assert not torch.equal(alone[:n], full[:n])


@pytest.mark.slow
def test_prefix_shared_classifier_equals_full_path(clip):
    fast_enc = Counting(clip)
    fast, counts = TextClassifierBuilder(encoder=fast_enc, batch_size=16).build(AWKWARD)
    assert fast_enc.calls["encode_text"] == 0 and fast_enc.calls["encode_text_prefixes"] == 1
    n_syn = sum(counts)
    assert fast_enc.prompts == n_syn * len(VILD_PROMPT_TEMPLATES)

    full_enc = Counting(clip, fast=False)
    full, counts_full = TextClassifierBuilder(encoder=full_enc, batch_size=16).build(AWKWARD)
    assert full_enc.calls["encode_text"] > 0 and counts_full == counts
    assert fast.shape == full.shape == (n_syn, clip.dim_latent)
    assert (fast - full).abs().max() < 1e-5

    off, _ = TextClassifierBuilder(encoder=clip, batch_size=16, share_prefixes=False).build(AWKWARD)
    assert torch.equal(off, full)  # share_prefixes=False is the unchanged full path

    synonyms = [s.strip() for name in AWKWARD for s in name.split(",")]
    assert (fast - reference_rows(clip, synonyms)).abs().max() < 1e-5


@pytest.mark.parametrize("names", [["dog"], ["dog", "dog"], ["x, y"]])
def test_small_vocabularies(clip, names):
    """One synonym: the prefix is the whole prompt but its end-of-text token."""
    fast, _ = TextClassifierBuilder(encoder=clip).build(names)
    full, _ = TextClassifierBuilder(encoder=clip, share_prefixes=False).build(names)
    assert (fast - full).abs().max() < 1e-5


def test_batch_size_does_not_matter(clip):
    names = ["dog, puppy", "traffic light", "wall-brick"]
    a, _ = TextClassifierBuilder(encoder=clip, batch_size=1).build(names)
    b, _ = TextClassifierBuilder(encoder=clip, batch_size=5).build(names)
    c, _ = TextClassifierBuilder(encoder=clip, batch_size=1000).build(names)
    assert (a - b).abs().max() < 1e-5 and (a - c).abs().max() < 1e-5




def test_encoder_without_fast_path(clip):
    """Encoders without the methods, or reporting no support, use the full path."""
    names = ["dog, puppy", "traffic light"]
    reference, _ = TextClassifierBuilder(encoder=clip, share_prefixes=False).build(names)

    plain = Counting(clip, fast=False)
    out, _ = TextClassifierBuilder(encoder=plain).build(names)
    assert plain.calls["encode_text"] > 0 and torch.equal(out, reference)

    unsupported = Counting(clip)
    unsupported.supports_text_prefix_sharing = lambda: False
    out, _ = TextClassifierBuilder(encoder=unsupported).build(names)
    assert unsupported.calls["encode_text"] > 0 and unsupported.calls["encode_text_shared_prefix"] == 0
    assert torch.equal(out, reference)




def test_disk_cache_keeps_the_paths_apart(clip, tmp_path):
    """The two paths round differently, so each reads only the rows it wrote: a row from the
    cache is the same bits as the path's own fresh encoding."""
    names = ["dog, puppy", "wall-brick"]
    full, _ = TextClassifierBuilder(encoder=clip, cache_dir=str(tmp_path), share_prefixes=False).build(names)
    enc = Counting(clip)
    enc.text_cache_identity = clip.text_cache_identity
    fast, _ = TextClassifierBuilder(encoder=enc, cache_dir=str(tmp_path)).build(names)
    assert enc.prompts == 3 * len(VILD_PROMPT_TEMPLATES)  # not read from the full path's rows
    assert torch.equal(fast, TextClassifierBuilder(encoder=clip).build(names, cached=False)[0])
    assert len(list(tmp_path.rglob("*.pt"))) == 2 * 3
    for share, expected in ((False, full), (True, fast)):
        again_enc = Counting(clip, fast=share)
        again_enc.text_cache_identity = clip.text_cache_identity
        again, _ = TextClassifierBuilder(encoder=again_enc, cache_dir=str(tmp_path)).build(names)
        assert sum(again_enc.calls.values()) == 0 and torch.equal(again, expected)
