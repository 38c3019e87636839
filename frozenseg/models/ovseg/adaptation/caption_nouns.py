"""Nouns of image captions, offline, for mining mask-noun pairs (docs/models/ovseg.md §3.B1).

The release extracted nouns with NLTK (the OVSeg maintainers' answer in their repository's thread #7); NLTK's tagger needs data
files that are downloaded separately. Two back-ends:

* ``"vocabulary"`` (default, needs nothing but this package): the caption is lower-cased and
  split into words (letters, inner hyphens and apostrophes); from left to right, the longest run
  of at most :data:`MAX_PHRASE_WORDS` words that names an entry of the **noun vocabulary** is
  taken (``"traffic lights"`` before ``"lights"``), its last word singularised by the rule of
  :func:`singular_candidates` (the first candidate that is a vocabulary entry wins; the word as
  written when none is), and the scan continues after it. The noun vocabulary is every synonym
  of the class lists that ship with the package (the released COCO, ADE20K, LVIS, Pascal,
  Cityscapes, Mapillary and BDD lists of ``vocabularies/released_metadata.json``, the LVIS synonyms
  of ``vocabularies/lvis_v1_synonyms.txt`` and OVSeg's lists of ``vocabularies/ovseg_classes.json``)
  lower-cased, with LVIS senses in parentheses removed and underscores as spaces, keeping
  entries of letters, spaces and hyphens only, minus dataset artefacts (``"-other"``,
  ``"-stuff"``, ``"-merged"``, COCO-Stuff's ``"wall-brick"``: hyphenated names whose parts are all
  vocabulary nouns) and :data:`NOT_NOUNS` (words these lists contain that captions
  mostly use otherwise: ``"top"``, ``"front"``, ``"orange"``...). Nouns outside the vocabulary
  are not found; an extra vocabulary file (one noun per line) extends it.
* ``"nltk"``: ``nltk.word_tokenize`` + ``nltk.pos_tag``, every ``NN``/``NNS`` token (the
  release's hint; proper nouns excluded), plurals lemmatised with WordNet when its data is
  installed, else by :func:`singular_candidates`' first rule. Needs the ``nltk`` package and its
  ``punkt``/``averaged_perceptron_tagger`` data.

``"auto"`` uses NLTK when it and its data are installed, else the vocabulary; the back-end that
runs is logged and recorded with the mined data. Each caption's nouns are returned once each, in
order of appearance.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from typing import Callable, Iterable, Sequence

from ....data.released import RELEASED_METADATA_FILE
from ....data.vocabulary import builtin_vocabulary_path, read_vocabulary_file, split_synonyms

__all__ = [
    "NOUN_BACKENDS",
    "MAX_PHRASE_WORDS",
    "NOT_NOUNS",
    "NounExtractorUnavailable",
    "caption_words",
    "singular_candidates",
    "noun_vocabulary",
    "VocabularyNounExtractor",
    "NltkNounExtractor",
    "build_noun_extractor",
]

logger = logging.getLogger(__name__)

NOUN_BACKENDS = ("vocabulary", "nltk", "auto")
#: Longest vocabulary entry matched, in words ("baseball glove": 2, "fire alarm bell": 3).
MAX_PHRASE_WORDS = 3
#: Entries of the class lists that captions mostly use as adjectives, prepositions, verbs or
#: parts of phrases ("on top of", "in front of", "an orange cat", "can be seen").
NOT_NOUNS = frozenset({
    "back", "bottom", "can", "close", "front", "game", "left", "light", "middle", "orange", "pink",
    "right", "side", "top", "white", "black", "green", "blue", "red", "yellow", "brown", "gray",
    "grey", "purple", "gold", "silver", "stand", "match", "date", "fly", "watch", "duck", "seal",
    "squash", "file", "pitcher", "bow", "trunk", "bat", "set", "spring", "play", "run", "walk",
    "ride", "hold", "lay", "rest", "point", "view", "shot", "picture", "image", "photo", "look",
    "lot", "couple", "pair", "group", "bunch", "number", "kind", "way", "area", "part", "piece",
})
_ARTEFACTS = ("other", "stuff", "merged")
_ENTRY = re.compile(r"^[a-z]+(?:[ -][a-z]+)*$")
_WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")
_IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose", "oxen": "ox", "dice": "die",
    "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf",
    "wolves": "wolf", "shelves": "shelf", "halves": "half", "calves": "calf", "scarves": "scarf",
}


class NounExtractorUnavailable(RuntimeError):
    """The requested noun back-end cannot run here (a package or its data is missing)."""


def caption_words(caption: str) -> list[str]:
    """Lower-cased words of a caption: letters with inner hyphens/apostrophes ("t-shirt",
    "man's"); a possessive ``'s`` is dropped ("man's" -> "man")."""
    return [w[:-2] if w.endswith("'s") else w for w in _WORD.findall(caption.lower())]


def singular_candidates(word: str) -> list[str]:
    """Singular forms a plural ``word`` may have, most specific rule first (empty for a word
    that does not look plural):

    irregular plurals ("people" -> "person", "knives" -> "knife"); "-ies" -> "-y"
    ("puppies"); "-ves" -> "-f", "-fe" ("scarves"); "-oes" -> "-o" ("tomatoes"); "-ses",
    "-xes", "-zes", "-ches", "-shes" -> without "-es" ("buses", "boxes", "benches");
    "-s" -> without it ("dogs"), except after "s", "u" or "i" ("glass", "bus", "octopi" stay).
    """
    word = word.lower()
    if word in _IRREGULAR:
        return [_IRREGULAR[word]]
    out: list[str] = []
    if len(word) > 4 and word.endswith("ies"):
        out.append(word[:-3] + "y")
    if len(word) > 4 and word.endswith("ves"):
        out += [word[:-3] + "f", word[:-3] + "fe"]
    if len(word) > 3 and word.endswith("oes"):
        out.append(word[:-2])
    if len(word) > 3 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        out.append(word[:-2])
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        out.append(word[:-1])
    return out


def _normalised(entry: str) -> str | None:
    """A class synonym as a vocabulary noun, or None when it is not usable as one."""
    text = re.sub(r"\([^)]*\)", " ", entry.lower()).replace("_", " ")
    text = " ".join(text.split())
    if not _ENTRY.match(text) or any(text.endswith("-" + a) or text.startswith(a + "-") for a in _ARTEFACTS):
        return None
    return None if text in NOT_NOUNS else text


def _shipped_class_strings() -> Iterable[str]:
    with open(RELEASED_METADATA_FILE, encoding="utf-8") as f:
        for meta in json.load(f).values():
            yield from meta.get("stuff_classes", [])
            yield from meta.get("thing_classes", [])
    yield from read_vocabulary_file(builtin_vocabulary_path("lvis_v1_synonyms.txt"))
    with open(builtin_vocabulary_path("ovseg_classes.json"), encoding="utf-8") as f:
        for key, names in json.load(f).items():
            if not key.startswith("_"):
                yield from names


@lru_cache(maxsize=None)
def _shipped_vocabulary() -> frozenset[str]:
    nouns = {_normalised(s) for entry in _shipped_class_strings() for s in split_synonyms(entry)} - {None}
    # COCO-Stuff's "wall-brick" style names (every part a noun itself; "brick wall" is a synonym)
    return frozenset(n for n in nouns if "-" not in n or not all(p in nouns for p in n.split("-")))


def noun_vocabulary(extra_file: str | None = None) -> frozenset[str]:
    """The noun vocabulary of the ``"vocabulary"`` back-end (see the module doc), plus the
    nouns of ``extra_file`` (UTF-8, one noun per line, ``#`` comments), normalised alike."""
    vocab = _shipped_vocabulary()
    if not extra_file:
        return vocab
    with open(extra_file, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    extra = {_normalised(line) for line in lines if line}
    bad = [line for line in lines if line and _normalised(line) is None]
    if bad:
        raise ValueError(
            f"{extra_file} has entries that are not nouns of letters, spaces and hyphens (e.g. {bad[:3]}); "
            f"fix or remove them."
        )
    return vocab | extra


class VocabularyNounExtractor:
    """The ``"vocabulary"`` back-end: longest vocabulary phrases, singularised (module doc)."""

    name = "vocabulary"

    def __init__(self, vocabulary: Iterable[str] | None = None, max_phrase_words: int = MAX_PHRASE_WORDS):
        """``vocabulary``: the nouns to find (default :func:`noun_vocabulary`), lower case."""
        self.vocabulary = frozenset(vocabulary) if vocabulary is not None else noun_vocabulary()
        self.max_phrase_words = int(max_phrase_words)

    def _noun(self, words: Sequence[str]) -> str | None:
        """The vocabulary noun of a phrase (its last word singularised when that is an entry)."""
        head = " ".join(words[:-1])
        for last in singular_candidates(words[-1]) + [words[-1]]:
            phrase = f"{head} {last}" if head else last
            if phrase in self.vocabulary:
                return phrase
        return None

    def __call__(self, caption: str) -> list[str]:
        """The caption's vocabulary nouns, once each, in order of appearance."""
        words = caption_words(caption)
        nouns: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(self.max_phrase_words, len(words) - i), 0, -1):
                noun = self._noun(words[i:i + n])
                if noun is not None:
                    if noun not in nouns:
                        nouns.append(noun)
                    i += n
                    break
            else:
                i += 1
        return nouns


class NltkNounExtractor:
    """The ``"nltk"`` back-end: tokens tagged ``NN``/``NNS`` by NLTK's tagger (module doc)."""

    name = "nltk"

    def __init__(self):
        try:
            import nltk
        except ImportError as e:
            raise NounExtractorUnavailable(
                "The nltk noun back-end needs the nltk package (pip install nltk); use --noun-backend vocabulary."
            ) from e
        for resource in ("tokenizers/punkt", "taggers/averaged_perceptron_tagger"):
            try:
                nltk.data.find(resource)
            except LookupError as e:
                raise NounExtractorUnavailable(
                    f"NLTK's {resource} data is not installed (python -m nltk.downloader "
                    f"{resource.split('/')[1]}); use --noun-backend vocabulary."
                ) from e
        self._nltk = nltk
        self._lemmatize: Callable[[str], str] | None = None
        try:
            nltk.data.find("corpora/wordnet")
            lemmatizer = nltk.stem.WordNetLemmatizer()
            self._lemmatize = lambda w: lemmatizer.lemmatize(w, "n")
        except LookupError:
            logger.info("NLTK's WordNet data is not installed: plural nouns are singularised by rule.")

    def _singular(self, word: str) -> str:
        if self._lemmatize is not None:
            return self._lemmatize(word)
        candidates = singular_candidates(word)
        return candidates[0] if candidates else word

    def __call__(self, caption: str) -> list[str]:
        """The caption's common nouns (singular), once each, in order of appearance."""
        nouns: list[str] = []
        for token, tag in self._nltk.pos_tag(self._nltk.word_tokenize(caption.lower())):
            if tag not in ("NN", "NNS") or not _WORD.fullmatch(token):
                continue
            noun = self._singular(token) if tag == "NNS" else token
            if noun not in nouns:
                nouns.append(noun)
        return nouns


def build_noun_extractor(backend: str = "vocabulary", extra_vocabulary: str | None = None):
    """The noun extractor of ``backend`` (:data:`NOUN_BACKENDS`); logs which one runs.

    Raises:
        NounExtractorUnavailable: ``"nltk"`` without the package or its data.
        ValueError: an unknown back-end.
    """
    if backend not in NOUN_BACKENDS:
        raise ValueError(f"Unknown noun back-end {backend!r}; use one of {', '.join(NOUN_BACKENDS)}.")
    if backend in ("nltk", "auto"):
        try:
            extractor = NltkNounExtractor()
            logger.info("Noun extraction: NLTK part-of-speech tagger (back-end 'nltk').")
            return extractor
        except NounExtractorUnavailable as e:
            if backend == "nltk":
                raise
            logger.info("Noun extraction: NLTK is unavailable (%s) -> the noun vocabulary.", e)
    extractor = VocabularyNounExtractor(noun_vocabulary(extra_vocabulary))
    logger.info(
        "Noun extraction: the shipped noun vocabulary (%d nouns; back-end 'vocabulary', no downloads).",
        len(extractor.vocabulary),
    )
    return extractor
