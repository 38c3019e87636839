"""LVIS v1 categories -> a vocabulary file with cleaned synonyms (the opt-in LVIS vocabulary), the
conversion of ``datasets/prepare_lvis_vocabulary.py``.

The release classifies LVIS with Detectron2's class names verbatim (``aerosol_can``: each
category's first LVIS synonym, underscores included, no other synonym), and so does this project
by default. This conversion writes the alternative that a user can opt into: every LVIS synonym
of a category, cleaned by this project's rule (:func:`clean_synonyms`), one line per category
(``id:name,synonym,...``, ids 1..1203).

Input: an LVIS v1 annotation json (``--json``, default ``<root>/lvis/lvis_v1_val.json``; only its
``categories`` are read). Output: ``--output`` (default
``<root>/lvis/lvis_v1_synonyms.txt``). The file shipped as
``frozenseg/data/vocabularies/lvis_v1_synonyms.txt`` was written by it (see that folder's
README). Use it with
``DATASETS.VOCABULARY_FILES "openvocab_lvis_v1_val:frozenseg/data/vocabularies/lvis_v1_synonyms.txt"``.
"""

from __future__ import annotations

import json
import logging
import os

from ..vocabulary import write_vocabulary_file
from .common import InputError, parser, require, run

__all__ = ["clean_synonyms", "categories_vocabulary", "convert", "main"]

logger = logging.getLogger(__name__)


def clean_synonyms(synonyms: list[str]) -> list[str]:
    """This project's cleaning of LVIS synonyms: underscores become spaces (``aerosol_can`` ->
    ``aerosol can``; a sense in parentheses stays: ``bat_(animal)`` -> ``bat (animal)``), runs of
    spaces become one, commas (the vocabulary separator) become spaces, and repeats after
    cleaning are dropped. The order is kept, so the first name is the release's class name."""
    out: list[str] = []
    for s in synonyms:
        name = " ".join(str(s).replace("_", " ").replace(",", " ").split())
        if name and name not in out:
            out.append(name)
    return out


def categories_vocabulary(categories: list[dict]) -> list[tuple[int, list[str]]]:
    """``(id, cleaned synonyms)`` per category, by id. A category's names are its ``synonyms``
    (LVIS lists the name among them, first); ``name`` is used when they are missing."""
    out = []
    for c in sorted(categories, key=lambda c: int(c["id"])):
        names = clean_synonyms(list(c.get("synonyms") or []) or [c["name"]])
        if not names:
            raise InputError(f"LVIS category {c['id']} has no usable name or synonym.")
        out.append((int(c["id"]), names))
    return out


def convert(root: str, json_file: str | None = None, output: str | None = None) -> str:
    """LVIS v1 categories -> a vocabulary file with cleaned synonyms (the opt-in LVIS vocabulary).

    ``json_file`` defaults to ``<root>/lvis/lvis_v1_val.json``, ``output`` to
    ``<root>/lvis/lvis_v1_synonyms.txt``; returns ``output``.
    """
    json_file = require(json_file or os.path.join(root, "lvis", "lvis_v1_val.json"), "an LVIS v1 json")
    with open(json_file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{json_file} is not valid JSON ({e.msg}, line {e.lineno}); "
                             "pass an LVIS v1 annotation json.") from None
    if not isinstance(data, dict) or not data.get("categories"):
        raise InputError(f"{json_file} has no 'categories' (expected an LVIS v1 annotation json).")
    entries = categories_vocabulary(data["categories"])
    output = output or os.path.join(root, "lvis", "lvis_v1_synonyms.txt")
    write_vocabulary_file(
        output, [n for _, n in entries], ids=[i for i, _ in entries],
        header=f"LVIS v1: {len(entries)} categories with their cleaned LVIS synonyms, written by "
               f"datasets/prepare_lvis_vocabulary.py from the categories of {os.path.basename(json_file)}",
    )
    logger.info("Wrote the %d-class LVIS synonym vocabulary to %s", len(entries), output)
    return output


def _command(argv) -> None:
    ap = parser(convert.__doc__)
    ap.add_argument("--json", default=None, help="LVIS v1 json (default: <root>/lvis/lvis_v1_val.json)")
    ap.add_argument("--output", default=None, help="vocabulary file (default: <root>/lvis/lvis_v1_synonyms.txt)")
    args = ap.parse_args(argv)
    convert(args.root, args.json, args.output)


def main(argv=None) -> None:
    """``datasets/prepare_lvis_vocabulary.py [--root R] [--json FILE] [--output FILE]``: :func:`convert`."""
    run(_command, argv)
