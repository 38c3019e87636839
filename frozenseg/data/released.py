"""The released FrozenSeg's dataset metadata, shipped verbatim: the one source of the benchmark
vocabularies, id maps, thing/stuff flags and colours.

``frozenseg/data/vocabularies/released_metadata.json`` maps each of the 32 dataset names that the
released code registers to the metadata it attaches (see ``vocabularies/README.md`` for the
provenance): ``stuff_classes`` / ``thing_classes`` (class strings with synonyms, exactly as the
release feeds them to its text classifier, quirks included: ``"window "`` with a trailing space,
repeated synonyms), ``stuff_dataset_id_to_contiguous_id`` / ``thing_dataset_id_to_contiguous_id``,
``stuff_colors`` / ``thing_colors``, ``ignore_label`` and ``label_divisor``. Zero-shot numbers of a
released checkpoint depend on these strings, so they are data, not code.

The file is parsed once per process (a few milliseconds); callers get copies.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from typing import Any, NamedTuple

from .vocabulary import split_synonyms

__all__ = [
    "RELEASED_METADATA_FILE",
    "RELEASE_TRAIN_DATASET",
    "ReleasedClass",
    "released_dataset_names",
    "released_metadata",
    "released_classes",
    "released_categories",
    "PASCAL_CONTEXT_59_LABEL_NAMES",
]

RELEASED_METADATA_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "vocabularies", "released_metadata.json"
)
#: The training set whose vocabulary decides which test classes are "seen" in the release
RELEASE_TRAIN_DATASET = "openvocab_coco_2017_train_panoptic_with_sem_seg"

#: The Pascal Context 59 benchmark classes as the dataset's ``labels.txt`` names them, in the order
#: of the release's 59-class list (the release's display names differ for five of them: computer
#: -> "computer case", light -> "lamp", road -> "street", table -> "diningtable", wood -> "wood
#: piece"). The label maps are defined by these names, not by the release's strings.
PASCAL_CONTEXT_59_LABEL_NAMES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse",
    "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
    "potted plant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tv monitor", "wall", "water", "window", "wood",
)

_ID_MAPS = ("stuff_dataset_id_to_contiguous_id", "thing_dataset_id_to_contiguous_id")


@lru_cache(maxsize=1)
def _all() -> dict[str, dict[str, Any]]:
    with open(RELEASED_METADATA_FILE, encoding="utf-8") as f:
        data = json.load(f)
    for meta in data.values():
        for key in _ID_MAPS:  # JSON object keys are strings; the dataset ids are integers
            if key in meta:
                meta[key] = {int(k): int(v) for k, v in meta[key].items()}
    return data


def released_dataset_names() -> list[str]:
    """The 32 dataset names the release registers, sorted."""
    return sorted(_all())


def released_metadata(name: str) -> dict[str, Any]:
    """A copy of the metadata the release attaches to dataset ``name`` (id-map keys as ``int``).

    Raises ``KeyError`` naming the known datasets when the release does not register ``name``.
    """
    data = _all()
    if name not in data:
        raise KeyError(
            f"The release registers no dataset {name!r}; it registers: {', '.join(sorted(data))}."
        )
    return copy.deepcopy(data[name])


class ReleasedClass(NamedTuple):
    """One class of a released dataset, in contiguous order.

    ``dataset_id``: the id the dataset's own files use; ``name``: the class string with its
    synonyms (``"wall,walls,..."``); ``isthing``: whether the release treats it as a thing;
    ``color``: its RGB colour, or None where the release gives none.
    """

    dataset_id: int
    name: str
    isthing: bool
    color: tuple[int, int, int] | None


def released_classes(name: str) -> list[ReleasedClass]:
    """The classes of released dataset ``name`` in contiguous order.

    Which list: ``stuff_classes`` (Mask2Former convention: every class of a semantic or panoptic
    dataset) or, for instance datasets, ``thing_classes``. Dataset ids come from the id maps (the
    union of the stuff and thing maps: Cityscapes keeps its things out of the stuff map); without
    maps they are the contiguous ids, except LVIS-style instance lists (``thing_classes`` only),
    whose category ids are ``contiguous + 1`` (LVIS v1 ids 1..1203; Detectron2's loader subtracts 1).
    A class is a thing when its dataset id is a key of the thing map (instance datasets: all).
    """
    if name not in _all():
        released_metadata(name)  # raises the KeyError that lists the known names
    meta = _all()[name]
    instance_only = "stuff_classes" not in meta
    classes = meta["thing_classes"] if instance_only else meta["stuff_classes"]
    thing_map = meta.get("thing_dataset_id_to_contiguous_id", {})
    id_of: dict[int, int] = {}
    for key in _ID_MAPS:
        id_of.update({c: i for i, c in meta.get(key, {}).items()})
    colors = meta.get("thing_colors" if instance_only else "stuff_colors")
    out = []
    for k, cls in enumerate(classes):
        if k in id_of:
            dataset_id = id_of[k]
        else:
            dataset_id = k + 1 if instance_only else k
        isthing = instance_only or dataset_id in thing_map
        color = tuple(int(c) for c in colors[k]) if colors else None
        out.append(ReleasedClass(dataset_id, cls, isthing, color))
    return out


def released_categories(name: str) -> list[dict[str, Any]]:
    """COCO-style ``categories`` of released dataset ``name`` in contiguous order: ``id`` (the
    dataset id), ``name`` (the display name: the first synonym, stripped) and ``isthing`` (0/1)
    -- what prepare scripts write into the jsons they make."""
    return [{"id": c.dataset_id, "name": split_synonyms(c.name)[0].strip(), "isthing": int(c.isthing)}
            for c in released_classes(name)]
