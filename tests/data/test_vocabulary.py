"""Vocabularies a user gives (frozenseg.data.vocabulary): the command-line syntax, vocabulary
files, registered datasets and the merged default, with their validation."""

from __future__ import annotations

import pytest

from frozenseg.data.vocabulary import Vocabulary, VocabularyError, parse_cli_vocabulary

from frozenseg.data.vocabulary_sources import default_vocabulary, load_vocabulary


def test_parse_cli_vocabulary_separators_and_whitespace():
    parse = parse_cli_vocabulary
    assert parse("cat,kitten;dog,puppy;grass") == ["cat,kitten", "dog,puppy", "grass"]
    assert parse("  cat , kitten ;dog,  puppy ; grass;") == ["cat,kitten", "dog,puppy", "grass"]
    assert parse("traffic light,stop light") == ["traffic light,stop light"]
    assert parse("cat,cat,kitten") == ["cat,kitten"]  # a repeated synonym is dropped


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("cat;;dog", "class #2 is empty"),
        (";cat", "class #1 is empty"),
        ("cat,,kitten;dog", "empty synonym"),
        ("cat,kitten;dog;Cat", "duplicate class 'Cat'"),
        ("dog,puppy;dog", "duplicate class 'dog'"),
    ],
)
def test_parse_cli_vocabulary_errors(text, message):
    with pytest.raises(VocabularyError, match=message):
        parse_cli_vocabulary(text)


def test_load_vocabulary_sources(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# my classes\n3:cat,kitten\n7:grass\n")
    v = load_vocabulary(vocabulary_file=str(f))
    assert v.class_names == ["cat,kitten", "grass"] and v.thing_classes == [0]  # grass is stuff
    v = load_vocabulary(dataset_vocabulary="synthetic_shapes_val_panoptic")
    assert v.class_names[0].startswith("circle") and v.thing_classes == [0, 1, 2, 3]
    with pytest.raises(VocabularyError, match="not a registered dataset"):
        load_vocabulary(dataset_vocabulary="no_such_dataset")
    with pytest.raises(VocabularyError, match="only one"):
        load_vocabulary(vocabulary="cat", vocabulary_file=str(f))


def test_default_vocabulary_merges_and_dedupes():
    v = default_vocabulary(include_lvis=False)
    firsts = [n.split(",")[0].lower() for n in v.class_names]
    assert len(firsts) == len(set(firsts))  # deduplicated by first synonym
    assert 133 < len(v) < 133 + 150  # COCO + the ADE20K classes COCO lacks
    assert firsts[0] == "person" and 0 in v.thing_classes
    assert firsts.index("sky") not in v.thing_classes


def test_vocabulary_flags_and_validation():
    v = Vocabulary(["dog,puppy", "grass", "window "], thing_classes=(2, 0), train_class_names=["puppy", "sky"])
    assert v.class_names == ["dog,puppy", "grass", "window "] and v.thing_classes == [0, 2]
    assert v.is_thing.tolist() == [True, False, True]
    assert v.seen.tolist() == [True, False, False]
    assert Vocabulary(["a", "b"]).is_thing.tolist() == [True, True]
    assert Vocabulary(["a", "b"]).seen.tolist() == [False, False]  # no training vocabulary
    with pytest.raises(ValueError, match=r"thing_classes \[2\]"):
        Vocabulary(["a", "b"], thing_classes=[2])
    with pytest.raises(ValueError, match="empty synonym"):
        Vocabulary(["a,,b"])


def test_literal_vocabulary_prompts_and_seen_classes():
    from frozenseg.data.vocabulary import Vocabulary, class_prompts

    names = ["road, route", "window ", "sky,heaven"]
    assert class_prompts(names, literal=True) == [["road, route"], ["window"], ["sky,heaven"]]
    assert class_prompts(names) == [["road", "route"], ["window "], ["sky", "heaven"]]
    v = Vocabulary(names, literal=True, train_class_names=["sky,heaven", "road"])
    assert v.prompts == [["road, route"], ["window"], ["sky,heaven"]]
    assert v.seen.tolist() == [False, False, True]  # whole strings compared, not synonyms
    assert Vocabulary(names, train_class_names=["sky,heaven", "road"]).seen.tolist() == [True, False, True]
    # a class that is only a comma is two empty synonyms for FrozenSeg but a valid literal prompt
    assert Vocabulary([","], literal=True).prompts == [[","]]
    with pytest.raises(ValueError, match="empty synonym"):
        Vocabulary([","])


def test_literal_command_line_vocabulary():
    """For a literal-vocabulary model (OVSeg) the command-line classes are split on ";" only and
    kept verbatim (outer spaces dropped); errors stay one sentence."""
    assert parse_cli_vocabulary(" cat, kitten ;dog;grass;", literal=True) == ["cat, kitten", "dog", "grass"]
    v = load_vocabulary("road, route;sky", literal=True)
    assert v.literal and v.class_names == ["road, route", "sky"] and v.prompts == [["road, route"], ["sky"]]
    assert v.thing_classes is None
    names = ["cat,kitten", "dog"]
    assert load_vocabulary(names, literal=True).class_names == names and names == ["cat,kitten", "dog"]
    with pytest.raises(VocabularyError, match=r"^--vocabulary: class #2 is empty; give it a name"):
        parse_cli_vocabulary("cat;;dog", literal=True)
    with pytest.raises(VocabularyError, match=r"^--vocabulary: class #2 \('Cat'\) repeats class #1; keep one of them\.$"):
        parse_cli_vocabulary("cat;Cat", literal=True)


def test_vocabulary_files_in_utf8_with_a_bom_and_utf16_read_and_others_are_named(tmp_path):
    """Editors save UTF-8 with a byte-order mark or UTF-16: both read as the same classes; a
    file in another encoding (Latin-1) is one sentence naming it and the fix."""
    from frozenseg.data.vocabulary import read_vocabulary_file

    text = "0:café,coffee shop\n1:dog\n"
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (tmp_path / "utf16.txt").write_bytes(text.encode("utf-16"))
    assert read_vocabulary_file(str(tmp_path / "bom.txt")) == ["café,coffee shop", "dog"]
    assert read_vocabulary_file(str(tmp_path / "utf16.txt")) == ["café,coffee shop", "dog"]
    (tmp_path / "latin1.txt").write_bytes(text.encode("latin-1"))
    with pytest.raises(VocabularyError, match=r"^Vocabulary file '.*latin1.txt' is not UTF-8 \(byte 5 is b'\\xe9'\); "
                                              r"save it as UTF-8"):
        read_vocabulary_file(str(tmp_path / "latin1.txt"))
