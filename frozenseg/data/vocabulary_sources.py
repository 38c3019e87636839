"""Where a vocabulary comes from: the command line, a vocabulary file, a registered dataset (its
class strings verbatim, its thing classes and colours) or the default merge of COCO, ADE20K and,
when its annotation json is present, LVIS; and the thing / stuff guess for a user's classes.
Built on :mod:`.vocabulary` (parsing and the :class:`~.vocabulary.Vocabulary` record) and the
dataset registry (:mod:`.builtin`)."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from typing import Sequence

from .builtin import dataset_class_colors, dataset_vocabulary, thing_class_indices
from .catalog import DatasetCatalog, MetadataCatalog
from .vocabulary import (
    Vocabulary,
    VocabularyError,
    checked_synonyms,
    normalize_class_names,
    normalize_literal_class_names,
    parse_cli_vocabulary,
    read_vocabulary_file,
)

__all__ = [
    "DEFAULT_VOCABULARY_DATASETS",
    "dataset_vocabulary_with_things",
    "infer_thing_classes",
    "default_vocabulary",
    "default_vocabulary_lvis_json",
    "load_vocabulary",
]

logger = logging.getLogger(__name__)

#: Datasets whose vocabularies make up the default vocabulary, in this order.
DEFAULT_VOCABULARY_DATASETS = (
    "openvocab_coco_2017_val_panoptic",
    "openvocab_ade20k_panoptic_val",
    "openvocab_lvis_v1_val",
)


def _thing_lookup() -> dict[str, bool]:
    """Synonym (lower case) -> is-thing, from the COCO and ADE20K vocabularies (first wins)."""
    lookup: dict[str, bool] = {}
    for name in DEFAULT_VOCABULARY_DATASETS[:2]:
        try:
            names, things = dataset_vocabulary_with_things(name)
        except Exception as e:  # noqa: BLE001 - the heuristic is optional
            logger.debug("No thing/stuff information from %s: %s", name, e)
            continue
        thing_set = set(things) if things is not None else set(range(len(names)))
        for k, entry in enumerate(names):
            for s in checked_synonyms(entry, f"{name}: class #{k}"):
                lookup.setdefault(s.lower(), k in thing_set)
    return lookup


def infer_thing_classes(class_names: Sequence[str]) -> list[int]:
    """Thing classes of a user vocabulary: a class is stuff when its first synonym known to the
    COCO / ADE20K vocabularies is a stuff class there ("grass", "sky", "wall"); every other
    class is a thing. Stuff classes form one segment per class in panoptic output and are not
    reported as instances."""
    lookup = _thing_lookup()
    things, stuff = [], []
    for k, entry in enumerate(class_names):
        syns = checked_synonyms(entry, f"class #{k}")
        verdict = next((lookup[s.lower()] for s in syns if s.lower() in lookup), True)
        (things if verdict else stuff).append(k)
    if stuff:
        logger.info(
            "Treating as stuff (known stuff classes): %s",
            ", ".join(checked_synonyms(class_names[k], f"class #{k}")[0] for k in stuff),
        )
    return things


def dataset_vocabulary_with_things(dataset_name: str, cfg=None) -> tuple[list[str], list[int] | None]:
    """(class names, thing class indices or None for "all things") of a registered dataset."""
    if dataset_name not in DatasetCatalog:
        close = difflib.get_close_matches(dataset_name, DatasetCatalog.list(), n=3, cutoff=0.6)
        raise VocabularyError(
            f"--dataset-vocabulary {dataset_name!r} is not a registered dataset; "
            + (f"did you mean {', '.join(close)}? " if close else
               f"registered: {', '.join(sorted(DatasetCatalog.list())[:12])}, ... ")
            + "(your own dataset: register its description file with --register-dataset FILE or DATASETS.REGISTER)."
        )
    names = dataset_vocabulary(dataset_name, cfg)
    if MetadataCatalog.get(dataset_name).get("dataset_kind") in ("instances", "lvis"):
        return names, None
    things = thing_class_indices(dataset_name)  # the release's thing flags, where it has them
    return names, things if things is not None else infer_thing_classes(names)


def default_vocabulary_lvis_json() -> str:
    """The LVIS annotation json whose presence adds LVIS to the default vocabulary: the json of
    the registered ``openvocab_lvis_v1_val`` (``$DETECTRON2_DATASETS/lvis/lvis_v1_val.json`` as
    registered), or "" when that dataset is not registered."""
    name = DEFAULT_VOCABULARY_DATASETS[2]
    if name not in DatasetCatalog:
        return ""
    return MetadataCatalog.get(name).get("json_file") or ""


def default_vocabulary(include_lvis: bool = True) -> Vocabulary:
    """COCO panoptic (133) + ADE20K (150) + LVIS (1203, only when ``include_lvis`` and its
    annotation json is present under ``$DETECTRON2_DATASETS``: :func:`default_vocabulary_lvis_json`),
    merged in that order. Without the json: the 227 classes of COCO and ADE20K. The LVIS class
    names ship with the package; the json only says that LVIS is in use here, and is not read.

    De-duplication: a class is skipped when its name (first synonym) is already a synonym of an
    earlier class (COCO "tv" vs ADE20K "television receiver,tv": both kept; ADE20K "car" after
    COCO "car,cars": skipped); secondary synonyms already used by an earlier class are dropped
    from the later class, so no two classes share a prompt.
    """
    datasets = DEFAULT_VOCABULARY_DATASETS[:2]
    notes = []
    if include_lvis:
        lvis_json = default_vocabulary_lvis_json()
        if lvis_json and os.path.isfile(lvis_json):
            datasets = DEFAULT_VOCABULARY_DATASETS
        else:
            notes.append(f"LVIS left out: no {lvis_json or DEFAULT_VOCABULARY_DATASETS[2] + ' json'}")
    names: list[str] = []
    things: list[int] = []
    used: set[str] = set()
    sources = []
    for ds in datasets:
        try:
            ds_names, ds_things = dataset_vocabulary_with_things(ds)
        except Exception as e:  # noqa: BLE001 - a dataset whose vocabulary is unusable is skipped
            logger.info("Default vocabulary: skipping %s (%s).", ds, str(e).splitlines()[0][:200])
            continue
        thing_set = set(range(len(ds_names))) if ds_things is None else set(ds_things)
        added = 0
        for k, entry in enumerate(ds_names):
            syns = list(dict.fromkeys(checked_synonyms(entry, f"{ds}: class #{k}")))
            if syns[0].lower() in used:
                continue
            syns = [syns[0]] + [x for x in syns[1:] if x.lower() not in used]
            used.update(x.lower() for x in syns)
            if k in thing_set:
                things.append(len(names))
            names.append(",".join(syns))
            added += 1
        sources.append(f"{ds} (+{added})")
    if not names:
        raise VocabularyError("No default vocabulary available; pass --vocabulary.")
    return Vocabulary(names, things, "default: " + ", ".join(sources) + "".join(f" ({n})" for n in notes))


def load_vocabulary(
    vocabulary: str | Sequence[str] | None = None,
    vocabulary_file: str | None = None,
    dataset_vocabulary: str | None = None,
    cfg=None,
    literal: bool = False,
) -> Vocabulary:
    """The active vocabulary from exactly one source (or the default when none is given).

    Args:
        vocabulary: command-line text (``"cat,kitten;dog"``) or a list of class names.
        vocabulary_file: a file in the vocabulary format (``id:name,synonym,...`` per line).
        dataset_vocabulary: a registered dataset name (its class strings verbatim, its thing
            classes and colours).
        cfg: config (for ``DATASETS.VOCABULARY_FILES`` overrides).
        literal: for a model that takes each class string as one prompt (OVSeg): the result is
            a literal :class:`Vocabulary`, and ``vocabulary`` keeps its class strings verbatim
            (:func:`normalize_literal_class_names`; no thing classes inferred).
    """
    given = [x is not None for x in (vocabulary, vocabulary_file, dataset_vocabulary)]
    if sum(given) > 1:
        raise VocabularyError("Give only one of --vocabulary, --vocabulary-file and --dataset-vocabulary.")
    if literal:
        if vocabulary is not None:
            names = (parse_cli_vocabulary(vocabulary, literal=True) if isinstance(vocabulary, str)
                     else normalize_literal_class_names(list(vocabulary)))
            return Vocabulary(names, None, "--vocabulary", literal=True)
        return dataclasses.replace(load_vocabulary(None, vocabulary_file, dataset_vocabulary, cfg), literal=True)
    if vocabulary is not None:
        names = (parse_cli_vocabulary(vocabulary) if isinstance(vocabulary, str)
                 else normalize_class_names(list(vocabulary), source="vocabulary"))
        return Vocabulary(names, infer_thing_classes(names), "--vocabulary")
    if vocabulary_file is not None:
        names = normalize_class_names(read_vocabulary_file(vocabulary_file), source=vocabulary_file)
        return Vocabulary(names, infer_thing_classes(names), vocabulary_file)
    if dataset_vocabulary is not None:
        names, things = dataset_vocabulary_with_things(dataset_vocabulary, cfg)
        colors = dataset_class_colors(dataset_vocabulary)  # the benchmark's own colours
        if colors is not None and len(colors) != len(names):  # an override of another size
            colors = None
        return Vocabulary(list(names), things, f"dataset {dataset_vocabulary}", colors)
    return default_vocabulary()
