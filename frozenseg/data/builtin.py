"""Registration of every built-in dataset: one table of layouts plus a few loops.

All paths are relative to ``$DETECTRON2_DATASETS`` (default ``./datasets``), in the layouts
described in ``datasets/README.md``. Registering reads nothing from disk; the files are read when
``DatasetCatalog.get(name)`` is called.

Class metadata (class strings with synonyms, id maps, thing/stuff flags, colours, ignore label)
of every benchmark is the released system's own (:mod:`frozenseg.data.released`): a dataset name
the release registers gets its metadata verbatim; the project's other names (Detectron2's
``coco_2017_*`` aliases, the semantic splits of Cityscapes and Mapillary, the BDD train splits)
get the metadata of the released dataset with the same classes. Only the synthetic shapes set has
a vocabulary file of its own. :func:`dataset_vocabulary` returns a dataset's class strings,
honouring user overrides (``DATASETS.VOCABULARY_FILES`` entries ``"dataset_name:path"`` or
:func:`set_vocabulary_file`).
"""

from __future__ import annotations

import colorsys
import difflib
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .loaders import (
    load_coco_instances_json,
    load_coco_panoptic_json,
    load_lvis_json,
    load_sem_seg,
)
from .ovseg_classes import ovseg_classes
from .released import released_classes, released_metadata
from .vocabulary import (
    VocabularyError,
    builtin_vocabulary_path,
    read_vocabulary_entries,
    read_vocabulary_file,
    split_synonyms,
    validate_vocabulary,
    write_vocabulary_file,
)

__all__ = [
    "thing_class_indices",
    "DatasetSpec",
    "BUILTIN_DATASETS",
    "datasets_root",
    "register_all_builtin",
    "dataset_vocabulary",
    "set_vocabulary_file",
    "apply_vocabulary_overrides",
    "vocabulary_file_overrides",
    "check_vocabulary_files",
    "check_dataset_config",
    "export_dataset_vocabulary",
    "dataset_class_colors",
]

logger = logging.getLogger(__name__)

def datasets_root() -> str:
    """``$DETECTRON2_DATASETS`` (default ``./datasets``), with ``~`` expanded."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: how to load it and where its files are (relative paths).

    ``kind`` is one of ``sem_seg``, ``panoptic``, ``instances``, ``lvis``. ``vocab`` names where
    the class metadata comes from: a dataset name the release registers (its metadata, see the
    module docstring), a ``.txt`` vocabulary file in ``frozenseg/data/vocabularies/`` (then
    ``options["thing_ids"]`` lists the dataset ids of its things), or ``ovseg:<key>``, OVSeg's
    class strings (:mod:`frozenseg.data.ovseg_classes`; ``options["released_twin"]`` names the
    released dataset with the same files). ``options`` are loader
    options, plus ``prepared_vocabulary``: the vocabulary file a prepare script writes next to
    the label maps it made (they must agree with the vocabulary in use; see :func:`_load`).
    """

    name: str
    kind: str
    vocab: str
    evaluator_type: str
    prepare: str
    paths: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def _sem_seg(name: str, vocab: str, prepare: str, image_root: str, sem_seg_root: str, *,
             image_ext: str = "jpg", gt_ext: str = "png", **options: Any) -> DatasetSpec:
    """A semantic-segmentation dataset (``sem_seg`` kind and evaluator): images and label maps
    with the same file stems in two folders."""
    return DatasetSpec(name, "sem_seg", vocab, "sem_seg", prepare,
                       dict(image_root=image_root, sem_seg_root=sem_seg_root),
                       options=dict(image_ext=image_ext, gt_ext=gt_ext, **options))


def _specs() -> list[DatasetSpec]:
    S: list[DatasetSpec] = []
    prep_coco = "run datasets/prepare_coco_semantic_annos_from_panoptic_annos.py"
    prep_stuff = "run datasets/prepare_coco_stuff_sem_seg.py"
    for split in ("train", "val"):
        coco_pan = dict(
            image_root=f"coco/{split}2017",
            panoptic_root=f"coco/panoptic_{split}2017",
            panoptic_json=f"coco/annotations/panoptic_{split}2017.json",
            sem_seg_root=f"coco/panoptic_semseg_{split}2017",
            json_file=f"coco/annotations/instances_{split}2017.json",
        )
        released = f"openvocab_coco_2017_{split}_panoptic_with_sem_seg"
        for name in (released, f"coco_2017_{split}_panoptic_with_sem_seg"):
            S.append(DatasetSpec(name, "panoptic", released, "coco_panoptic_seg", prep_coco, coco_pan))
        no_sem = {k: v for k, v in coco_pan.items() if k != "sem_seg_root"}
        for name in (f"openvocab_coco_2017_{split}_panoptic", f"coco_2017_{split}_panoptic"):
            S.append(DatasetSpec(name, "panoptic", released, "coco_panoptic_seg",
                                 "download and unzip COCO 2017 panoptic annotations into coco/", no_sem))
        for name in (f"openvocab_coco_2017_{split}", f"coco_2017_{split}"):
            S.append(DatasetSpec(
                name, "instances", f"openvocab_coco_2017_{split}", "coco",
                "download and unzip COCO 2017 images and annotations into coco/",
                dict(image_root=f"coco/{split}2017",
                     json_file=f"coco/annotations/instances_{split}2017.json")))
        # the release names its COCO-Stuff val2017 split "test"
        stuff = f"openvocab_coco_2017_{'train' if split == 'train' else 'test'}_stuff_sem_seg"
        for name in dict.fromkeys((stuff, f"openvocab_coco_2017_{split}_stuff_sem_seg",
                                   f"coco_2017_{split}_stuff_sem_seg")):
            S.append(_sem_seg(name, stuff, prep_stuff,
                              f"coco/{split}2017", f"coco/stuffthingmaps_detectron2/{split}2017"))
        # LVIS v1 (images are the COCO 2017 images)
        S.append(DatasetSpec(
            f"openvocab_lvis_v1_{split}", "lvis", f"openvocab_lvis_v1_{split}", "lvis",
            "download the LVIS v1 annotation jsons into lvis/",
            dict(image_root="coco", json_file=f"lvis/lvis_v1_{split}.json")))
    for part in ("dev", "challenge"):  # image lists without annotations (inference only)
        S.append(DatasetSpec(
            f"openvocab_lvis_v1_test_{part}", "lvis", f"openvocab_lvis_v1_test_{part}", "lvis",
            "download the LVIS v1 test image-info jsons into lvis/ and COCO test2017 into coco/",
            dict(image_root="coco/test2017", json_file=f"lvis/lvis_v1_image_info_test_{part}.json")))

    for split, ade in (("train", "training"), ("val", "validation")):
        root = "ADEChallengeData2016"
        S.append(_sem_seg(
            f"openvocab_ade20k_sem_seg_{split}", f"openvocab_ade20k_sem_seg_{split}",
            "run datasets/prepare_ade20k_sem_seg.py",
            f"{root}/images/{ade}", f"{root}/annotations_detectron2/{ade}"))
        S.append(DatasetSpec(
            f"openvocab_ade20k_panoptic_{split}", "panoptic", f"openvocab_ade20k_panoptic_{split}",
            "ade20k_panoptic_seg", "run datasets/prepare_ade20k_pan_seg.py",
            dict(image_root=f"{root}/images/{ade}",
                 panoptic_root=f"{root}/ade20k_panoptic_{split}",
                 panoptic_json=f"{root}/ade20k_panoptic_{split}.json",
                 sem_seg_root=f"{root}/annotations_detectron2/{ade}",
                 json_file=f"{root}/ade20k_instance_{split}.json")))
        S.append(DatasetSpec(
            f"openvocab_ade20k_instance_{split}", "instances", f"openvocab_ade20k_instance_{split}",
            "coco", "run datasets/prepare_ade20k_ins_seg.py",
            dict(image_root=f"{root}/images/{ade}", json_file=f"{root}/ade20k_instance_{split}.json")))
        full = "ADE20K_2021_17_01"
        S.append(_sem_seg(
            f"openvocab_ade20k_full_sem_seg_{split}", f"openvocab_ade20k_full_sem_seg_{split}",
            "run datasets/prepare_ade20k_full_sem_seg.py",
            f"{full}/images_detectron2/{ade}", f"{full}/annotations_detectron2/{ade}",
            gt_ext="tif", prepared_vocabulary=f"{full}/ade20k_847_classes.txt"))
        ctx = "pascal_ctx_d2"
        for n, gt_ext in (("59", "png"), ("459", "tif")):
            S.append(_sem_seg(
                f"openvocab_pascal_ctx{n}_sem_seg_{split}", f"openvocab_pascal_ctx{n}_sem_seg_{split}",
                "run datasets/prepare_pascal_ctx_sem_seg.py",
                f"{ctx}/images/{ade}", f"{ctx}/annotations_ctx{n}/{ade}", gt_ext=gt_ext))
        voc = "pascal_voc_d2"
        for n in ("20", "21"):
            S.append(_sem_seg(
                f"openvocab_pascal{n}_sem_seg_{split}", f"openvocab_pascal{n}_sem_seg_{split}",
                "run datasets/prepare_pascal_voc_sem_seg.py",
                f"{voc}/images/{ade}", f"{voc}/annotations_pascal{n}/{ade}"))
        cs = "cityscapes"
        cs_pan = f"openvocab_cityscapes_fine_panoptic_{split}"
        S.append(DatasetSpec(
            cs_pan, "panoptic", cs_pan, "cityscapes_panoptic_seg",
            "run cityscapesScripts createTrainIdLabelImgs and createPanopticImgs",
            dict(image_root=f"{cs}/leftImg8bit/{split}",
                 panoptic_root=f"{cs}/gtFine/cityscapes_panoptic_{split}",
                 panoptic_json=f"{cs}/gtFine/cityscapes_panoptic_{split}.json",
                 sem_seg_root=f"{cs}/gtFine/{split}", gt_dir=f"{cs}/gtFine/{split}"),
            options=dict(image_suffix="_leftImg8bit", sem_seg_suffix="_gtFine_labelTrainIds")))
        S.append(_sem_seg(
            f"openvocab_cityscapes_fine_sem_seg_{split}", cs_pan,
            "run cityscapesScripts createTrainIdLabelImgs",
            f"{cs}/leftImg8bit/{split}", f"{cs}/gtFine/{split}",
            image_ext="png", image_suffix="_leftImg8bit", gt_suffix="_gtFine_labelTrainIds"))
        mv = f"mapillary_vistas/{ade}"
        mv_pan = f"openvocab_mapillary_vistas_panoptic_{split}"
        mv_prepare = "download and unzip Mapillary Vistas v1.2 into mapillary_vistas/"
        S.append(DatasetSpec(
            mv_pan, "panoptic", mv_pan, "mapillary_vistas_panoptic_seg", mv_prepare,
            dict(image_root=f"{mv}/images", panoptic_root=f"{mv}/panoptic",
                 panoptic_json=f"{mv}/panoptic/panoptic_2018.json", sem_seg_root=f"{mv}/labels")))
        S.append(_sem_seg(f"openvocab_mapillary_vistas_sem_seg_{split}", mv_pan, mv_prepare,
                          f"{mv}/images", f"{mv}/labels"))
        bdd = "bdd100k"
        S.append(_sem_seg(
            f"bdd10k_{split}_sem_seg", "bdd10k_val_sem_seg",
            "download and unzip the BDD100K 10k images and sem_seg labels into bdd100k/",
            f"{bdd}/images/10k/{split}", f"{bdd}/labels/sem_seg/masks/{split}"))
        S.append(DatasetSpec(
            f"bdd10k_40_panoptic_{split}", "panoptic", "bdd10k_40_panoptic_val", "coco_panoptic_seg",
            "run datasets/prepare_bdd_panoptic.py",
            dict(image_root=f"{bdd}/images/10k/{split}",
                 panoptic_root=f"{bdd}/labels/pan_seg/panoptic_{split}",
                 panoptic_json=f"{bdd}/labels/pan_seg/panoptic_{split}.json")))
        shp = f"synthetic_shapes/{split}"
        shapes = dict(thing_ids=(1, 2, 3, 4))
        S.append(DatasetSpec(
            f"synthetic_shapes_{split}_panoptic", "panoptic", "synthetic_shapes.txt",
            "coco_panoptic_seg", "run tools/make_synthetic_dataset.py shapes",
            dict(image_root=f"{shp}/images", panoptic_root=f"{shp}/panoptic",
                 panoptic_json=f"{shp}/panoptic.json", sem_seg_root=f"{shp}/panoptic_semseg",
                 json_file=f"{shp}/instances.json"), options=shapes))
        S.append(_sem_seg(
            f"synthetic_shapes_{split}_sem_seg", "synthetic_shapes.txt",
            "run tools/make_synthetic_dataset.py shapes",
            f"{shp}/images", f"{shp}/panoptic_semseg", image_ext="png", **shapes))
    # OVSeg's benchmark names (docs/models/ovseg.md §6): the files of the openvocab_* twin, OVSeg's own class
    # strings (vocab "ovseg:<key>", frozenseg.data.ovseg_classes), the twin's ignore label
    twins = {s.name: s for s in S}
    for name, key, twin in OVSEG_BENCHMARKS:
        t = twins[twin]
        loader = {k: v for k, v in t.options.items() if k != "prepared_vocabulary"}
        S.append(DatasetSpec(name, "sem_seg", f"ovseg:{key}", "sem_seg", t.prepare, dict(t.paths),
                             options=dict(loader, released_twin=twin)))
    return S


#: (OVSeg's dataset name, its class list in frozenseg.data.ovseg_classes, the openvocab_* dataset
#: with the same images and label maps)
OVSEG_BENCHMARKS = (
    ("ade20k_sem_seg_val", "ade20k_sem_seg", "openvocab_ade20k_sem_seg_val"),
    ("ade20k_full_sem_seg_val", "ade20k_full_sem_seg", "openvocab_ade20k_full_sem_seg_val"),
    ("pascal_context_59_sem_seg_val", "pascal_context_59_sem_seg", "openvocab_pascal_ctx59_sem_seg_val"),
    ("pascal_context_459_sem_seg_val", "pascal_context_459_sem_seg", "openvocab_pascal_ctx459_sem_seg_val"),
    ("pascalvoc20_sem_seg_val", "pascalvoc20_sem_seg", "openvocab_pascal20_sem_seg_val"),
    # OVSeg's training set; the release calls it coco_2017_train_stuff_sem_seg, a name this project
    # already gives to the same files with FrozenSeg's class strings
    ("ovseg_coco_2017_train_stuff_sem_seg", "coco_2017_stuff_sem_seg", "openvocab_coco_2017_train_stuff_sem_seg"),
)


BUILTIN_DATASETS: list[DatasetSpec] = _specs()
_SPECS: dict[str, DatasetSpec] = {s.name: s for s in BUILTIN_DATASETS}
_REGISTERED_ROOT: dict[str, str] = {}

# ---------------------------------------------------------------------------------------------
# Class metadata
# ---------------------------------------------------------------------------------------------
_CLASS_KEYS = ("stuff_classes", "thing_classes", "stuff_dataset_id_to_contiguous_id",
               "thing_dataset_id_to_contiguous_id", "stuff_colors", "thing_colors")


def _colors(n: int) -> list[list[int]]:
    """``n`` distinct deterministic RGB colours (for datasets whose release gives none)."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65 + 0.35 * ((i // 7) % 2), 0.95 - 0.3 * ((i // 3) % 2))
        out.append([int(r * 255), int(g * 255), int(b * 255)])
    return out


def _released_class_metadata(spec: DatasetSpec) -> dict[str, Any]:
    """The class metadata of a dataset whose vocabulary is a released dataset's.

    Verbatim, except: a semantic dataset made of a released panoptic benchmark's label maps
    (Cityscapes, Mapillary) has contiguous ids as dataset ids (its label maps hold them); LVIS
    gets ``thing_dataset_id_to_contiguous_id`` (``id - 1``, what Detectron2's loader applies and
    the release leaves implicit); classes without released colours get generated ones.
    """
    release = released_metadata(spec.vocab)
    meta = {k: release[k] for k in _CLASS_KEYS if k in release}
    meta.update(ignore_label=release.get("ignore_label", 255),
                label_divisor=release.get("label_divisor", 1000))
    if spec.kind == "sem_seg" and "thing_classes" in release:
        classes = released_classes(spec.vocab)
        meta = dict(stuff_classes=meta["stuff_classes"], stuff_colors=meta["stuff_colors"],
                    thing_dataset_id_to_contiguous_id={k: k for k, c in enumerate(classes) if c.isthing},
                    ignore_label=meta["ignore_label"], label_divisor=meta["label_divisor"])
    if spec.kind == "lvis":
        meta["thing_dataset_id_to_contiguous_id"] = {c.dataset_id: k for k, c in
                                                     enumerate(released_classes(spec.vocab))}
    key = "thing" if spec.kind in ("instances", "lvis") else "stuff"
    meta.setdefault(f"{key}_colors", _colors(len(meta[f"{key}_classes"])))
    meta["vocabulary_source"] = f"released metadata of {spec.vocab}"
    return meta


def _file_class_metadata(spec: DatasetSpec) -> dict[str, Any]:
    """Class metadata from a shipped vocabulary file (Mask2Former convention: ``stuff_*`` cover
    every class, ``thing_*`` the classes whose id is in ``options["thing_ids"]``)."""
    path = builtin_vocabulary_path(spec.vocab)
    entries = read_vocabulary_entries(path)
    things = set(spec.options.get("thing_ids", ()))
    names = [",".join(n) for _, n in entries]
    colors = _colors(len(entries))
    meta: dict[str, Any] = dict(
        stuff_classes=names,
        stuff_dataset_id_to_contiguous_id={i: k for k, (i, _) in enumerate(entries)},
        stuff_colors=colors, ignore_label=255, label_divisor=1000, vocabulary_source=path,
    )
    if spec.kind == "panoptic":
        meta.update(
            thing_classes=[n for (i, _), n in zip(entries, names) if i in things],
            thing_dataset_id_to_contiguous_id={i: k for k, (i, _) in enumerate(entries) if i in things},
            thing_colors=[c for (i, _), c in zip(entries, colors) if i in things],
        )
    return meta


def _ovseg_class_metadata(spec: DatasetSpec, root: str) -> dict[str, Any]:
    """Class metadata of an OVSeg benchmark name: OVSeg's class strings (when available under
    ``root`` or shipped; else ``vocabulary_error`` says how to get them, raised by
    :func:`dataset_vocabulary`), the twin dataset's ignore label and colours."""
    twin = released_metadata(spec.options["released_twin"])
    key = spec.vocab.split(":", 1)[1]
    meta: dict[str, Any] = dict(ignore_label=twin.get("ignore_label", 255),
                                vocabulary_source=f"OVSeg's class strings ({key})")
    try:
        classes = ovseg_classes(key, root)
    except VocabularyError as e:
        meta["vocabulary_error"] = str(e)
        return meta
    colors = twin.get("stuff_colors")
    meta.update(stuff_classes=classes,
                stuff_colors=colors if colors and len(colors) == len(classes) else _colors(len(classes)))
    return meta


def _class_metadata(spec: DatasetSpec, root: str) -> dict[str, Any]:
    if spec.vocab.endswith(".txt"):
        return _file_class_metadata(spec)
    if spec.vocab.startswith("ovseg:"):
        return _ovseg_class_metadata(spec, root)
    return _released_class_metadata(spec)


def _register_one(spec: DatasetSpec, root: str) -> None:
    paths = {k: os.path.join(root, v) for k, v in spec.paths.items()}
    meta = MetadataCatalog.get(spec.name)
    class_meta = _class_metadata(spec, root)
    meta.set(
        overwrite=True,
        evaluator_type=spec.evaluator_type,
        prepare_script=spec.prepare,
        dataset_kind=spec.kind,
        **paths,
        **class_meta,
    )
    DatasetCatalog.register(spec.name, partial(_load, spec, paths))
    _REGISTERED_ROOT[spec.name] = root


def _check_prepared_vocabulary(spec: DatasetSpec, root: str) -> None:
    """Refuse to load label maps that a prepare script wrote for another vocabulary than the one
    in use (``--classes`` of the ADE20K-full script without the matching override)."""
    rel = spec.options.get("prepared_vocabulary")
    path = os.path.join(root, rel) if rel else ""
    if not path or not os.path.isfile(path):
        return
    prepared = [n[0] for _, n in read_vocabulary_entries(path)]
    in_use = [split_synonyms(c)[0].strip() for c in dataset_vocabulary(spec.name)]
    if prepared != in_use:
        raise VocabularyError(
            f"The label maps of {spec.name!r} were written for the {len(prepared)} classes of "
            f"{path}, not for the vocabulary in use ({len(in_use)} classes, "
            f"{MetadataCatalog.get(spec.name).get('vocabulary_file') or 'the shipped one'}); add "
            f"DATASETS.VOCABULARY_FILES \"{spec.name}:{path}\" or re-run {spec.prepare.split()[-1]} "
            "without --classes."
        )


def _load(spec: DatasetSpec, paths: dict[str, str]) -> list[dict]:
    meta = MetadataCatalog.get(spec.name)
    o = spec.options
    if spec.kind == "sem_seg":
        _check_prepared_vocabulary(spec, _REGISTERED_ROOT.get(spec.name, datasets_root()))
        return load_sem_seg(
            paths["sem_seg_root"], paths["image_root"], gt_ext=o.get("gt_ext", "png"),
            image_ext=o.get("image_ext", "jpg"), dataset_name=spec.name, prepare=spec.prepare,
            gt_suffix=o.get("gt_suffix", ""), image_suffix=o.get("image_suffix", ""),
        )
    if spec.kind == "panoptic":
        sem_key = None
        if o.get("sem_seg_suffix"):
            suffix = o["sem_seg_suffix"]
            sem_key = lambda ann: f"{ann['image_id']}{suffix}"  # noqa: E731
        return load_coco_panoptic_json(
            paths["panoptic_json"], paths["image_root"], paths["panoptic_root"], meta,
            sem_seg_dir=paths.get("sem_seg_root"), dataset_name=spec.name, prepare=spec.prepare,
            sem_seg_key=sem_key, image_suffix=o.get("image_suffix", ""),
        )
    if spec.kind == "instances":
        return load_coco_instances_json(
            paths["json_file"], paths["image_root"], meta, spec.name, spec.prepare
        )
    if spec.kind == "lvis":
        return load_lvis_json(paths["json_file"], paths["image_root"], meta, spec.name, spec.prepare)
    raise ValueError(f"Unknown dataset kind {spec.kind!r}")


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


def _classes(meta: Metadata) -> list[str] | None:
    """The class strings of a dataset's metadata: ``thing_classes`` of an instance dataset,
    else ``stuff_classes`` (every class, Mask2Former convention), else ``thing_classes``."""
    if meta.get("dataset_kind") in ("instances", "lvis"):
        return meta.get("thing_classes")
    return meta.get("stuff_classes") or meta.get("thing_classes")


def dataset_class_colors(dataset_name: str) -> list[tuple[int, int, int]] | None:
    """RGB colours (the benchmark's own, the release's where it gives them), one per class of
    :func:`dataset_vocabulary` when no override is set; None when the metadata has none that fit."""
    meta = MetadataCatalog.get(dataset_name)
    key = "thing_colors" if meta.get("dataset_kind") in ("instances", "lvis") else "stuff_colors"
    colors = meta.get(key)
    if not colors or len(colors) != len(_classes(meta) or ()):
        return None
    return [tuple(int(v) for v in c) for c in colors]


def thing_class_indices(dataset_name: str) -> list[int] | None:
    """Contiguous indices of the thing classes of a registered dataset, from its metadata's
    ``thing_dataset_id_to_contiguous_id`` (``None``: the metadata has none; every class is a thing)."""
    things = MetadataCatalog.get(dataset_name).get("thing_dataset_id_to_contiguous_id")
    if not things:
        return None
    return sorted(int(v) for v in things.values())


def _num_classes(dataset_name: str) -> int:
    return len(_classes(MetadataCatalog.get(dataset_name)) or ())


def set_vocabulary_file(dataset_name: str, path: str) -> list[str]:
    """Use the vocabulary file ``path`` for ``dataset_name`` (validated now); returns it."""
    vocab = read_vocabulary_file(path)
    validate_vocabulary(vocab, _num_classes(dataset_name), dataset_name, source=path)
    MetadataCatalog.get(dataset_name).set(overwrite=True, vocabulary_file=path)
    logger.info("Dataset %s uses the vocabulary file %s", dataset_name, path)
    return vocab


def _run_datasets(cfg) -> list[str]:
    """The datasets of ``DATASETS.TRAIN`` and ``DATASETS.TEST``, in order, without repeats."""
    return list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))


def _valid_names_hint(cfg, name: str = "") -> str:
    """``"valid names: a, b (DATASETS.TRAIN and DATASETS.TEST); did you mean a?"``."""
    used = _run_datasets(cfg)
    close = difflib.get_close_matches(name, used, n=3, cutoff=0.6) if name else []
    return (f"valid names: {', '.join(used) if used else 'none'} (DATASETS.TRAIN and DATASETS.TEST)"
            + (f"; did you mean {', '.join(close)}?" if close else "."))


def vocabulary_file_overrides(cfg) -> dict[str, str]:
    """``cfg.DATASETS.VOCABULARY_FILES`` (``"dataset_name:path"`` strings) as
    ``{dataset_name: path}``; the one place that reads and checks that option (its form here,
    its dataset names in :func:`check_vocabulary_files`)."""
    overrides: dict[str, str] = {}
    for item in cfg.DATASETS.VOCABULARY_FILES if cfg is not None else ():
        if ":" not in item:
            raise VocabularyError(
                f"DATASETS.VOCABULARY_FILES entry {item!r} must be 'dataset_name:path'; "
                + _valid_names_hint(cfg)
            )
        name, path = (part.strip() for part in item.split(":", 1))
        if name in overrides:
            raise VocabularyError(
                f"DATASETS.VOCABULARY_FILES names {name!r} twice ({overrides[name]!r} and {path!r}); "
                "keep one entry per dataset."
            )
        overrides[name] = path
    return overrides


def check_vocabulary_files(cfg) -> None:
    """Refuse, with one sentence (:class:`VocabularyError` listing the valid names and the close
    ones), a ``DATASETS.VOCABULARY_FILES`` entry that would be ignored: every entry must be
    ``"dataset_name:path"`` with a registered dataset of ``DATASETS.TRAIN`` or ``DATASETS.TEST``,
    or of a vocabulary already loaded with this file
    (``load_vocabulary(dataset_vocabulary=name, cfg=cfg)``). Run when a run starts
    (``setup_cfg``, the predictor, the demo); the file itself is read when the vocabulary is."""
    used = _run_datasets(cfg)
    for name, path in vocabulary_file_overrides(cfg).items():
        if name in DatasetCatalog and (name in used or MetadataCatalog.get(name).get("vocabulary_file") == path):
            continue
        why = ("is not a registered dataset" if name not in DatasetCatalog
               else "is not in DATASETS.TRAIN or DATASETS.TEST, so the file would be ignored")
        raise VocabularyError(
            f"DATASETS.VOCABULARY_FILES entry '{name}:{path}' names {name!r}, which {why}; "
            + _valid_names_hint(cfg, name)
        )


def check_dataset_config(cfg) -> None:
    """Check the dataset options of a run before it starts: every dataset of ``DATASETS.TRAIN``
    and ``DATASETS.TEST`` is registered (:meth:`DatasetCatalog.require
    <frozenseg.data.catalog._DatasetCatalog.require>`, close names suggested) and every
    ``DATASETS.VOCABULARY_FILES`` entry is used (:func:`check_vocabulary_files`)."""
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            DatasetCatalog.require(name, f"DATASETS.{key}")
    check_vocabulary_files(cfg)


def apply_vocabulary_overrides(cfg) -> None:
    """Apply ``cfg.DATASETS.VOCABULARY_FILES`` (:func:`vocabulary_file_overrides`)."""
    for name, path in vocabulary_file_overrides(cfg).items():
        set_vocabulary_file(name, path)


def dataset_vocabulary(dataset_name: str, cfg=None) -> list[str]:
    """Class names with synonyms (``"name,syn,..."``, one per contiguous class) of a dataset.

    Order: the dataset's contiguous class ids (for panoptic and semantic datasets all classes,
    for instance datasets the thing classes). Built-in datasets: the released system's class
    strings (:mod:`frozenseg.data.released`), nothing read from disk. A user vocabulary file set
    through ``cfg`` (``DATASETS.VOCABULARY_FILES``) or :func:`set_vocabulary_file` replaces it.
    Raises :class:`~frozenseg.data.catalog.DatasetNotRegisteredError` when ``dataset_name`` is
    not registered.
    """
    DatasetCatalog.require(dataset_name)
    path = vocabulary_file_overrides(cfg).get(dataset_name)
    if path is not None:
        return set_vocabulary_file(dataset_name, path)
    meta = MetadataCatalog.get(dataset_name)
    override = meta.get("vocabulary_file")
    if override:
        vocab = read_vocabulary_file(override)
        validate_vocabulary(vocab, _num_classes(dataset_name), dataset_name, source=override)
        return vocab
    if meta.get("vocabulary_error"):
        raise VocabularyError(meta.get("vocabulary_error"))
    classes = _classes(meta)
    if not classes:
        raise VocabularyError(
            f"Dataset {dataset_name!r} has no vocabulary: set a vocabulary file or stuff_classes."
        )
    return list(classes)


def export_dataset_vocabulary(dataset_name: str, path: str, cfg=None) -> str:
    """Write the vocabulary of a registered dataset (:func:`dataset_vocabulary`) as a vocabulary
    file, with the dataset's own ids (contiguous ids where the metadata maps none), to start a
    ``DATASETS.VOCABULARY_FILES`` override from. Returns ``path``.

    Raises :class:`~frozenseg.data.catalog.DatasetNotRegisteredError` (a ``KeyError``) with
    close matches when ``dataset_name`` is not registered.
    """
    DatasetCatalog.require(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    dataset_id: dict[int, int] = {}
    for key in ("stuff_dataset_id_to_contiguous_id", "thing_dataset_id_to_contiguous_id"):
        dataset_id.update({c: i for i, c in (meta.get(key) or {}).items()})
    vocab = dataset_vocabulary(dataset_name, cfg)
    source = meta.get("vocabulary_file") or meta.get("vocabulary_source")
    return write_vocabulary_file(
        path, vocab, ids=[dataset_id.get(k, k) for k in range(len(vocab))],
        header=f"Vocabulary of {dataset_name} ({source}), written by tools/export_vocabulary.py",
    )


def training_vocabulary(cfg, vocabulary_file: str = "") -> list[str] | None:
    """Class names of the training vocabulary: those of ``vocabulary_file`` when given (a
    model's own key, e.g. FrozenSeg's ``MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE``), else the
    vocabulary of ``DATASETS.TRAIN[0]``, else None (every test class is unseen)."""
    from ..utils.paths import resolve_path

    path = vocabulary_file
    if path:
        return read_vocabulary_file(str(resolve_path(path)))
    if len(cfg.DATASETS.TRAIN) > 0:
        return dataset_vocabulary(cfg.DATASETS.TRAIN[0], cfg)
    return None


register_all_builtin()
