"""Tests of the text classifier (docs/models/frozenseg.md §2): templates, synonyms, truncated encoding, caches."""

from __future__ import annotations

import logging
import zlib

import pytest
import torch
from torch.nn import functional as F

from frozenseg.config import get_cfg
from frozenseg.modeling.backbone import (
    VILD_PROMPT_TEMPLATES,
    CLIPBackbone,
    TextClassifierBuilder,
    parse_class_names,
)
from frozenseg.modeling.backbone.text_classifier import WeightsFingerprint

from .tiny_clip import build_tiny_clip

TINY_CONVNEXT = "tiny_convnext_clip"  # model config shipped with the package
EOT = 49407


@pytest.fixture(scope="module")
def tiny_clip():
    return build_tiny_clip("convnext")


class StubEncoder:
    """Hand-made text encoder: one fixed random vector per prompt, calls are counted.

    ``tokenize`` puts the prompt's id at position 0 and the end-of-text id after one token per
    word, so the builder's call shapes are visible: ``encode_text`` checks that every call has
    ``rows`` rows (when given) and that its width is each of its prompts' length rounded up to a
    multiple of 8. All-zero rows are the builder's padding: they get a zero vector and are not
    counted.
    """

    def __init__(self, name: str = "stub", dim: int = 8, rows: int | None = None):
        self.name = name
        self.dim = dim
        self.rows = rows
        self.prompts: list[str] = []
        self.encode_calls = 0
        self.encoded_prompts = 0

    def vector(self, prompt: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.name}|{prompt}".encode()))
        return torch.randn(self.dim, generator=g) * (1 + len(prompt) % 3)  # various norms

    def tokenize(self, texts):
        out = torch.zeros(len(texts), 77, dtype=torch.long)
        for i, t in enumerate(texts):
            self.prompts.append(t)
            out[i, 0] = len(self.prompts)  # 1-based prompt id
            out[i, min(len(t.split()) + 1, 76)] = EOT
        return out

    def encode_text(self, tokens):
        self.encode_calls += 1
        real = tokens[:, 0] > 0
        self.encoded_prompts += int(real.sum())
        assert self.rows is None or tokens.shape[0] == self.rows, "calls of another size"
        eot = tokens[real].argmax(dim=-1)
        width = torch.full_like(eot, tokens.shape[1])
        assert torch.equal((eot + 1 + 7) // 8 * 8, width), "width not its prompts' length rounded up to 8"
        out = torch.zeros(tokens.shape[0], self.dim)
        for row in real.nonzero().flatten().tolist():
            out[row] = self.vector(self.prompts[int(tokens[row, 0]) - 1])
        return out

    def text_cache_identity(self):
        return f"stub-model:{self.name}"


def expected_row(enc: StubEncoder, synonym: str) -> torch.Tensor:
    vs = torch.stack([F.normalize(enc.vector(t.format(synonym)), dim=0) for t in VILD_PROMPT_TEMPLATES])
    return F.normalize(vs.mean(0), dim=0)


def test_vild_templates_exact():
    assert VILD_PROMPT_TEMPLATES == (
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


def test_parse_class_names():
    assert parse_class_names(["dog, puppy"]) == parse_class_names(["dog,puppy"]) == [["dog", "puppy"]]
    # the release's rule, name.replace(", ", ",").split(","): other spaces are kept verbatim
    # (the released ADE20K instance class "window " is the synonym "window ")
    assert parse_class_names(["  traffic light ,  stop sign ", "cat", "window "]) == [
        ["  traffic light ", " stop sign "],
        ["cat"],
        ["window "],
    ]
    for bad in ([""], ["dog", "  "], ["dog,,puppy"], ["dog,"], ["dog, ,puppy"]):
        with pytest.raises(ValueError, match="empty"):
            parse_class_names(bad)
    with pytest.raises(ValueError, match="vocabulary is empty"):
        parse_class_names([])


@pytest.mark.slow
def test_truncated_encoding_equals_full_length(tiny_clip):
    prompts = ["a photo of a dog.", "There is a large traffic light in the scene.", "x", "This is a photo of a medium wall-brick"]
    tokens = tiny_clip.tokenize(prompts)
    assert tokens.shape == (4, 77) and tokens.dtype == torch.long
    full = tiny_clip.encode_text(tokens)
    torch.testing.assert_close(full, tiny_clip.clip_model.encode_text(tokens))  # open_clip's own
    length = int(tokens.argmax(-1).max()) + 1
    assert length < 77
    truncated = tiny_clip.encode_text(tokens[:, :length])
    assert (truncated - full).abs().max() < 1e-5
    for i, p in enumerate(prompts):  # each prompt alone, cut right after its own EOT
        t = tiny_clip.tokenize([p])
        single = tiny_clip.encode_text(t[:, : int(t.argmax(-1)) + 1])
        assert (single[0] - full[i]).abs().max() < 1e-5


def test_template_math_and_num_templates():
    enc = StubEncoder(rows=5)
    builder = TextClassifierBuilder(encoder=enc, batch_size=5)
    names = ["dog, puppy", "traffic light", "cat,kitten,tabby cat"]
    clf, num_templates = builder.build(names)
    assert num_templates == [2, 1, 3]
    assert clf.shape == (6, 8) and clf.dtype == torch.float32
    expected = torch.stack(
        [expected_row(enc, s) for s in ["dog", "puppy", "traffic light", "cat", "kitten", "tabby cat"]]
    )
    torch.testing.assert_close(clf, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(clf.norm(dim=-1), torch.ones(6))
    # calls of 5 rows, one width each (the stub checks both): a stub prompt takes its words + 2
    # tokens, so these 84 are of width 8 or 16
    synonyms = ["dog", "puppy", "traffic light", "cat", "kitten", "tabby cat"]
    widths = [(len(t.format(s).split()) + 2 + 7) // 8 * 8 for s in synonyms for t in VILD_PROMPT_TEMPLATES]
    assert set(widths) == {8, 16}
    assert enc.encoded_prompts == 6 * 14
    assert enc.encode_calls == sum(-(-widths.count(w) // 5) for w in set(widths))

    other = TextClassifierBuilder(encoder=StubEncoder(), batch_size=1000)
    torch.testing.assert_close(other.build(names)[0], clf, atol=1e-6, rtol=1e-5)


def test_in_memory_cache():
    enc = StubEncoder()
    builder = TextClassifierBuilder(encoder=enc)
    a, n_a = builder.build(["dog", "cat"])
    calls = enc.encode_calls
    b, n_b = builder.build(["dog", "cat"])
    assert enc.encode_calls == calls
    assert torch.equal(a, b) and n_a == n_b
    builder.build(["dog", "bird"])
    assert enc.encode_calls > calls
    with pytest.raises(ValueError):
        builder.build([])


def test_disk_cache_across_builders(tmp_path):
    names = ["dog, puppy", "cat"]
    enc1 = StubEncoder("m1")
    first, counts = TextClassifierBuilder(encoder=enc1, cache_dir=str(tmp_path)).build(names)
    assert enc1.encode_calls > 0
    assert len(list(tmp_path.rglob("*.pt"))) == 3  # one file per synonym
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temporaries

    enc2 = StubEncoder("m1")  # same model identity, new builder (as in another process)
    second, counts2 = TextClassifierBuilder(encoder=enc2, cache_dir=str(tmp_path)).build(names)
    assert enc2.encode_calls == 0
    torch.testing.assert_close(first, second)
    assert counts == counts2 == [2, 1]
    # another vocabulary reuses the synonyms it shares
    enc2b = StubEncoder("m1")
    TextClassifierBuilder(encoder=enc2b, cache_dir=str(tmp_path)).build(["cat", "bird"])
    assert enc2b.encoded_prompts == 14

    enc3 = StubEncoder("m2")  # different model / weights -> different key
    third, _ = TextClassifierBuilder(encoder=enc3, cache_dir=str(tmp_path)).build(names)
    assert enc3.encoded_prompts == 3 * 14
    assert not torch.allclose(third, first)

    enc4 = StubEncoder("m1")  # different templates -> different key
    TextClassifierBuilder(encoder=enc4, cache_dir=str(tmp_path), templates=("a {}",)).build(names)
    assert enc4.encoded_prompts == 3


def test_disk_cache_disabled_and_env_expansion(tmp_path, monkeypatch):
    enc = StubEncoder()
    TextClassifierBuilder(encoder=enc, cache_dir="").build(["dog"])
    assert not list(tmp_path.rglob("*.pt"))
    monkeypatch.setenv("FROZENSEG_TEST_CACHE", str(tmp_path))
    TextClassifierBuilder(encoder=StubEncoder(), cache_dir="$FROZENSEG_TEST_CACHE/text").build(["dog"])
    assert len(list((tmp_path / "text").rglob("*.pt"))) == 1


def test_corrupt_cache_file_is_recomputed(tmp_path, caplog):
    names = ["dog", "cat"]
    reference, _ = TextClassifierBuilder(encoder=StubEncoder(), cache_dir=str(tmp_path)).build(names)
    files = sorted(tmp_path.rglob("*.pt"))
    files[0].write_bytes(b"not a torch file")
    enc = StubEncoder()
    with caplog.at_level(logging.WARNING):
        again, _ = TextClassifierBuilder(encoder=enc, cache_dir=str(tmp_path)).build(names)
    assert enc.encoded_prompts == 14  # only the corrupt synonym
    assert any("recomputing" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(again, reference)
    enc2 = StubEncoder()  # the file was rewritten
    TextClassifierBuilder(encoder=enc2, cache_dir=str(tmp_path)).build(names)
    assert enc2.encode_calls == 0


def test_builder_from_config(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.FROZEN_SEG.TEXT_BATCH_SIZE = 7
    cfg.MODEL.FROZEN_SEG.TEXT_CACHE_DIR = str(tmp_path)
    builder = TextClassifierBuilder(cfg, encoder=StubEncoder())
    assert builder.batch_size == 7 and builder.cache_dir == str(tmp_path)


@pytest.mark.slow
def test_real_clip_classifier_and_identity(tiny_clip, tmp_path):
    names = ["dog, puppy", "wall-brick"]
    builder = TextClassifierBuilder(encoder=tiny_clip, batch_size=9, cache_dir=str(tmp_path))
    clf, counts = builder.build(names)
    assert counts == [2, 1] and clf.shape == (3, tiny_clip.dim_latent)
    rows = []
    for s in ["dog", "puppy", "wall-brick"]:
        tokens = tiny_clip.tokenize([t.format(s) for t in VILD_PROMPT_TEMPLATES])
        with torch.no_grad():
            v = F.normalize(tiny_clip.clip_model.encode_text(tokens), dim=-1)  # full length
        rows.append(F.normalize(v.mean(0), dim=0))
    torch.testing.assert_close(clf, torch.stack(rows), atol=1e-5, rtol=1e-5)

    # identity: hash of the actual text weights -> random inits never collide, same weights agree
    torch.manual_seed(123)
    other = CLIPBackbone(model_name=TINY_CONVNEXT, pretrained="")
    assert other.text_cache_identity() != tiny_clip.text_cache_identity()
    other.load_state_dict(tiny_clip.state_dict())  # e.g. a checkpoint supplies the weights
    assert other.text_cache_identity() == tiny_clip.text_cache_identity()
    calls = []
    for method in ("encode_text", "encode_text_prefixes", "encode_text_shared_prefix"):
        original = getattr(other, method)
        setattr(other, method, lambda *args, _f=original: calls.append(1) or _f(*args))
    again, _ = TextClassifierBuilder(encoder=other, cache_dir=str(tmp_path)).build(names)
    assert not calls
    torch.testing.assert_close(again, clf)


def test_weights_fingerprint_follows_the_tensors():
    """Names, dtypes, shapes and bytes are hashed; in-place edits and replacements are seen."""
    a, b = torch.arange(6.0).reshape(2, 3), torch.ones(4, dtype=torch.float16)
    fingerprint = WeightsFingerprint()
    first = fingerprint([("a", a), ("b", b)])
    assert len(first) == 64 and first == WeightsFingerprint()([("a", a.clone()), ("b", b.clone())])
    assert fingerprint([("a", a), ("b", b)]) == first
    assert WeightsFingerprint()([("x", a), ("b", b)]) != first  # the name
    assert WeightsFingerprint()([("a", a.reshape(3, 2)), ("b", b)]) != first  # the shape
    assert WeightsFingerprint()([("a", a), ("b", b.float())]) != first  # the dtype
    a[0, 0] = 100.0  # in place: the version counter moves
    changed = fingerprint([("a", a), ("b", b)])
    assert changed != first
    a[0, 0] = 0.0
    assert fingerprint([("a", a), ("b", b)]) == first
    assert WeightsFingerprint()([("a", torch.empty(2, 3, device="meta"))]) is None


def test_literal_vocabulary_encodes_each_class_string_as_one_prompt():
    """OVSeg's convention: "road, route" is one prompt (commas kept, outer spaces stripped as the
    release does), not two synonyms; the same names with synonyms give K' = 3 rows."""
    enc = StubEncoder()
    builder = TextClassifierBuilder(encoder=enc)
    rows, counts = builder.build(["road, route", "window "], literal=True)
    assert counts == [1, 1] and rows.shape == (2, enc.dim)
    torch.testing.assert_close(rows[0], expected_row(enc, "road, route"))
    torch.testing.assert_close(rows[1], expected_row(enc, "window"))
    syn_rows, syn_counts = builder.build(["road, route", "window "])
    assert syn_counts == [2, 1]
    torch.testing.assert_close(syn_rows[0], expected_row(enc, "road"))
    torch.testing.assert_close(syn_rows[1], expected_row(enc, "route"))
    with pytest.raises(ValueError, match="empty"):
        builder.build(["sky", "  "], literal=True)
