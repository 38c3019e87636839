"""OVSeg's own class strings for its benchmarks (docs/models/ovseg.md §6): where they come from.

OVSeg classifies each benchmark with class strings of its own, used verbatim as one prompt each
(``"road, route"``; :func:`frozenseg.data.vocabulary.literal_class_prompts`), not FrozenSeg's
synonym lists. Two lists ship with the package (``vocabularies/ovseg_classes.json``, provenance in
that folder's README): ADE20K-150 and Pascal VOC-20, which OVSeg takes from Detectron2 v0.6. The
others (ADE20K-847, Pascal Context 59 and 459, COCO-Stuff 171) exist only in the OVSeg repository's
registration files; ``datasets/prepare_ovseg_vocabularies.py --ovseg-repo PATH`` copies them from
a checkout of it into ``$DETECTRON2_DATASETS/ovseg_vocabularies/<key>.json``
(:mod:`frozenseg.data.prepare.ovseg`).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from .vocabulary import VocabularyError

__all__ = ["OVSEG_VOCABULARIES", "SHIPPED", "ovseg_classes", "prepared_vocabulary_path"]

#: key -> (number of classes, where the OVSeg release defines the list)
OVSEG_VOCABULARIES = {
    "ade20k_sem_seg": (150, "detectron2 v0.6 ADE20K_SEM_SEG_CATEGORIES"),
    "pascalvoc20_sem_seg": (20, "open_vocab_seg/data/datasets/register_voc_seg.py"),
    "ade20k_full_sem_seg": (847, "open_vocab_seg/data/datasets/register_ade20k_full.py"),
    "pascal_context_59_sem_seg": (59, "open_vocab_seg/data/datasets/register_pascal_context.py"),
    "pascal_context_459_sem_seg": (459, "open_vocab_seg/data/datasets/register_pascal_context.py"),
    "coco_2017_stuff_sem_seg": (171, "open_vocab_seg/data/datasets/register_coco_stuff.py"),
}
#: the keys whose lists ship with the package
SHIPPED = ("ade20k_sem_seg", "pascalvoc20_sem_seg")

_SHIPPED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocabularies", "ovseg_classes.json")


@lru_cache(maxsize=None)
def _shipped() -> dict[str, list[str]]:
    with open(_SHIPPED_FILE, encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def prepared_vocabulary_path(root: str, key: str) -> str:
    """Where ``datasets/prepare_ovseg_vocabularies.py`` writes the list ``key`` under ``root``."""
    return os.path.join(root, "ovseg_vocabularies", f"{key}.json")


def ovseg_classes(key: str, root: str) -> list[str]:
    """OVSeg's class strings for ``key`` (one of :data:`OVSEG_VOCABULARIES`), verbatim.

    Shipped lists need nothing on disk; the others are read from
    :func:`prepared_vocabulary_path`. Raises :class:`VocabularyError` naming the command that
    writes a missing list, or the file when it does not hold the expected number of strings.
    """
    if key not in OVSEG_VOCABULARIES:
        raise KeyError(f"No OVSeg vocabulary {key!r}; known: {', '.join(OVSEG_VOCABULARIES)}.")
    count, origin = OVSEG_VOCABULARIES[key]
    if key in SHIPPED:
        return list(_shipped()[key])
    path = prepared_vocabulary_path(root, key)
    if not os.path.isfile(path):
        raise VocabularyError(
            f"OVSeg's {count} class names for {key} are not shipped (they live only in the OVSeg "
            f"repository, {origin}); run datasets/prepare_ovseg_vocabularies.py --ovseg-repo "
            f"/path/to/ov-seg --root {root} to copy them to {path}."
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise VocabularyError(f"{path} is not valid JSON ({e.msg}); re-run "
                                  "datasets/prepare_ovseg_vocabularies.py.") from None
    classes = data.get("classes") if isinstance(data, dict) else None
    if not (isinstance(classes, list) and len(classes) == count and all(isinstance(c, str) for c in classes)):
        raise VocabularyError(
            f"{path} does not hold the {count} class strings of {key}; re-run "
            "datasets/prepare_ovseg_vocabularies.py."
        )
    return classes
