"""Registration of every built-in dataset: one table of layouts plus a few loops.

All paths are relative to ``$DETECTRON2_DATASETS`` (default ``./datasets``), in the layouts
described in ``datasets/README.md``. Registering reads nothing from disk; the files are read when
``DatasetCatalog.get(name)`` is called (and, for datasets whose class names or thing/stuff split
come from their own files, on the first read of those metadata fields).

Each dataset has a vocabulary (class names with synonyms, :mod:`frozenseg.data.vocabulary`),
from a file shipped in ``frozenseg/data/vocabularies/`` or from the dataset's own files (LVIS json
categories, Pascal Context 459 ``pc459_classes.txt``, ADE20K-full ``ade20k_847_classes.txt``).
:func:`dataset_vocabulary` returns it, honouring user overrides (``DATASETS.VOCABULARY_FILES``
entries ``"dataset_name:path"`` or :func:`set_vocabulary_file`).

Which classes are "things" comes from the tables below (``THING_IDS``), except for the panoptic
datasets whose split the project could not check against an official file (Mapillary Vistas,
BDD): for them (spec option ``things_from_json``) the ``isthing`` flags of the categories in the
dataset's own panoptic json win when that json exists, and the table is the fallback.
"""

from __future__ import annotations

import colorsys
import json
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .loaders import (
    check_exists,
    load_coco_instances_json,
    load_coco_panoptic_json,
    load_lvis_json,
    load_sem_seg,
)
from .vocabulary import (
    VocabularyError,
    builtin_vocabulary_path,
    parse_vocabulary,
    read_vocabulary_entries,
    read_vocabulary_file,
    validate_vocabulary,
)

__all__ = [
    "DatasetSpec",
    "BUILTIN_DATASETS",
    "datasets_root",
    "register_all_builtin",
    "dataset_vocabulary",
    "set_vocabulary_file",
    "apply_vocabulary_overrides",
    "parse_vocabulary_text",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Category definitions that the vocabulary format does not carry: which ids are "things".
# ---------------------------------------------------------------------------------------------
# ADE20K-150 (0-based reduced label ids): the 100 classes of the ADE20K instance-segmentation
# benchmark (instanceInfo100), in that benchmark's order; the remaining 50 are stuff.
ADE20K_INSTANCE_TO_150 = [
    7, 8, 10, 12, 14, 15, 18, 19, 20, 22, 23, 24, 27, 30, 31, 32, 33, 35, 36, 37, 38, 39, 41, 42,
    43, 44, 45, 47, 49, 50, 53, 55, 56, 57, 58, 62, 64, 65, 66, 67, 69, 70, 71, 72, 73, 74, 75, 76,
    78, 80, 81, 82, 83, 85, 86, 87, 88, 89, 90, 92, 93, 95, 97, 98, 102, 103, 104, 107, 108, 110,
    111, 112, 115, 116, 118, 119, 120, 121, 123, 124, 125, 126, 127, 129, 130, 132, 133, 134, 135,
    136, 137, 138, 139, 142, 143, 144, 146, 147, 148, 149,
]
# Mapillary Vistas v1.2 label indices with instances (37 classes, config.json "instances": true);
# the dataset's panoptic json overrides this table when present (``things_from_json``).
MAPILLARY_THING_IDS = [
    0, 1, 19, 20, 21, 22, 23, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
]
THING_IDS: dict[str, Callable[[int], bool]] = {
    "coco_panoptic.txt": lambda i: i <= 90,
    "coco_stuff_171.txt": lambda i: i <= 90,
    "ade20k_150.txt": lambda i: i in set(ADE20K_INSTANCE_TO_150),
    "cityscapes.txt": lambda i: i >= 24,
    "bdd_panoptic.txt": lambda i: i >= 31,
    "mapillary_vistas.txt": lambda i: i in set(MAPILLARY_THING_IDS),
    "synthetic_shapes.txt": lambda i: i <= 4,
}


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS`` (default ``./datasets``), with ``~`` expanded."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: how to load it and where its files are (relative paths).

    ``kind`` is one of ``sem_seg``, ``panoptic``, ``instances``, ``lvis``. ``vocab`` is a file in
    ``frozenseg/data/vocabularies/`` or ``"dataset:<relative path>"`` for a vocabulary file that
    lives with (or is written from) the dataset, or ``"lvis_json"``. ``things_only`` restricts a
    vocabulary to its thing classes (instance datasets). ``options`` are loader options, plus
    ``remap_by_order`` (the panoptic json's category ids, sorted, map in order onto the vocabulary
    ids, and the metadata's dataset ids are the json's) and ``things_from_json`` (the panoptic json's ``isthing`` flags, when the json exists,
    decide which classes are things; else ``THING_IDS``).
    """

    name: str
    kind: str
    vocab: str
    evaluator_type: str
    prepare: str
    paths: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    ignore_label: int = 255
    things_only: bool = False


def _sem_seg(name: str, vocab: str, prepare: str, image_root: str, sem_seg_root: str, *,
             image_ext: str = "jpg", gt_ext: str = "png", ignore_label: int = 255,
             **options: Any) -> DatasetSpec:
    """A semantic-segmentation dataset (``sem_seg`` kind and evaluator): images and label maps
    with the same file stems in two folders."""
    return DatasetSpec(name, "sem_seg", vocab, "sem_seg", prepare,
                       dict(image_root=image_root, sem_seg_root=sem_seg_root),
                       options=dict(image_ext=image_ext, gt_ext=gt_ext, **options),
                       ignore_label=ignore_label)


def _specs() -> list[DatasetSpec]:
    S: list[DatasetSpec] = []
    prep_coco = "run datasets/prepare_coco_semantic_annos_from_panoptic_annos.py"
    for split in ("train", "val"):
        coco_pan = dict(
            image_root=f"coco/{split}2017",
            panoptic_root=f"coco/panoptic_{split}2017",
            panoptic_json=f"coco/annotations/panoptic_{split}2017.json",
            sem_seg_root=f"coco/panoptic_semseg_{split}2017",
            json_file=f"coco/annotations/instances_{split}2017.json",
        )
        for name in (f"openvocab_coco_2017_{split}_panoptic_with_sem_seg",
                     f"coco_2017_{split}_panoptic_with_sem_seg"):
            S.append(DatasetSpec(name, "panoptic", "coco_panoptic.txt", "coco_panoptic_seg",
                                 prep_coco, coco_pan))
        no_sem = {k: v for k, v in coco_pan.items() if k != "sem_seg_root"}
        for name in (f"openvocab_coco_2017_{split}_panoptic", f"coco_2017_{split}_panoptic"):
            S.append(DatasetSpec(name, "panoptic", "coco_panoptic.txt", "coco_panoptic_seg",
                                 "download and unzip COCO 2017 panoptic annotations into coco/", no_sem))
        for name in (f"openvocab_coco_2017_{split}", f"coco_2017_{split}"):
            S.append(DatasetSpec(
                name, "instances", "coco_panoptic.txt", "coco",
                "download and unzip COCO 2017 images and annotations into coco/",
                dict(image_root=f"coco/{split}2017",
                     json_file=f"coco/annotations/instances_{split}2017.json"),
                things_only=True))
        for name in (f"openvocab_coco_2017_{split}_stuff_sem_seg",
                     f"coco_2017_{split}_stuff_sem_seg"):
            S.append(_sem_seg(name, "coco_stuff_171.txt", "run datasets/prepare_coco_stuff_sem_seg.py",
                              f"coco/{split}2017", f"coco/stuffthingmaps_detectron2/{split}2017"))
        # LVIS v1 (images are the COCO 2017 images)
        S.append(DatasetSpec(
            f"openvocab_lvis_v1_{split}", "lvis", "lvis_json", "lvis",
            "download the LVIS v1 annotation jsons into lvis/",
            dict(image_root="coco", json_file=f"lvis/lvis_v1_{split}.json"),
            things_only=True))

    for split, ade in (("train", "training"), ("val", "validation")):
        root = "ADEChallengeData2016"
        S.append(_sem_seg(
            f"openvocab_ade20k_sem_seg_{split}", "ade20k_150.txt", "run datasets/prepare_ade20k_sem_seg.py",
            f"{root}/images/{ade}", f"{root}/annotations_detectron2/{ade}"))
        S.append(DatasetSpec(
            f"openvocab_ade20k_panoptic_{split}", "panoptic", "ade20k_150.txt",
            "ade20k_panoptic_seg", "run datasets/prepare_ade20k_pan_seg.py",
            dict(image_root=f"{root}/images/{ade}",
                 panoptic_root=f"{root}/ade20k_panoptic_{split}",
                 panoptic_json=f"{root}/ade20k_panoptic_{split}.json",
                 sem_seg_root=f"{root}/annotations_detectron2/{ade}",
                 json_file=f"{root}/ade20k_instance_{split}.json")))
        S.append(DatasetSpec(
            f"openvocab_ade20k_instance_{split}", "instances", "ade20k_150.txt", "coco",
            "run datasets/prepare_ade20k_ins_seg.py",
            dict(image_root=f"{root}/images/{ade}", json_file=f"{root}/ade20k_instance_{split}.json"),
            things_only=True))
        full = "ADE20K_2021_17_01"
        S.append(_sem_seg(
            f"openvocab_ade20k_full_sem_seg_{split}", f"dataset:{full}/ade20k_847_classes.txt",
            "run datasets/prepare_ade20k_full_sem_seg.py",
            f"{full}/images_detectron2/{ade}", f"{full}/annotations_detectron2/{ade}",
            gt_ext="tif", ignore_label=65535))
        ctx = "pascal_ctx_d2"
        S.append(_sem_seg(
            f"openvocab_pascal_ctx59_sem_seg_{split}", "pascal_context_59.txt",
            "run datasets/prepare_pascal_ctx_sem_seg.py",
            f"{ctx}/images/{ade}", f"{ctx}/annotations_ctx59/{ade}"))
        S.append(_sem_seg(
            f"openvocab_pascal_ctx459_sem_seg_{split}", f"dataset:{ctx}/pc459_classes.txt",
            "run datasets/prepare_pascal_ctx_sem_seg.py",
            f"{ctx}/images/{ade}", f"{ctx}/annotations_ctx459/{ade}", gt_ext="tif", ignore_label=65535))
        voc = "pascal_voc_d2"
        for n, vocab in (("20", "pascal_voc_20.txt"), ("21", "pascal_voc_21.txt")):
            S.append(_sem_seg(
                f"openvocab_pascal{n}_sem_seg_{split}", vocab, "run datasets/prepare_pascal_voc_sem_seg.py",
                f"{voc}/images/{ade}", f"{voc}/annotations_pascal{n}/{ade}"))
        cs = "cityscapes"
        S.append(DatasetSpec(
            f"openvocab_cityscapes_fine_panoptic_{split}", "panoptic", "cityscapes.txt",
            "cityscapes_panoptic_seg",
            "run cityscapesScripts createTrainIdLabelImgs and createPanopticImgs",
            dict(image_root=f"{cs}/leftImg8bit/{split}",
                 panoptic_root=f"{cs}/gtFine/cityscapes_panoptic_{split}",
                 panoptic_json=f"{cs}/gtFine/cityscapes_panoptic_{split}.json",
                 sem_seg_root=f"{cs}/gtFine/{split}", gt_dir=f"{cs}/gtFine/{split}"),
            options=dict(image_suffix="_leftImg8bit", sem_seg_suffix="_gtFine_labelTrainIds")))
        S.append(_sem_seg(
            f"openvocab_cityscapes_fine_sem_seg_{split}", "cityscapes.txt",
            "run cityscapesScripts createTrainIdLabelImgs",
            f"{cs}/leftImg8bit/{split}", f"{cs}/gtFine/{split}",
            image_ext="png", image_suffix="_leftImg8bit", gt_suffix="_gtFine_labelTrainIds"))
        mv = f"mapillary_vistas/{ade}"
        S.append(DatasetSpec(
            f"openvocab_mapillary_vistas_panoptic_{split}", "panoptic", "mapillary_vistas.txt",
            "mapillary_vistas_panoptic_seg", "download and unzip Mapillary Vistas v1.2 into mapillary_vistas/",
            dict(image_root=f"{mv}/images", panoptic_root=f"{mv}/panoptic",
                 panoptic_json=f"{mv}/panoptic/panoptic_2018.json", sem_seg_root=f"{mv}/labels"),
            options=dict(remap_by_order=True, things_from_json=True), ignore_label=65))
        S.append(_sem_seg(
            f"openvocab_mapillary_vistas_sem_seg_{split}", "mapillary_vistas.txt",
            "download and unzip Mapillary Vistas v1.2 into mapillary_vistas/",
            f"{mv}/images", f"{mv}/labels", ignore_label=65))
        bdd = "bdd100k"
        S.append(_sem_seg(
            f"bdd10k_{split}_sem_seg", "bdd_sem.txt",
            "download and unzip the BDD100K 10k images and sem_seg labels into bdd100k/",
            f"{bdd}/images/10k/{split}", f"{bdd}/labels/sem_seg/masks/{split}"))
        S.append(DatasetSpec(
            f"bdd10k_40_panoptic_{split}", "panoptic", "bdd_panoptic.txt", "coco_panoptic_seg",
            "run datasets/prepare_bdd_panoptic.py",
            dict(image_root=f"{bdd}/images/10k/{split}",
                 panoptic_root=f"{bdd}/labels/pan_seg/panoptic_{split}",
                 panoptic_json=f"{bdd}/labels/pan_seg/panoptic_{split}.json"),
            options=dict(things_from_json=True)))
        shp = f"synthetic_shapes/{split}"
        S.append(DatasetSpec(
            f"synthetic_shapes_{split}_panoptic", "panoptic", "synthetic_shapes.txt",
            "coco_panoptic_seg", "run tools/make_synthetic_dataset.py shapes",
            dict(image_root=f"{shp}/images", panoptic_root=f"{shp}/panoptic",
                 panoptic_json=f"{shp}/panoptic.json", sem_seg_root=f"{shp}/panoptic_semseg",
                 json_file=f"{shp}/instances.json")))
        S.append(_sem_seg(
            f"synthetic_shapes_{split}_sem_seg", "synthetic_shapes.txt",
            "run tools/make_synthetic_dataset.py shapes",
            f"{shp}/images", f"{shp}/panoptic_semseg", image_ext="png"))
    return S


BUILTIN_DATASETS: list[DatasetSpec] = _specs()
_SPECS: dict[str, DatasetSpec] = {s.name: s for s in BUILTIN_DATASETS}
_REGISTERED_ROOT: dict[str, str] = {}

# ---------------------------------------------------------------------------------------------
# Vocabulary and metadata
# ---------------------------------------------------------------------------------------------


def _vocab_entries(spec: DatasetSpec, root: str) -> tuple[list[tuple[int, list[str]]], str]:
    """The dataset's own (built-in) vocabulary entries and where they came from."""
    if spec.vocab == "lvis_json":
        path = os.path.join(root, spec.paths["json_file"])
        check_exists(path, spec.name, spec.prepare)
        with open(path, encoding="utf-8") as f:
            cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
        entries = []
        for c in cats:
            names = [c["name"]] + list(c.get("synonyms", []))
            clean: list[str] = []
            for n in names:  # LVIS names use underscores and may carry "(sense)" suffixes
                n = n.replace("_", " ").replace(",", " ").strip()
                if n and n not in clean:
                    clean.append(n)
            entries.append((int(c["id"]), clean))
        return entries, path
    if spec.vocab.startswith("dataset:"):
        path = os.path.join(root, spec.vocab[len("dataset:"):])
        check_exists(path, spec.name, spec.prepare)
        return read_vocabulary_entries(path), path
    path = builtin_vocabulary_path(spec.vocab)
    entries = read_vocabulary_entries(path)
    if spec.things_only:
        is_thing = THING_IDS[spec.vocab]
        entries = [e for e in entries if is_thing(e[0])]
    return entries, path


def _colors(n: int) -> list[list[int]]:
    """``n`` distinct deterministic RGB colours (for visualisation)."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65 + 0.35 * ((i // 7) % 2), 0.95 - 0.3 * ((i // 3) % 2))
        out.append([int(r * 255), int(g * 255), int(b * 255)])
    return out


def _class_metadata(spec: DatasetSpec, entries: list[tuple[int, list[str]]],
                    is_thing: Callable[[int], bool]) -> dict[str, Any]:
    """Class names, id mappings and colours of ``entries``; ``is_thing(id)`` splits a panoptic
    dataset's classes."""
    ids = [i for i, _ in entries]
    names = [n[0] for _, n in entries]
    if spec.kind in ("instances", "lvis"):
        return dict(
            thing_classes=names,
            thing_dataset_id_to_contiguous_id={i: k for k, i in enumerate(ids)},
            thing_colors=_colors(len(names)),
        )
    meta: dict[str, Any] = dict(
        stuff_classes=names,
        stuff_dataset_id_to_contiguous_id={i: k for k, i in enumerate(ids)},
        stuff_colors=_colors(len(names)),
    )
    if spec.kind == "panoptic":
        meta["thing_classes"] = [n for i, n in zip(ids, names) if is_thing(i)]
        meta["thing_dataset_id_to_contiguous_id"] = {
            i: k for k, i in enumerate(ids) if is_thing(i)
        }
        meta["thing_colors"] = [c for i, c in zip(ids, meta["stuff_colors"]) if is_thing(i)]
        # Mask2Former convention: stuff_* cover every class (things included)
    return meta


def _table_is_thing(spec: DatasetSpec) -> Callable[[int], bool]:
    """The built-in thing/stuff split of the dataset's vocabulary (no things when unknown)."""
    return THING_IDS.get(spec.vocab, lambda i: False)


def _normalise_name(name: str) -> str:
    """A class name for comparison: lower case, ``-``/``_`` as spaces, no parentheses, single
    spaces (``"Traffic Sign (Back)"`` -> ``"traffic sign back"``)."""
    for ch in "-_()":
        name = name.replace(ch, " ")
    return " ".join(name.lower().split())


def _read_json_categories(spec: DatasetSpec, json_file: str) -> list[dict[str, Any]]:
    """The ``categories`` of a panoptic json (:class:`DatasetNotFoundError` when it is missing)."""
    check_exists(json_file, spec.name, spec.prepare)
    with open(json_file, encoding="utf-8") as f:
        return list(json.load(f)["categories"])


def _json_category_map(spec: DatasetSpec, categories: list[dict[str, Any]], vocab_ids: list[int],
                       json_file: str) -> dict[int, int]:
    """Json category id -> vocabulary id, as the loader maps them.

    ``vocab_ids`` are the vocabulary's ids in contiguous order. With the ``remap_by_order``
    option (Mapillary) the json's ids, sorted, map in order onto ``vocab_ids`` (json ids 1..65 ->
    0..64; the counts must agree, else ``ValueError``); otherwise a category keeps its id and
    json categories whose id is not a vocabulary id are left out.
    """
    if spec.options.get("remap_by_order"):
        cats = sorted(categories, key=lambda c: int(c["id"]))
        if len(cats) != len(vocab_ids):
            raise ValueError(
                f"{json_file} has {len(cats)} categories, dataset {spec.name!r} expects "
                f"{len(vocab_ids)}."
            )
        return {int(c["id"]): i for c, i in zip(cats, vocab_ids)}
    known = set(vocab_ids)
    return {int(c["id"]): int(c["id"]) for c in categories if int(c["id"]) in known}


_MAX_LISTED = 5  # mismatched category names shown in the warning


def _check_category_names(spec: DatasetSpec, json_file: str, categories: list[dict[str, Any]],
                          to_vocab: dict[int, int], synonyms: dict[int, list[str]]) -> None:
    """Log one warning listing the json categories whose name matches none of the synonyms of
    the vocabulary class they are mapped to (the vocabulary's order may be wrong). Never raises:
    the synonyms are an editorial choice."""
    mismatches: list[str] = []
    for c in sorted(categories, key=lambda c: int(c["id"])):
        vocab_id = to_vocab.get(int(c["id"]))
        if vocab_id is None:
            continue
        name = str(c.get("name", ""))
        if _normalise_name(name) not in {_normalise_name(n) for n in synonyms[vocab_id]}:
            mismatches.append(f"{c['id']} {name!r} -> {vocab_id} {synonyms[vocab_id][0]!r}")
    if mismatches:
        more = len(mismatches) - _MAX_LISTED
        logger.warning(
            "%s: %d categories of %s match none of the synonyms of the vocabulary class they are "
            "mapped to (is the vocabulary order right?): %s%s", spec.name, len(mismatches),
            json_file, ", ".join(mismatches[:_MAX_LISTED]), f" and {more} more" if more > 0 else "",
        )


def _apply_json_categories(
    spec: DatasetSpec, root: str, entries: list[tuple[int, list[str]]]
) -> tuple[list[tuple[int, list[str]]], Callable[[int], bool]]:
    """Vocabulary entries and thing/stuff split as the dataset's panoptic json defines them.

    The ``isthing`` flags of the json's categories decide which classes are things (the built-in
    table stays for a category without the flag, or without a json category when mapping by id).
    With ``remap_by_order`` (Mapillary) the entries are re-keyed by the json's category ids, so
    that the metadata's dataset ids are those of the ground truth (what the panoptic evaluator
    writes into its predictions). The json's category names are checked against the vocabulary,
    and the classes whose flag differs from the table are logged. Without the json (e.g. the
    demo without the dataset) the entries and the table are returned unchanged.
    """
    table = _table_is_thing(spec)
    json_file = os.path.join(root, spec.paths["panoptic_json"])
    if not os.path.isfile(json_file):
        logger.debug("%s: no %s; thing classes from the built-in table.", spec.name, json_file)
        return entries, table
    categories = _read_json_categories(spec, json_file)
    to_vocab = _json_category_map(spec, categories, [i for i, _ in entries], json_file)
    synonyms = dict(entries)
    _check_category_names(spec, json_file, categories, to_vocab, synonyms)
    flags = {i: table(i) for i, _ in entries}
    for c in categories:
        if "isthing" in c and int(c["id"]) in to_vocab:
            flags[to_vocab[int(c["id"])]] = bool(c["isthing"])
    changed = [f"{synonyms[i][0]!r} ({'thing' if f else 'stuff'})"
               for i, f in flags.items() if f != table(i)]
    if changed:
        logger.info("%s: thing/stuff flags from %s, not the built-in table, for: %s",
                    spec.name, json_file, ", ".join(changed))
    if spec.options.get("remap_by_order"):
        to_json = {v: j for j, v in to_vocab.items()}
        entries = [(to_json[i], names) for i, names in entries]
        flags = {to_json[i]: f for i, f in flags.items()}
    return entries, flags.__getitem__


def _set_class_metadata(spec: DatasetSpec, root: str, meta: Metadata) -> None:
    """Class names, id mappings and colours from the dataset's vocabulary (at registration, or
    on the first read for datasets whose vocabulary or thing/stuff split come from their own
    files)."""
    entries, path = _vocab_entries(spec, root)
    is_thing = _table_is_thing(spec)
    if spec.options.get("things_from_json"):
        entries, is_thing = _apply_json_categories(spec, root, entries)
    meta.set(overwrite=True, **_class_metadata(spec, entries, is_thing),
             builtin_vocabulary_file=path)


def _register_one(spec: DatasetSpec, root: str) -> None:
    paths = {k: os.path.join(root, v) for k, v in spec.paths.items()}
    meta = MetadataCatalog.get(spec.name)
    meta.set(
        overwrite=True,
        evaluator_type=spec.evaluator_type,
        ignore_label=spec.ignore_label,
        label_divisor=1000,
        prepare_script=spec.prepare,
        dataset_kind=spec.kind,
        **paths,
    )
    if (spec.vocab == "lvis_json" or spec.vocab.startswith("dataset:")
            or spec.options.get("things_from_json")):
        meta.set_lazy(partial(_set_class_metadata, spec, root))
    else:
        _set_class_metadata(spec, root, meta)
    DatasetCatalog.register(spec.name, partial(_load, spec, paths))
    _REGISTERED_ROOT[spec.name] = root


def _load(spec: DatasetSpec, paths: dict[str, str]) -> list[dict]:
    meta = MetadataCatalog.get(spec.name)
    o = spec.options
    if spec.kind == "sem_seg":
        return load_sem_seg(
            paths["sem_seg_root"], paths["image_root"], gt_ext=o.get("gt_ext", "png"),
            image_ext=o.get("image_ext", "jpg"), dataset_name=spec.name, prepare=spec.prepare,
            gt_suffix=o.get("gt_suffix", ""), image_suffix=o.get("image_suffix", ""),
        )
    if spec.kind == "panoptic":
        id_remap = (partial(_order_remap, spec, paths["panoptic_json"], meta)
                    if o.get("remap_by_order") else None)
        sem_key = None
        if o.get("sem_seg_suffix"):
            suffix = o["sem_seg_suffix"]
            sem_key = lambda ann: f"{ann['image_id']}{suffix}"  # noqa: E731
        return load_coco_panoptic_json(
            paths["panoptic_json"], paths["image_root"], paths["panoptic_root"], meta,
            sem_seg_dir=paths.get("sem_seg_root"), dataset_name=spec.name, prepare=spec.prepare,
            sem_seg_key=sem_key, image_suffix=o.get("image_suffix", ""), id_remap=id_remap,
        )
    if spec.kind == "instances":
        return load_coco_instances_json(
            paths["json_file"], paths["image_root"], meta, spec.name, spec.prepare
        )
    if spec.kind == "lvis":
        return load_lvis_json(paths["json_file"], paths["image_root"], meta, spec.name, spec.prepare)
    raise ValueError(f"Unknown dataset kind {spec.kind!r}")


def _order_remap(spec: DatasetSpec, json_file: str, meta: Metadata,
                 categories: list[dict[str, Any]]) -> dict[int, int]:
    """Map the ``categories`` of ``json_file`` (their ids, sorted) onto the metadata's dataset
    ids, in order (Mapillary): the identity when the metadata was keyed by the json's ids, a
    shift when it was built from the vocabulary alone (the json did not exist then). The loader
    passes the categories of the json it has read."""
    stuff_map = meta.stuff_dataset_id_to_contiguous_id
    ours = sorted(stuff_map, key=stuff_map.get)
    return _json_category_map(spec, list(categories), ours, json_file)


def register_all_builtin(root: str | None = None) -> None:
    """(Re-)register every built-in dataset with files under ``root`` (default
    ``$DETECTRON2_DATASETS``). Re-registering replaces earlier entries (tests use this to point
    the catalog at a temporary folder)."""
    root = datasets_root() if root is None else os.path.expanduser(root)
    for spec in BUILTIN_DATASETS:
        if spec.name in DatasetCatalog:
            DatasetCatalog.remove(spec.name)
        if spec.name in MetadataCatalog.data:
            MetadataCatalog.remove(spec.name)
        _register_one(spec, root)
    logger.debug("Registered %d built-in datasets under %s", len(BUILTIN_DATASETS), root)


def _num_classes(dataset_name: str) -> int:
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("dataset_kind") in ("instances", "lvis"):
        return len(meta.thing_classes)
    return len(meta.stuff_classes)


def set_vocabulary_file(dataset_name: str, path: str) -> list[str]:
    """Use the vocabulary file ``path`` for ``dataset_name`` (validated now); returns it."""
    vocab = read_vocabulary_file(path)
    validate_vocabulary(vocab, _num_classes(dataset_name), dataset_name, source=path)
    MetadataCatalog.get(dataset_name).set(overwrite=True, vocabulary_file=path)
    logger.info("Dataset %s uses the vocabulary file %s", dataset_name, path)
    return vocab


def apply_vocabulary_overrides(cfg) -> None:
    """Apply ``cfg.DATASETS.VOCABULARY_FILES`` (``"dataset_name:path"`` strings)."""
    items = cfg.DATASETS.VOCABULARY_FILES if cfg is not None else ()
    for item in items:
        if ":" not in item:
            raise VocabularyError(
                f"DATASETS.VOCABULARY_FILES entry {item!r} must be 'dataset_name:path'."
            )
        name, path = item.split(":", 1)
        set_vocabulary_file(name.strip(), path.strip())


def dataset_vocabulary(dataset_name: str, cfg=None) -> list[str]:
    """Class names with synonyms (``"name,syn,..."``, one per contiguous class) of a dataset.

    Order: the dataset's contiguous class ids (for panoptic and semantic datasets all classes,
    for instance datasets the thing classes). A user vocabulary file set through ``cfg``
    (``DATASETS.VOCABULARY_FILES``) or :func:`set_vocabulary_file` replaces the built-in one.
    """
    if cfg is not None:
        for item in cfg.DATASETS.VOCABULARY_FILES:
            name, _, path = item.partition(":")
            if name.strip() == dataset_name:
                return set_vocabulary_file(dataset_name, path.strip())
    meta = MetadataCatalog.get(dataset_name)
    override = meta.get("vocabulary_file")
    if override:
        vocab = read_vocabulary_file(override)
        validate_vocabulary(vocab, _num_classes(dataset_name), dataset_name, source=override)
        return vocab
    spec = _SPECS.get(dataset_name)
    if spec is not None:
        entries, _ = _vocab_entries(spec, _REGISTERED_ROOT.get(dataset_name, datasets_root()))
        return [",".join(n) for _, n in entries]
    # a dataset registered by the user: use its metadata
    if meta.get("builtin_vocabulary_file"):
        return read_vocabulary_file(meta.builtin_vocabulary_file)
    classes = meta.get("stuff_classes") or meta.get("thing_classes")
    if not classes:
        raise VocabularyError(
            f"Dataset {dataset_name!r} has no vocabulary: set a vocabulary file or stuff_classes."
        )
    return list(classes)


def training_vocabulary(cfg) -> list[str] | None:
    """Class names of the training vocabulary: ``MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE`` when
    set, else the vocabulary of ``DATASETS.TRAIN[0]``, else None (every test class is unseen)."""
    from ..utils.paths import resolve_path

    path = cfg.MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE
    if path:
        return read_vocabulary_file(str(resolve_path(path)))
    if len(cfg.DATASETS.TRAIN) > 0:
        return dataset_vocabulary(cfg.DATASETS.TRAIN[0], cfg)
    return None


def parse_vocabulary_text(text: str) -> list[str]:
    """Vocabulary entries from text in the file format (handy for tests and demos)."""
    return [",".join(n) for _, n in parse_vocabulary(text)]


register_all_builtin()
