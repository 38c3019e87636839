"""Offline noun extraction for pair mining (frozenseg.models.ovseg.adaptation.caption_nouns): exact nouns of
hand-made captions, plurals, multi-word nouns, the NLTK back-end's wiring (a stand-in nltk
module) and the back-end choice."""

from __future__ import annotations

import sys
import types

import pytest

from frozenseg.models.ovseg.adaptation.caption_nouns import (
    NounExtractorUnavailable,
    VocabularyNounExtractor,
    build_noun_extractor,
    caption_words,
    noun_vocabulary,
    singular_candidates,
)


@pytest.fixture(scope="module")
def extractor():
    return VocabularyNounExtractor()


@pytest.mark.parametrize("caption, nouns", [
    ("A man riding a wave on top of a surfboard.", ["man", "wave", "surfboard"]),
    ("Two dogs are playing with a frisbee in the grass.", ["dog", "frisbee", "grass"]),
    ("People standing next to traffic lights near buses.", ["person", "traffic light", "bus"]),
    ("A plate of food with broccoli and carrots on a dining table.",
     ["plate", "food", "broccoli", "carrot", "dining table"]),
    ("knives, forks and spoons on shelves with boxes of tomatoes", ["knife", "fork", "spoon", "shelf", "box", "tomato"]),
    ("A giraffe standing in front of some trees; more giraffes.", ["giraffe", "tree"]),
    ("The man's umbrella", ["man", "umbrella"]),
    ("", []),
])
def test_vocabulary_nouns_of_hand_made_captions(extractor, caption, nouns):
    assert extractor(caption) == nouns


def test_singular_candidates_rules():
    assert singular_candidates("puppies") == ["puppy", "puppie"]
    assert singular_candidates("hooves") == ["hoof", "hoofe", "hoove"]
    assert singular_candidates("scarves") == ["scarf"]  # irregular
    assert singular_candidates("benches") == ["bench", "benche"]
    assert singular_candidates("dogs") == ["dog"]
    assert singular_candidates("people") == ["person"]
    assert singular_candidates("glass") == [] and singular_candidates("bus") == []


def test_vocabulary_contents_and_extra_file(tmp_path):
    vocab = noun_vocabulary()
    assert {"dog", "traffic light", "teddy bear", "giraffe", "t-shirt", "brick wall"} <= vocab
    assert not {"top", "front", "bat", "ceiling-other", "wall-brick"} & vocab
    extra = tmp_path / "nouns.txt"
    extra.write_text("# extra\nkitchen\nStreet Sign\n")
    assert {"kitchen", "street sign"} <= noun_vocabulary(str(extra))
    extra.write_text("kitchen\nstop, sign\n")
    with pytest.raises(ValueError, match="not nouns of letters"):
        noun_vocabulary(str(extra))


def test_custom_vocabulary_and_phrase_length():
    e = VocabularyNounExtractor({"hot dog", "dog", "hot dog stand"})
    assert e("Hot dogs at a hot dog stand and a dog") == ["hot dog", "hot dog stand", "dog"]
    assert VocabularyNounExtractor({"hot dog stand", "dog"}, max_phrase_words=2)("a hot dog stand") == ["dog"]
    assert caption_words("A T-shirt, the man's hat!") == ["a", "t-shirt", "the", "man", "hat"]


def _fake_nltk(with_wordnet: bool):
    tags = {"dogs": "NNS", "park": "NN", "run": "VBP", "London": "NNP", "geese": "NNS"}
    data = types.SimpleNamespace(find=lambda r: r if with_wordnet or "wordnet" not in r else (_ for _ in ()).throw(LookupError(r)))
    lemmas = {"dogs": "dog", "geese": "goose"}
    stem = types.SimpleNamespace(WordNetLemmatizer=lambda: types.SimpleNamespace(lemmatize=lambda w, pos: lemmas.get(w, w)))
    return types.SimpleNamespace(
        data=data, stem=stem, word_tokenize=str.split,
        pos_tag=lambda tokens: [(t, tags.get(t, "DT")) for t in tokens],
    )


def test_nltk_backend_wiring(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "nltk", _fake_nltk(with_wordnet=True))
    with caplog.at_level("INFO"):
        e = build_noun_extractor("auto")
    assert e.name == "nltk" and "back-end 'nltk'" in caplog.text
    assert e("dogs run park geese park") == ["dog", "park", "goose"]
    monkeypatch.setitem(sys.modules, "nltk", _fake_nltk(with_wordnet=False))
    assert build_noun_extractor("nltk")("dogs park") == ["dog", "park"]  # rule-based plural


def test_backend_choice_without_nltk(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "nltk", None)  # import fails
    with pytest.raises(NounExtractorUnavailable, match="needs the nltk package"):
        build_noun_extractor("nltk")
    with caplog.at_level("INFO"):
        e = build_noun_extractor("auto")
    assert e.name == "vocabulary" and "no downloads" in caplog.text
    with pytest.raises(ValueError, match="Unknown noun back-end"):
        build_noun_extractor("spacy")
