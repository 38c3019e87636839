"""A class name too long for CLIP's 77-token context is cut by the tokenizer: the builder warns
once per name, with its token count (never cut silently)."""

from __future__ import annotations

import logging

import pytest

from frozenseg.modeling.backbone import VILD_PROMPT_TEMPLATES, TextClassifierBuilder

from .tiny_clip import build_tiny_clip

LOGGER = "frozenseg.modeling.backbone.text_classifier"


@pytest.fixture(scope="module")
def tiny_clip():
    return build_tiny_clip("convnext")


def _cut_prompts(clip, name: str) -> int:
    """Prompts of ``name`` longer than 77 tokens, counted by open_clip's tokenizer with a longer
    context (end-of-text position + 1)."""
    prompts = [t.format(name) for t in VILD_PROMPT_TEMPLATES]
    return int(((clip.tokenizer(prompts, context_length=300).argmax(-1) + 1) > 77).sum())


@pytest.mark.slow
def test_long_class_name_warns_once_with_its_token_count(tiny_clip, caplog):
    long_name = " ".join(["red"] * 70)  # 70 tokens: "a photo of a <70>." fits exactly, others do not
    longer = "a " + " ".join(["blue"] * 99)  # 100 tokens: every prompt is cut
    n_cut = _cut_prompts(tiny_clip, long_name)
    assert 0 < n_cut < len(VILD_PROMPT_TEMPLATES) and _cut_prompts(tiny_clip, longer) == 14
    builder = TextClassifierBuilder(encoder=tiny_clip)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        builder.build(["dog", long_name, f"cat,{longer}", " ".join(["green"] * 60)])
        builder.clear_cache()
        builder.build([long_name, "dog"])  # encoded again: no second warning
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages == [
        f"Class name {long_name!r} is 70 tokens long: {n_cut} of its 14 prompts exceed the text encoder's "
        "77-token context and are cut, so the end of the name is ignored; shorten it (or split it into "
        "synonyms with ',').",
        f"Class name {longer!r} is 100 tokens long: 14 of its 14 prompts exceed the text encoder's 77-token "
        "context and are cut, so the end of the name is ignored; shorten it (or split it into synonyms "
        "with ',').",
    ]
