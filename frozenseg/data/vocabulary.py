"""Vocabularies: one home for parsing, validating and choosing them.

A vocabulary is a list of classes; inside the model a class is one string, ``"name,synonym,..."``,
split by the release's own rule (:func:`split_synonyms`: ``", "`` counts as ``","``, other spaces
are kept). Every vocabulary source is checked by :func:`checked_synonyms` (no empty class, no
empty synonym); :class:`Vocabulary` holds an active vocabulary with its thing classes.

Two text forms:

* vocabulary files (:func:`parse_vocabulary_file_text`, :func:`read_vocabulary_file`): one
  class per line, ``id:name,synonym,synonym``. The format is the one the open-vocabulary
  segmentation community already uses (e.g. the ``*_with_prompt_eng.txt`` files of FC-CLIP /
  FrozenSeg). Rules:

  * one class per line, in the dataset's class order (the line order is the contiguous class id);
  * ``id`` is the dataset's own category id (an integer), followed by ``:``;
  * after the colon, comma-separated names; the first is the class name, the others synonyms.
    Every synonym is used as a prompt for the text classifier, and a test class counts as "seen"
    when any of its synonyms is also a synonym of a training class;
  * blank lines and lines starting with ``#`` are ignored; spaces around each name are stripped.

* the command-line form (:func:`parse_cli_vocabulary`): classes separated by ``;``, synonyms by
  ``,`` (``"cat,kitten;dog,puppy;grass"``).

The benchmark vocabularies are not files: they are the released system's own class strings,
shipped verbatim in ``vocabularies/released_metadata.json`` (:mod:`frozenseg.data.released`).
The ``.txt`` files in ``frozenseg/data/vocabularies/`` are the synthetic shapes set's vocabulary
and the opt-in LVIS synonym vocabulary (provenance: ``vocabularies/README.md``).

A user can point any dataset at their own file of this format (``DATASETS.VOCABULARY_FILES``
or :func:`frozenseg.data.builtin.set_vocabulary_file`); its number of classes must match the
dataset's. ``tools/export_vocabulary.py`` writes any dataset's vocabulary as such a file, to
start from. :func:`load_vocabulary` picks the vocabulary a user asked for (command-line text, a
file, a registered dataset, or the merged default of :func:`default_vocabulary`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import TYPE_CHECKING, Iterable, Sequence

from ..utils.file_io import atomic_write
from ..utils.errors import UserInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "VocabularyError",
    "Vocabulary",
    "split_synonyms",
    "checked_synonyms",
    "parse_class_names",
    "seen_class_mask",
    "parse_vocabulary_file_text",
    "read_vocabulary_entries",
    "read_vocabulary_file",
    "write_vocabulary_file",
    "validate_vocabulary",
    "builtin_vocabulary_path",
    "normalize_class_names",
    "normalize_literal_class_names",
    "parse_cli_vocabulary",
]

logger = logging.getLogger(__name__)

VOCABULARY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocabularies")


class VocabularyError(UserInputError, ValueError):
    """A vocabulary is malformed (empty, an empty class or synonym, a repeated class, a bad
    file line), a vocabulary file is missing, or a vocabulary does not fit its dataset."""


def split_synonyms(entry: str) -> list[str]:
    """The synonyms of a class string, by the released system's rule:
    ``entry.replace(", ", ",").split(",")``.

    ``"dog, puppy"`` -> ``["dog", "puppy"]``. Other whitespace is kept verbatim, as in the release
    (its ADE20K instance class ``"window "`` is the synonym ``"window "``: it is not "seen" as
    COCO's ``"window"`` and its prompts read ``"a photo of a window ."``). Empty parts are kept
    too; :func:`checked_synonyms` rejects them.
    """
    return entry.replace(", ", ",").split(",")


def checked_synonyms(entry: str, where: str) -> list[str]:
    """The synonyms of ``entry`` (:func:`split_synonyms`) with the spaces around each stripped;
    the one check every vocabulary source makes: neither the class nor any synonym is empty.

    Args:
        entry: one class string, ``"name,synonym,..."``.
        where: names the class in the error (``"--vocabulary: class #2"``, ``"v.txt, line 3"``).
    Raises:
        VocabularyError: the class is not a string, is blank, or one of its synonyms is.
    """
    if not isinstance(entry, str):
        raise VocabularyError(f"{where} is {entry!r}, not text; give every class as a string such as 'cat,kitten'.")
    if not entry.strip():
        raise VocabularyError(
            f"{where} is empty; give it a name (an empty class name comes from two separators in a "
            "row, or a trailing one)."
        )
    synonyms = [s.strip() for s in split_synonyms(entry)]
    if not all(synonyms):
        raise VocabularyError(
            f"{where} ({entry.strip()!r}) has an empty synonym; separate the class name and its "
            "synonyms by single commas, e.g. 'cat,kitten' (no empty class name or synonym)."
        )
    return synonyms


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
        checked_synonyms(name, f"Class name #{i}")
        parsed.append(split_synonyms(name))
    return parsed


def literal_class_prompts(class_names: Sequence[str]) -> list[list[str]]:
    """The prompts of a *literal* vocabulary (OVSeg's convention, spec OVSEG §2.5): each class
    string is one prompt, commas included (``"road, route"`` stays one string), with the spaces
    around it stripped as the release does (ADE's ``"window "`` -> ``"window"``).

    Returns:
        K one-element lists, the same shape :func:`parse_class_names` returns.
    Raises:
        ValueError: empty vocabulary, or a class name that is not a string or is blank.
    """
    if isinstance(class_names, str):
        raise ValueError(
            "literal_class_prompts expects a list of class names, not a single string; wrap it in a list."
        )
    if len(class_names) == 0:
        raise ValueError("The vocabulary is empty: at least one class name is needed to build a text classifier.")
    prompts = []
    for i, name in enumerate(class_names):
        if not isinstance(name, str):
            raise ValueError(f"Class name #{i} is {type(name).__name__}, expected a string: {name!r}.")
        if not name.strip():
            raise VocabularyError(f"Class name #{i} is empty; give it a name.")
        prompts.append([name.strip()])
    return prompts


def class_prompts(class_names: Sequence[str], literal: bool = False) -> list[list[str]]:
    """Per class, the strings the text classifier encodes: its synonyms
    (:func:`parse_class_names`), or with ``literal`` the whole class string
    (:func:`literal_class_prompts`)."""
    return literal_class_prompts(class_names) if literal else parse_class_names(class_names)


def seen_class_mask(
    class_names: Sequence[str], train_class_names: Sequence[str] | None, literal: bool = False
) -> list[bool]:
    """Per class: True when one of its synonyms is also a synonym of a training class.

    The release's rule (docs/models/frozenseg.md §7.2): exact, case-sensitive comparison of the synonyms as
    :func:`split_synonyms` gives them (with ``literal``: of the whole, stripped class strings).
    Without a training vocabulary every class is unseen.
    """
    train = (
        {s for syns in class_prompts(list(train_class_names), literal) for s in syns} if train_class_names else set()
    )
    return [any(s in train for s in syns) for syns in class_prompts(list(class_names), literal)]


@dataclass(frozen=True)
class Vocabulary:
    """An active vocabulary: K classes, which of them are things, and where it came from.

    Validated on construction (:func:`class_prompts`; thing class indices in range).

    Attributes:
        class_names: K class strings (``"name,synonym,..."``), used verbatim.
        literal: how a class string becomes prompts. False (FrozenSeg): a comma-separated list of
            synonyms, each encoded, the class scoring as its best synonym. True (OVSeg): one
            prompt per class, commas kept (:func:`literal_class_prompts`).
        thing_classes: sorted indices of the thing classes; None: every class is a thing.
        source: where the vocabulary came from, for logs (``"--vocabulary"``, a file, a dataset).
        colors: the dataset's own RGB colour of each class (K tuples), or None.
        train_class_names: the training vocabulary, which decides the *seen* classes (a class
            sharing a synonym with a training class, :func:`seen_class_mask`); None: all unseen.
    """

    class_names: list[str]
    thing_classes: list[int] | None = None
    source: str = ""
    colors: list[tuple[int, int, int]] | None = None
    train_class_names: list[str] | None = None
    literal: bool = False

    def __post_init__(self) -> None:
        names = list(self.class_names)
        class_prompts(names, self.literal)  # validates: raises one clear ValueError on bad input
        object.__setattr__(self, "class_names", names)
        if self.thing_classes is not None:
            bad = [i for i in self.thing_classes if not 0 <= int(i) < len(names)]
            if bad:
                raise ValueError(
                    f"thing_classes {bad} are not valid class indices for a vocabulary of {len(names)} classes."
                )
            object.__setattr__(self, "thing_classes", sorted(int(i) for i in self.thing_classes))

    def __len__(self) -> int:
        return len(self.class_names)

    @cached_property
    def is_thing(self) -> torch.Tensor:
        """(K,) bool: True for the thing classes."""
        import torch

        mask = torch.zeros(len(self), dtype=torch.bool)
        if self.thing_classes is None:
            mask[:] = True
        else:
            mask[self.thing_classes] = True
        return mask

    @cached_property
    def seen(self) -> torch.Tensor:
        """(K,) bool: True for the classes seen in training (:func:`seen_class_mask`)."""
        import torch

        return torch.tensor(
            seen_class_mask(self.class_names, self.train_class_names, self.literal), dtype=torch.bool
        )

    @property
    def prompts(self) -> list[list[str]]:
        """Per class, the strings the text classifier encodes (:func:`class_prompts`)."""
        return class_prompts(self.class_names, self.literal)


# ---------------------------------------------------------------------------------------------
# Vocabulary files
# ---------------------------------------------------------------------------------------------
def parse_vocabulary_file_text(text: str, source: str = "<string>") -> list[tuple[int, list[str]]]:
    """Parse the text of a vocabulary file into ``[(category_id, [name, synonym, ...]), ...]``
    in file order.

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
        names = checked_synonyms(names_str, f"{source}, line {lineno}: class {cat_id}")
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
    return parse_vocabulary_file_text(_read_text(path), source=path)


def _read_text(path: str) -> str:
    """A text file as UTF-8, with or without a byte-order mark, or UTF-16 with one; any other
    encoding is a :class:`VocabularyError` naming the file and the fix."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VocabularyError(
            f"Vocabulary file {path!r} is not UTF-8 (byte {e.start} is {data[e.start:e.start + 1]!r}); save it as "
            "UTF-8 (for example from an editor's 'Save with encoding' or with iconv -t UTF-8)."
        ) from None


def read_vocabulary_file(path: str) -> list[str]:
    """Read a vocabulary file; returns one ``"name,synonym,..."`` string per class, in order."""
    return [",".join(names) for _, names in read_vocabulary_entries(path)]


def write_vocabulary_file(
    path: str,
    classes: Sequence[str | Sequence[str]],
    ids: Iterable[int] | None = None,
    header: str | None = None,
) -> str:
    """Write ``classes`` (each ``"name,syn"`` or ``[name, syn, ...]``) as a vocabulary file.

    The file format strips the spaces around each name. ``ids`` default to 0, 1, 2, ...;
    ``header`` lines are written as ``#`` comments. The text is validated before it is written
    (atomically); returns ``path``.
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
    parse_vocabulary_file_text(text, source=path)  # validate before writing
    with atomic_write(path, mode="w") as f:
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


# ---------------------------------------------------------------------------------------------
# Vocabularies a user asks for (the demo, the predictor)
# ---------------------------------------------------------------------------------------------
def normalize_class_names(entries: Sequence[str], source: str = "vocabulary", warn: bool = True) -> list[str]:
    """Validate and normalise class entries typed by a user (``"cat , kitten"`` -> ``"cat,kitten"``).

    Raises :class:`VocabularyError` for: no classes, an empty class, an empty synonym
    (:func:`checked_synonyms`), a ``;`` or newline inside a class, or a class whose first name
    repeats an earlier class (the error names both). A synonym repeated inside one class is
    dropped, and a secondary synonym shared by two classes is allowed with a warning (both
    classes then score the same on it).
    """
    if not entries:
        raise VocabularyError(f"{source}: the vocabulary is empty; give at least one class.")
    out: list[str] = []
    first_seen: dict[str, int] = {}
    owner: dict[str, int] = {}
    for i, entry in enumerate(entries, start=1):
        syns = checked_synonyms(entry, f"{source}: class #{i}")
        if any(";" in s or "\n" in s for s in syns):
            raise VocabularyError(f"{source}: class #{i} ({entry!r}) contains ';' or a newline; remove it.")
        unique = list(dict.fromkeys(syns))
        if len(unique) != len(syns) and warn:
            logger.warning("%s: class #%d (%r) repeats a synonym; using %r.", source, i, entry, ",".join(unique))
        key = unique[0].lower()
        if key in first_seen:
            j = first_seen[key]
            raise VocabularyError(
                f"{source}: duplicate class {unique[0]!r}: class #{i} ({','.join(unique)!r}) repeats "
                f"class #{j} ({out[j - 1]!r}); merge their synonyms into one class."
            )
        first_seen[key] = i
        for s in unique[1:]:
            if warn and s.lower() in owner and owner[s.lower()] != i:
                logger.warning(
                    "%s: synonym %r is used by class #%d and class #%d.", source, s, owner[s.lower()], i
                )
        for s in unique:
            owner.setdefault(s.lower(), i)
        out.append(",".join(unique))
    return out


def normalize_literal_class_names(entries: Sequence[str], source: str = "vocabulary") -> list[str]:
    """Validate class strings of a *literal* vocabulary (each string is one prompt, OVSeg's
    convention): kept verbatim apart from the spaces around each (``" road, route "`` ->
    ``"road, route"``). Raises :class:`VocabularyError` for no classes, an empty class, a ``;``
    or newline inside a class, or a class repeated (compared without case)."""
    if not entries:
        raise VocabularyError(f"{source}: the vocabulary is empty; give at least one class.")
    out: list[str] = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, str):
            raise VocabularyError(f"{source}: class #{i} is {entry!r}, not text; give every class as a string.")
        name = entry.strip()
        if not name:
            raise VocabularyError(
                f"{source}: class #{i} is empty; give it a name (an empty class comes from two separators "
                "in a row, or a trailing one)."
            )
        if ";" in name or "\n" in name:
            raise VocabularyError(f"{source}: class #{i} ({entry!r}) contains ';' or a newline; remove it.")
        same = [j for j, prev in enumerate(out, start=1) if prev.lower() == name.lower()]
        if same:
            raise VocabularyError(f"{source}: class #{i} ({name!r}) repeats class #{same[0]}; keep one of them.")
        out.append(name)
    return out


def parse_cli_vocabulary(text: str, literal: bool = False, source: str = "--vocabulary") -> list[str]:
    """Parse the command-line vocabulary: classes separated by ``;``, synonyms by ``,``.

    ``"cat,kitten; dog , puppy;grass"`` -> ``["cat,kitten", "dog,puppy", "grass"]``. A single
    trailing ``;`` is allowed. Errors (:class:`VocabularyError`, naming ``source``, e.g. the web
    page's field): empty text, empty classes
    (``";;"``), empty synonyms (``"cat,,kitten"``), duplicate classes. With ``literal`` (a model
    that takes each class string as one prompt) the classes are only split on ``;`` and kept
    verbatim (:func:`normalize_literal_class_names`): ``"cat, kitten;dog"`` ->
    ``["cat, kitten", "dog"]``.
    """
    if text is None or not str(text).strip():
        raise VocabularyError("--vocabulary is empty; e.g. --vocabulary \"cat,kitten;dog,puppy;grass\".")
    parts = str(text).split(";")
    if len(parts) > 1 and not parts[-1].strip():
        parts = parts[:-1]  # one trailing separator is harmless
    if literal:
        return normalize_literal_class_names(parts, source=source)
    return normalize_class_names(parts, source=source)
