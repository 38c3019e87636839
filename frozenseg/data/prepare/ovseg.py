"""OVSeg's class-name lists, copied from a checkout of the OVSeg repository (the conversion of
``datasets/prepare_ovseg_vocabularies.py``).

OVSeg evaluates ADE20K-847 and Pascal Context 59/459, and trains on COCO-Stuff 171, with class
strings defined in its own registration files (:data:`frozenseg.data.ovseg_classes.OVSEG_VOCABULARIES`).
They are not shipped here; this reads them from ``--ovseg-repo`` (a checkout of
facebookresearch/ov-seg) without importing its code: each file is parsed with :mod:`ast` and the
module-level list or tuple of the expected length whose items are strings, or dicts with a
``"name"``, is taken. Output: ``<root>/ovseg_vocabularies/<key>.json`` (``{"source", "classes"}``),
which the OVSeg benchmark registrations read. The two lists that ship (ADE20K-150, VOC-20) are
compared with the repository's when it has them, and a difference is reported.
"""

from __future__ import annotations

import ast
import logging
import os

from ..ovseg_classes import OVSEG_VOCABULARIES, SHIPPED, ovseg_classes, prepared_vocabulary_path
from .common import InputError, parser, require, run, write_json

__all__ = ["class_lists_in_source", "convert", "main"]

logger = logging.getLogger(__name__)


def _names(node: ast.AST) -> list[str] | None:
    """The class strings of a literal list/tuple of strings or of dicts with a ``"name"``."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value):
        return [v["name"] for v in value]
    return None


def class_lists_in_source(source: str) -> dict[str, list[str]]:
    """``{variable: class strings}`` of every module-level assignment of a literal class list in
    the Python ``source``."""
    found = {}
    for stmt in ast.parse(source).body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        value = getattr(stmt, "value", None)
        names = _names(value) if value is not None else None
        for t in targets:
            if isinstance(t, ast.Name) and names is not None:
                found[t.id] = names
    return found


def _find(repo: str, key: str) -> tuple[str, list[str]]:
    count, origin = OVSEG_VOCABULARIES[key]
    path = require(os.path.join(repo, origin), f"the OVSeg file that defines the {count} {key} classes")
    with open(path, encoding="utf-8") as f:
        try:
            lists = class_lists_in_source(f.read())
        except SyntaxError as e:
            raise InputError(f"{path} is not valid Python ({e.msg}, line {e.lineno}).") from None
    matches = {name: v for name, v in lists.items() if len(v) == count}
    if len(matches) != 1:
        raise InputError(
            f"{path} should define exactly one list of {count} class names; found "
            f"{len(matches)} ({', '.join(matches) or 'none'}). Is --ovseg-repo an ov-seg checkout?"
        )
    (variable, names), = matches.items()
    return f"{origin}:{variable}", names


def convert(root: str, ovseg_repo: str) -> list[str]:
    """Copy OVSeg's class-name lists from an ov-seg checkout into ``<root>/ovseg_vocabularies/``.

    Returns the paths written. Raises :class:`InputError` when a file is missing or does not
    define exactly one list of the expected length.
    """
    require(ovseg_repo, "a checkout of the OVSeg repository (--ovseg-repo)")
    written = []
    for key, (count, origin) in OVSEG_VOCABULARIES.items():
        if key in SHIPPED:
            if os.path.isfile(os.path.join(ovseg_repo, origin)):
                source, names = _find(ovseg_repo, key)
                if names != ovseg_classes(key, root):
                    logger.warning("%s differs from the shipped %s list; the shipped one is used.", source, key)
            continue
        source, names = _find(ovseg_repo, key)
        path = prepared_vocabulary_path(root, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, {"source": source, "classes": names})
        logger.info("Wrote the %d %s classes of %s to %s", count, key, source, path)
        written.append(path)
    return written


def _command(argv) -> None:
    ap = parser(convert.__doc__)
    ap.add_argument("--ovseg-repo", required=True, help="a checkout of facebookresearch/ov-seg")
    args = ap.parse_args(argv)
    convert(args.root, args.ovseg_repo)


def main(argv=None) -> None:
    """``datasets/prepare_ovseg_vocabularies.py --ovseg-repo PATH [--root R]``: :func:`convert`."""
    run(_command, argv)
