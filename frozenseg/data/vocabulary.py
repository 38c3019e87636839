"""Vocabulary files: one class per line, ``id:name,synonym,synonym``.

The format is the one the open-vocabulary segmentation community already uses (e.g. the
``*_with_prompt_eng.txt`` files of FC-CLIP / FrozenSeg). Rules:

* one class per line, in the dataset's class order (the line order is the contiguous class id);
* ``id`` is the dataset's own category id (an integer), followed by ``:``;
* after the colon, comma-separated names; the first is the class name, the others synonyms.
  Every synonym is used as a prompt for the text classifier, and a test class counts as "seen"
  when any of its synonyms is also a synonym of a training class;
* blank lines and lines starting with ``#`` are ignored; spaces around each name are stripped.

Inside the model a class is one string, ``"name,synonym,..."``, split by the release's own rule
(:func:`split_synonyms`: ``", "`` counts as ``","``, other spaces are kept).

The benchmark vocabularies are not files: they are the released system's own class strings,
shipped verbatim in ``vocabularies/released_metadata.json`` (:mod:`frozenseg.data.released`).
The ``.txt`` files in ``frozenseg/data/vocabularies/`` are the synthetic shapes set's vocabulary
and the opt-in LVIS synonym vocabulary (provenance: ``vocabularies/README.md``).

A user can point any dataset at their own file of this format (``DATASETS.VOCABULARY_FILES``
or :func:`frozenseg.data.builtin.set_vocabulary_file`); its number of classes must match the
dataset's. ``tools/export_vocabulary.py`` writes any dataset's vocabulary as such a file, to
start from.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from typing import Iterable, Sequence

__all__ = [
    "VocabularyError",
    "parse_vocabulary",
    "read_vocabulary_entries",
    "read_vocabulary_file",
    "write_vocabulary_file",
    "validate_vocabulary",
    "builtin_vocabulary_path",
    "split_synonyms",
    "parse_class_names",
    "seen_class_mask",
]

logger = logging.getLogger(__name__)

VOCABULARY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocabularies")


class VocabularyError(ValueError):
    """A vocabulary file is missing, malformed, or does not fit its dataset."""


def parse_vocabulary(text: str, source: str = "<string>") -> list[tuple[int, list[str]]]:
    """Parse vocabulary text into ``[(category_id, [name, synonym, ...]), ...]`` in file order.

    Raises :class:`VocabularyError` naming ``source`` and the line for: a line without ``:``, a
    non-integer id, an empty name or synonym, a repeated id, or a file without classes.
    """
    entries: list[tuple[int, list[str]]] = []
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise VocabularyError(
                f"{source}, line {lineno}: expected 'id:name,synonym,...', got {raw!r}."
            )
        id_str, names_str = line.split(":", 1)
        try:
            cat_id = int(id_str.strip())
        except ValueError:
            raise VocabularyError(
                f"{source}, line {lineno}: the id {id_str.strip()!r} is not an integer."
            ) from None
        names = [n.strip() for n in names_str.split(",")]
        if not names or any(not n for n in names):
            raise VocabularyError(
                f"{source}, line {lineno}: empty class name or synonym in {raw!r}."
            )
        if cat_id in seen:
            raise VocabularyError(
                f"{source}, line {lineno}: id {cat_id} already used on line {seen[cat_id]}."
            )
        seen[cat_id] = lineno
        entries.append((cat_id, names))
    if not entries:
        raise VocabularyError(f"{source}: no classes found (expected 'id:name,synonym,...' lines).")
    return entries


def read_vocabulary_entries(path: str) -> list[tuple[int, list[str]]]:
    """Read a vocabulary file into ``[(category_id, [name, synonym, ...]), ...]``.

    A relative ``path`` that does not exist from the working directory is looked up from the
    repository (or installed package) root, so ``frozenseg/data/vocabularies/<file>`` works
    from anywhere."""
    from ..utils.paths import resolve_path

    path = str(resolve_path(str(path)))
    if not os.path.isfile(path):
        raise VocabularyError(f"Vocabulary file {path!r} does not exist.")
    with open(path, encoding="utf-8") as f:
        return parse_vocabulary(f.read(), source=path)


def read_vocabulary_file(path: str) -> list[str]:
    """Read a vocabulary file; returns one ``"name,synonym,..."`` string per class, in order."""
    return [",".join(names) for _, names in read_vocabulary_entries(path)]


def split_synonyms(entry: str) -> list[str]:
    """The synonyms of a class string, by the released system's rule:
    ``entry.replace(", ", ",").split(",")``.

    ``"dog, puppy"`` -> ``["dog", "puppy"]``. Other whitespace is kept verbatim, as in the release
    (its ADE20K instance class ``"window "`` is the synonym ``"window "``: it is not "seen" as
    COCO's ``"window"`` and its prompts read ``"a photo of a window ."``). Empty parts are kept
    too; :func:`parse_class_names` rejects them.
    """
    return entry.replace(", ", ",").split(",")


def write_vocabulary_file(
    path: str,
    classes: Sequence[str | Sequence[str]],
    ids: Iterable[int] | None = None,
    header: str | None = None,
) -> str:
    """Write ``classes`` (each ``"name,syn"`` or ``[name, syn, ...]``) as a vocabulary file.

    The file format strips the spaces around each name. ``ids`` default to 0, 1, 2, ...; ``header`` lines are written as ``#`` comments. The result
    is re-read and validated; returns ``path``.
    """
    ids = list(range(len(classes))) if ids is None else [int(i) for i in ids]
    if len(ids) != len(classes):
        raise VocabularyError(f"{len(ids)} ids given for {len(classes)} classes.")
    lines = []
    if header:
        lines += [f"# {h}".rstrip() for h in header.splitlines()]
    for cat_id, c in zip(ids, classes):
        names = [str(n).strip() for n in (split_synonyms(c) if isinstance(c, str) else c)]
        if not names or any(not n or "," in n or "\n" in n for n in names):
            raise VocabularyError(f"Class {cat_id}: invalid names {c!r}.")
        lines.append(f"{cat_id}:{','.join(names)}")
    text = "\n".join(lines) + "\n"
    parse_vocabulary(text, source=path)  # validate before writing
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    logger.info("Wrote vocabulary of %d classes to %s", len(classes), path)
    return path


def validate_vocabulary(
    vocabulary: Sequence[str], num_classes: int, dataset_name: str, source: str = "vocabulary"
) -> None:
    """Raise :class:`VocabularyError` unless ``vocabulary`` has exactly ``num_classes`` entries."""
    if len(vocabulary) != num_classes:
        raise VocabularyError(
            f"{source} has {len(vocabulary)} classes but dataset {dataset_name!r} has "
            f"{num_classes}; a vocabulary file must list every class of the dataset, one per "
            "line, in the dataset's class order."
        )


def builtin_vocabulary_path(filename: str) -> str:
    """Absolute path of a vocabulary file shipped in ``frozenseg/data/vocabularies/``."""
    try:
        p = resources.files("frozenseg.data").joinpath("vocabularies", filename)
        path = str(p)
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - unusual installs
        path = os.path.join(VOCABULARY_DIR, filename)
    if not os.path.isfile(path):
        raise VocabularyError(f"Built-in vocabulary file {filename!r} not found at {path}.")
    return path


def parse_class_names(class_names: Sequence[str]) -> list[list[str]]:
    """Split each class name into its synonyms (:func:`split_synonyms`, the release's rule).

    Args:
        class_names: K strings of comma-separated synonyms (``"dog, puppy"`` == ``"dog,puppy"``).
    Returns:
        K lists of synonyms, in order, verbatim (spaces other than after a comma are kept).
    Raises:
        ValueError: empty vocabulary, or a class (or one of its synonyms) that is empty or blank.
    """
    if isinstance(class_names, str):
        raise ValueError(
            "parse_class_names expects a list of class names, not a single string; wrap it in a list."
        )
    if len(class_names) == 0:
        raise ValueError("The vocabulary is empty: at least one class name is needed to build a text classifier.")
    parsed = []
    for i, name in enumerate(class_names):
        if not isinstance(name, str):
            raise ValueError(f"Class name #{i} is {type(name).__name__}, expected a string: {name!r}.")
        synonyms = split_synonyms(name)
        if any(not s.strip() for s in synonyms):
            raise ValueError(
                f"Class name #{i} ({name!r}) is empty or has an empty synonym; each class must be "
                f"a comma-separated list of non-empty names (e.g. 'dog,puppy')."
            )
        parsed.append(synonyms)
    return parsed


def seen_class_mask(class_names: Sequence[str], train_class_names: Sequence[str] | None) -> list[bool]:
    """Per class: True when one of its synonyms is also a synonym of a training class.

    The release's rule (spec §7.2): exact, case-sensitive comparison of the synonyms as
    :func:`split_synonyms` gives them. Without a training vocabulary every class is unseen.
    """
    train = {s for syns in parse_class_names(list(train_class_names)) for s in syns} if train_class_names else set()
    return [any(s in train for s in syns) for syns in parse_class_names(list(class_names))]
