"""Your own dataset without code: a description file (YAML or JSON) per dataset, registered in
the dataset and metadata catalogs like a built-in dataset, with its class names and synonyms.

A description names the dataset, its layout and its files (relative paths are relative to the
description file)::

    name: my_pets_train
    layout: sem_seg            # or coco_panoptic / coco_instances
    image_root: images/train
    label_root: labels/train
    classes: classes.txt       # or an inline list: ["cat,kitten", "dog,puppy", "grass"]
    ignore_label: 255
    things: [cat, dog]         # sem_seg only, optional

Keys per layout (:data:`LAYOUTS`; every layout needs ``name``, ``layout`` and ``image_root``):

* ``sem_seg``: ``label_root`` (single-channel label maps: pixel value k = class k, in class-list
  order; the image of ``labels/a/b.png`` is ``images/a/b.<any image extension>``) and
  ``classes``; optional ``ignore_label`` (default 255), ``things`` (names or ids of the thing
  classes; default: the demo guesses them), ``image_ext`` (default: every image extension),
  ``label_ext`` (default ``png``). Evaluated by the semantic evaluator (mIoU).
* ``coco_panoptic``: ``panoptic_json`` and ``panoptic_root`` (COCO panoptic json and PNGs);
  optional ``classes`` (class strings with synonyms for the json's categories), ``label_root``
  (semantic label maps in class order, for mIoU), ``ignore_label``. Evaluated by the COCO
  panoptic evaluator (PQ) and, with ``label_root``, the semantic one.
* ``coco_instances``: ``instances_json`` (COCO instances json with polygon or RLE masks);
  optional ``classes``. Evaluated by the COCO instance evaluator (mask AP).

Classes (``classes``): a file or an inline list, one class per line or item, synonyms after
commas (``cat,kitten``), blank lines and ``#`` comments ignored. The line order is the class
order: for ``sem_seg`` the label value, for the json layouts the categories by ascending id.
A file in the vocabulary format (``id:name,synonym``, :mod:`frozenseg.data.vocabulary`) names the
ids instead: label values 0, 1, 2, ... in order for ``sem_seg``, the json's category ids for the
json layouts. Without ``classes`` the json layouts use the category names of the json.

Registration (:func:`register_dataset_description`, or every file of the config key
``DATASETS.REGISTER`` through :func:`register_custom_datasets`, which
:func:`frozenseg.engine.setup.load_config` calls for every entry point; ``--register-dataset``
of ``train_net.py`` and ``demo/demo.py`` adds files to that key) reads the description and its
class list and checks that the folders and files it names exist; the json of a json layout is
read when its classes or images are first needed. Loading (``DatasetCatalog.get``) uses the
loaders of :mod:`frozenseg.data.loaders`, then checks what is cheap to check for every image:
that it exists and that its label map has its size (from the file headers). Label values are
checked when a label map is read (``sem_seg_num_classes`` of the dataset dicts). Every problem
is one sentence naming the file and the fix (a :class:`~frozenseg.utils.errors.UserInputError`).
:func:`check_custom_dataset_config` refuses, before a run starts, settings that cannot train
or evaluate a registered dataset (its mapper, ignore label and evaluated tasks).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

from ..utils.errors import AnnotationError, ConfigValueError, UserInputError
from .builtin import BUILTIN_DATASETS, _colors
from .catalog import DatasetCatalog, MetadataCatalog
from .loaders import (
    IMAGE_EXTS,
    DatasetNotFoundError,
    load_coco_instances_json,
    load_coco_panoptic_json,
    load_sem_seg,
)
from .vocabulary import (
    VocabularyError,
    _read_text,
    checked_synonyms,
    normalize_class_names,
    parse_vocabulary_file_text,
)

__all__ = [
    "DatasetDescriptionError",
    "LAYOUTS",
    "CustomDataset",
    "read_dataset_description",
    "register_dataset_description",
    "register_custom_datasets",
    "custom_dataset",
    "check_custom_dataset_config",
]

logger = logging.getLogger(__name__)

#: Where a description's problems are explained.
DOCS = 'datasets/README.md, "Your own dataset"'


class DatasetDescriptionError(UserInputError, ValueError):
    """A dataset description file, or a file it names (class file, COCO json), is missing or
    malformed: not valid YAML / JSON, a missing or unknown key, an unknown layout, a value of the
    wrong kind, classes that do not fit the dataset."""


@dataclass(frozen=True)
class _Layout:
    """What a layout needs: its keys, how it is evaluated and which training mappers read it."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    kind: str  # dataset_kind of the metadata (sem_seg, panoptic, instances)
    evaluator_type: str
    mappers: tuple[str, ...]  # INPUT.DATASET_MAPPER_NAME values that can read its dicts


_COMMON = ("name", "layout", "image_root")

#: The layouts a description may give, and their keys.
LAYOUTS: dict[str, _Layout] = {
    "sem_seg": _Layout(("label_root", "classes"), ("ignore_label", "things", "image_ext", "label_ext"),
                       "sem_seg", "sem_seg", ("mask_former_semantic",)),
    "coco_panoptic": _Layout(("panoptic_json", "panoptic_root"), ("classes", "label_root", "ignore_label"),
                             "panoptic", "coco_panoptic_seg", ("coco_panoptic_lsj", "mask_former_panoptic")),
    "coco_instances": _Layout(("instances_json",), ("classes",),
                              "instances", "coco", ("coco_instance_lsj", "mask_former_instance")),
}

#: What each key holds, for the error of a missing key.
_KEY_MEANING = {
    "name": "the dataset name used in DATASETS.TRAIN / DATASETS.TEST",
    "layout": f"one of {', '.join(LAYOUTS)}",
    "image_root": "the folder of the images",
    "label_root": "the folder of the label maps",
    "classes": "a class file or an inline list of class names",
    "panoptic_json": "the COCO panoptic json",
    "panoptic_root": "the folder of the panoptic PNGs",
    "instances_json": "the COCO instances json",
}
_PATH_KEYS = ("image_root", "label_root", "panoptic_root", "panoptic_json", "instances_json")


@dataclass(frozen=True)
class CustomDataset:
    """A registered description.

    Attributes:
        name: the dataset name.
        layout: a key of :data:`LAYOUTS`.
        source: absolute path of the description file.
        paths: absolute paths of the description's path keys (``image_root``, ``label_root``, ...).
        classes: the class strings (``"name,synonym,..."``) in class order, or None (a json
            layout without ``classes``: the json's category names).
        class_ids: the ids a vocabulary-format class file gives (label values for ``sem_seg``,
            category ids for the json layouts), or None.
        classes_source: where ``classes`` come from (the class file or the description).
        things: contiguous indices of the thing classes of a ``sem_seg`` dataset, or None.
        ignore_label: label value of unlabelled pixels in label maps.
        image_exts: image file extensions looked for (``sem_seg``).
        label_ext: label-map file extension (``sem_seg``).
    """

    name: str
    layout: str
    source: str
    paths: dict[str, str]
    classes: tuple[str, ...] | None = None
    class_ids: tuple[int, ...] | None = None
    classes_source: str = ""
    things: tuple[int, ...] | None = None
    ignore_label: int = 255
    image_exts: tuple[str, ...] = IMAGE_EXTS
    label_ext: str = "png"

    @property
    def spec(self) -> _Layout:
        return LAYOUTS[self.layout]

    @property
    def fix(self) -> str:
        """How to fix missing files (completes the loaders' "to create it, ..." sentences)."""
        return f"correct the paths in {self.source} or add the missing files"


#: name -> the registered description
_CUSTOM: dict[str, CustomDataset] = {}


def custom_dataset(name: str) -> CustomDataset | None:
    """The description registered under ``name``, or None (a built-in or unregistered name)."""
    return _CUSTOM.get(name)


# ---------------------------------------------------------------------------------------------
# Reading a description
# ---------------------------------------------------------------------------------------------
def _parse_file(path: str) -> Any:
    """The content of a YAML or JSON file (JSON by the ``.json`` extension)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DatasetDescriptionError(
            f"Dataset description {path!r} is not UTF-8 (byte {e.start}); save it as UTF-8."
        ) from None
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetDescriptionError(
                f"Dataset description {path!r} is not valid JSON at line {e.lineno}, column {e.colno} "
                f"({e.msg}); fix its syntax there."
            ) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DatasetDescriptionError(
            f"Dataset description {path!r} is not valid YAML{where} ({problem}); fix its syntax there "
            "(an unclosed bracket or quote, a tab for indentation)."
        ) from None


def read_dataset_description(path: str) -> dict[str, Any]:
    """The keys of the description file ``path`` (YAML, or JSON for ``.json``), checked: a
    mapping with the keys of its layout (:data:`LAYOUTS`), none unknown, ``name`` a non-empty
    text without ``:`` or spaces. Raises :class:`DatasetDescriptionError`."""
    if not os.path.isfile(path):
        raise DatasetDescriptionError(
            f"Dataset description {path!r} does not exist; give the path of a YAML or JSON file "
            f"describing the dataset ({DOCS})."
        )
    desc = _parse_file(path)
    if not isinstance(desc, dict):
        raise DatasetDescriptionError(
            f"Dataset description {path!r} must be a mapping of keys such as name, layout and image_root, "
            f"not {type(desc).__name__}; see {DOCS}."
        )
    for key in ("name", "layout"):
        if key not in desc:
            raise DatasetDescriptionError(
                f"Dataset description {path!r} lacks the key {key!r} ({_KEY_MEANING[key]}); add it."
            )
    layout = desc["layout"]
    if layout not in LAYOUTS:
        close = difflib.get_close_matches(str(layout), list(LAYOUTS), n=1, cutoff=0.5)
        raise DatasetDescriptionError(
            f"Dataset description {path!r} has the unknown layout {layout!r}; use one of "
            f"{', '.join(LAYOUTS)}" + (f" (did you mean {close[0]}?)." if close else ".")
        )
    spec = LAYOUTS[layout]
    allowed = (*_COMMON, *spec.required, *spec.optional)
    for key in desc:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            raise DatasetDescriptionError(
                f"Dataset description {path!r} has the unknown key {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; the keys of the {layout} layout are {', '.join(allowed)}."
            )
    for key in (*_COMMON, *spec.required):
        if key not in desc or desc[key] is None or desc[key] == "":
            raise DatasetDescriptionError(
                f"Dataset description {path!r} lacks the key {key!r} ({_KEY_MEANING[key]}), which the "
                f"{layout} layout needs; add it."
            )
    name = desc["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[^\s:]+", name):
        raise DatasetDescriptionError(
            f"Dataset description {path!r}: name {name!r} must be one word without spaces or ':' "
            "(e.g. my_pets_train); rename it."
        )
    for key in _PATH_KEYS:
        if key in desc and not isinstance(desc[key], str):
            raise DatasetDescriptionError(
                f"Dataset description {path!r}: {key} must be a path (text), not {desc[key]!r}; correct it."
            )
    return desc


def _int_key(desc: dict, key: str, default: int, path: str) -> int:
    value = desc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetDescriptionError(
            f"Dataset description {path!r}: {key} must be an integer of at least 0, not {value!r}; correct it."
        )
    return value


def _extensions(desc: dict, key: str, path: str) -> tuple[str, ...] | None:
    """The extensions of ``key`` (a text or a list of texts) without dots, or None when absent."""
    value = desc.get(key)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip(". ") for v in values):
        raise DatasetDescriptionError(
            f"Dataset description {path!r}: {key} must be a file extension such as 'png' or a list of them, "
            f"not {value!r}; correct it."
        )
    return tuple(v.strip().lstrip(".").lower() for v in values)


def _existing(base: str, rel: str, key: str, path: str, name: str, folder: bool) -> str:
    """``rel`` resolved against ``base`` (``~`` and ``$VARS`` expanded); a one-sentence error
    naming the description when it is not an existing folder / file."""
    p = os.path.normpath(os.path.join(base, os.path.expandvars(os.path.expanduser(rel))))
    ok = os.path.isdir(p) if folder else os.path.isfile(p)
    if not ok:
        what = "folder" if folder else "file"
        why = "is a file, not a folder" if folder and os.path.exists(p) else (
            "is a folder, not a file" if os.path.exists(p) else "does not exist")
        raise DatasetNotFoundError(
            f"Dataset {name!r}: the {what} {p} ({key} of {path}) {why}; correct {key} "
            f"(a relative path is relative to the description file) or create the {what}."
        )
    return p


# ---------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------
_VOCAB_LINE = re.compile(r"^\s*-?\d+\s*:")


def _read_classes(value: Any, base: str, path: str) -> tuple[list[str], list[int] | None, str]:
    """(class strings, ids of a vocabulary-format file or None, source) of a ``classes`` value: a
    file (relative to ``base``) or an inline list; validated (no empty class or synonym, no class
    name twice)."""
    if isinstance(value, str):
        file = os.path.normpath(os.path.join(base, os.path.expandvars(os.path.expanduser(value))))
        if not os.path.isfile(file):
            raise DatasetDescriptionError(
                f"The class file {file} (classes of {path}) does not exist; create it with one class per "
                "line, synonyms after commas ('cat,kitten'), or list the classes inline."
            )
        try:
            text = _read_text(file)
        except VocabularyError as e:
            raise DatasetDescriptionError(str(e)) from None
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if not lines:
            raise DatasetDescriptionError(
                f"The class file {file} (classes of {path}) lists no class; write one class per line, "
                "synonyms after commas ('cat,kitten')."
            )
        if any(_VOCAB_LINE.match(ln) for ln in lines):
            entries = parse_vocabulary_file_text(text, source=file)
            ids: list[int] | None = [i for i, _ in entries]
            names = [",".join(n) for _, n in entries]
        else:
            ids = None
            names = [",".join(checked_synonyms(ln, f"{file}, class #{k}")) for k, ln in enumerate(lines, start=1)]
        return normalize_class_names(names, source=file), ids, file
    if isinstance(value, list):
        where = f"{path}: classes"
        if not value:
            raise DatasetDescriptionError(f"{where} is an empty list; list at least one class ('cat,kitten').")
        for k, item in enumerate(value, start=1):
            if not isinstance(item, str):
                raise DatasetDescriptionError(
                    f"{where}: class #{k} is {item!r}, not text; write every class as text such as 'cat,kitten'."
                )
        return normalize_class_names(list(value), source=where), None, path
    raise DatasetDescriptionError(
        f"Dataset description {path!r}: classes must be a class file or a list of class names, not {value!r}; "
        "correct it."
    )


def _first_names(classes: Sequence[str]) -> list[str]:
    return [checked_synonyms(c, "class")[0] for c in classes]


def _resolve_things(value: Any, classes: Sequence[str], path: str) -> tuple[int, ...]:
    """Contiguous indices of the ``things`` of a sem_seg description: class names (first names)
    or class ids."""
    if not isinstance(value, list):
        raise DatasetDescriptionError(
            f"Dataset description {path!r}: things must be a list of class names or ids, not {value!r}; correct it."
        )
    names = _first_names(classes)
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise DatasetDescriptionError(
                f"Dataset description {path!r}: things lists {item!r}, which is neither a class name nor a "
                "class id; correct it."
            )
        if isinstance(item, int):
            if not 0 <= item < len(classes):
                raise DatasetDescriptionError(
                    f"Dataset description {path!r}: things lists the id {item}, but the class ids are "
                    f"0..{len(classes) - 1}; correct it."
                )
            out.append(item)
            continue
        if item not in names:
            close = difflib.get_close_matches(item, names, n=1, cutoff=0.6)
            raise DatasetDescriptionError(
                f"Dataset description {path!r}: things lists {item!r}, which is not a class name"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; use the first names of the classes ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})."
            )
        out.append(names.index(item))
    return tuple(sorted(set(out)))


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------
def _describe(path: str) -> CustomDataset:
    """Read and check the description ``path`` (absolute) into a :class:`CustomDataset`."""
    desc = read_dataset_description(path)
    name, layout = desc["name"], desc["layout"]
    base = os.path.dirname(path)
    paths = {}
    for key in _PATH_KEYS:
        if key in desc:
            folder = key in ("image_root", "label_root", "panoptic_root")
            paths[key] = _existing(base, desc[key], key, path, name, folder)
    classes = class_ids = None
    classes_source = ""
    if "classes" in desc:
        names, class_ids, classes_source = _read_classes(desc["classes"], base, path)
        classes = tuple(names)
    ignore = _int_key(desc, "ignore_label", 255, path)
    kw: dict[str, Any] = {}
    if layout == "sem_seg":
        k = len(classes)
        if class_ids is not None and class_ids != list(range(k)):
            bad = next(j for j, i in enumerate(class_ids) if i != j)
            raise DatasetDescriptionError(
                f"{classes_source}: class {_first_names(classes)[bad]!r} has the id {class_ids[bad]}, but the "
                f"classes of a sem_seg dataset are its label values 0..{k - 1} in file order (expected {bad}); "
                "renumber the file or leave the ids out."
            )
        if ignore < k:
            raise DatasetDescriptionError(
                f"Dataset description {path!r}: ignore_label {ignore} is the label of class "
                f"{_first_names(classes)[ignore]!r}; choose a value outside the class ids 0..{k - 1} (255 by default)."
            )
        if "things" in desc:
            kw["things"] = _resolve_things(desc["things"], classes, path)
        exts = _extensions(desc, "image_ext", path)
        if exts is not None:
            kw["image_exts"] = tuple("." + e for e in exts)
        label_ext = _extensions(desc, "label_ext", path)
        if label_ext is not None:
            if len(label_ext) != 1:
                raise DatasetDescriptionError(
                    f"Dataset description {path!r}: label_ext must be one extension such as 'png', not "
                    f"{desc['label_ext']!r}; correct it."
                )
            kw["label_ext"] = label_ext[0]
    return CustomDataset(name, layout, path, paths, classes, tuple(class_ids) if class_ids else None,
                         classes_source, ignore_label=ignore, **kw)


def _check_name(ds: CustomDataset) -> None:
    """Refuse a name that a built-in dataset, another description or Python code registered."""
    if ds.name in {s.name for s in BUILTIN_DATASETS}:
        raise DatasetDescriptionError(
            f"Dataset description {ds.source!r}: {ds.name!r} is the name of a built-in dataset; choose another name."
        )
    other = _CUSTOM.get(ds.name)
    if other is not None and other.source != ds.source:
        raise DatasetDescriptionError(
            f"Dataset description {ds.source!r}: the name {ds.name!r} is already registered by {other.source}; "
            "give each dataset its own name."
        )
    if other is None and ds.name in DatasetCatalog:
        raise DatasetDescriptionError(
            f"Dataset description {ds.source!r}: the name {ds.name!r} is already registered; choose another name."
        )


def register_dataset_description(path: str) -> str:
    """Register the dataset that the description file ``path`` describes (see the module
    docstring) in :class:`~frozenseg.data.catalog.DatasetCatalog` and
    :class:`~frozenseg.data.catalog.MetadataCatalog`; returns its name.

    Registering the same file again replaces the earlier registration (its edits take effect).
    Raises a :class:`~frozenseg.utils.errors.UserInputError` (one sentence naming the file and
    the fix) for a description or class file that is missing or malformed, a folder or file it
    names that does not exist, or a name another dataset already has.
    """
    from ..utils.paths import resolve_path

    source = os.path.abspath(str(resolve_path(str(path))))
    ds = _describe(source)
    _check_name(ds)
    if ds.name in DatasetCatalog:
        DatasetCatalog.remove(ds.name)
    if ds.name in MetadataCatalog.data:
        MetadataCatalog.remove(ds.name)
    spec = ds.spec
    meta = MetadataCatalog.get(ds.name)
    p = ds.paths
    files = dict(image_root=p["image_root"])
    if "label_root" in p:
        files["sem_seg_root"] = p["label_root"]
    if ds.layout == "coco_panoptic":
        files.update(panoptic_root=p["panoptic_root"], panoptic_json=p["panoptic_json"])
    if ds.layout == "coco_instances":
        files["json_file"] = p["instances_json"]
    meta.set(
        overwrite=True, evaluator_type=spec.evaluator_type, dataset_kind=spec.kind, layout=ds.layout,
        description_file=ds.source, prepare_script=ds.fix, ignore_label=ds.ignore_label, label_divisor=1000,
        vocabulary_source=ds.classes_source or ds.source, **files,
    )
    if ds.layout == "sem_seg":
        meta.set(overwrite=True, **_sem_seg_class_metadata(ds))
    else:  # the classes are the json's categories, read when first needed
        meta.set_lazy(partial(_json_class_metadata, ds))
    DatasetCatalog.register(ds.name, partial(_load, ds))
    _CUSTOM[ds.name] = ds
    logger.info("Registered dataset %s (%s, %s) from %s", ds.name, ds.layout,
                f"{len(ds.classes)} classes" if ds.classes else "classes of its json", ds.source)
    return ds.name


def register_custom_datasets(paths: Sequence[str]) -> list[str]:
    """Register every description file of ``paths`` (the config key ``DATASETS.REGISTER``), in
    order, each once; returns the dataset names."""
    return [register_dataset_description(p) for p in dict.fromkeys(paths)]


def _sem_seg_class_metadata(ds: CustomDataset) -> dict[str, Any]:
    """Mask2Former's class metadata of a sem_seg dataset: ``stuff_*`` over every class,
    ``thing_*`` over ``things`` when the description names them."""
    classes = list(ds.classes)
    colors = _colors(len(classes))
    meta: dict[str, Any] = dict(
        stuff_classes=classes, stuff_colors=colors,
        stuff_dataset_id_to_contiguous_id={k: k for k in range(len(classes))},
    )
    if ds.things is not None:
        meta.update(thing_classes=[classes[k] for k in ds.things], thing_colors=[colors[k] for k in ds.things],
                    thing_dataset_id_to_contiguous_id={k: k for k in ds.things})
    return meta


def _read_json(path: str, layout: str) -> dict:
    """A COCO json, checked: valid JSON with ``images``, ``annotations`` and ``categories`` lists."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetDescriptionError(
            f"{path} is not valid JSON at line {e.lineno}, column {e.colno} ({e.msg}); fix or re-export it."
        ) from None
    except UnicodeDecodeError:
        raise DatasetDescriptionError(f"{path} is not UTF-8 text; re-export it as a JSON file.") from None
    what = "COCO panoptic" if layout == "coco_panoptic" else "COCO instances"
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DatasetDescriptionError(
                f"{path} has no {key!r} list; a {what} json holds 'images', 'annotations' and 'categories'."
            )
    return data


def _json_categories(ds: CustomDataset, data: dict) -> list[dict]:
    """The json's categories by ascending id, checked (int ids, each once, a name; ``isthing``
    for panoptic)."""
    path = ds.paths["panoptic_json" if ds.layout == "coco_panoptic" else "instances_json"]
    cats = data["categories"]
    if not cats:
        raise DatasetDescriptionError(f"{path} lists no category; add its classes to 'categories'.")
    seen: set[int] = set()
    for c in cats:
        if not isinstance(c, dict) or isinstance(c.get("id"), bool) or not isinstance(c.get("id"), int) \
                or not isinstance(c.get("name"), str):
            raise DatasetDescriptionError(
                f"{path}: category {c!r} needs an integer 'id' and a 'name'; correct it."
            )
        if c["id"] in seen:
            raise DatasetDescriptionError(
                f"{path}: the category id {c['id']} is used twice; give each category its own id."
            )
        seen.add(c["id"])
        if ds.layout == "coco_panoptic" and c.get("isthing") not in (0, 1, True, False):
            raise DatasetDescriptionError(
                f"{path}: category {c['id']} ({c['name']!r}) has no 'isthing' (1 for a countable thing, 0 for "
                "stuff); add it."
            )
    return sorted(cats, key=lambda c: c["id"])


def _check_json_annotations(ds: CustomDataset, data: dict, ids: set[int]) -> None:
    """Every annotation (every segment of a panoptic one) has a category of the json; instance
    annotations have a mask."""
    path = ds.paths["panoptic_json" if ds.layout == "coco_panoptic" else "instances_json"]
    for a in data["annotations"]:
        if not isinstance(a, dict):
            raise DatasetDescriptionError(f"{path}: the annotation {a!r} is not an object; correct it.")
        if ds.layout == "coco_panoptic":
            if not isinstance(a.get("segments_info"), list) or "file_name" not in a or "image_id" not in a:
                raise DatasetDescriptionError(
                    f"{path}: the annotation of image {a.get('image_id')!r} needs 'image_id', 'file_name' and "
                    "'segments_info' (COCO panoptic format); correct it."
                )
            segments = a["segments_info"]
        else:
            if a.get("segmentation") is None:
                raise DatasetDescriptionError(
                    f"{path}: annotation {a.get('id')!r} of image {a.get('image_id')!r} has no 'segmentation' "
                    "(polygons or RLE); every annotation needs a mask, add it or remove the annotation."
                )
            segments = [a]
        for s in segments:
            if not isinstance(s, dict):
                raise DatasetDescriptionError(f"{path}: the segment {s!r} of image {a.get('image_id')!r} is not an "
                                              "object; correct it.")
            if s.get("category_id") not in ids:
                raise AnnotationError(
                    f"{path}: image {a.get('image_id')!r} has an annotation of category {s.get('category_id')!r}, "
                    f"which is not in its 'categories' (ids {', '.join(str(i) for i in sorted(ids)[:10])}"
                    f"{', ...' if len(ids) > 10 else ''}); correct the category id or add the category."
                )


def _json_class_metadata(ds: CustomDataset, meta) -> None:
    """Set the class metadata of a json layout from its json (the lazy part of the registration)."""
    path = ds.paths["panoptic_json" if ds.layout == "coco_panoptic" else "instances_json"]
    data = _read_json(path, ds.layout)
    cats = _json_categories(ds, data)
    ids = [c["id"] for c in cats]
    _check_json_annotations(ds, data, set(ids))
    if ds.classes is None:
        classes = normalize_class_names([c["name"] for c in cats], source=f"{path}: categories", warn=False)
    elif ds.class_ids is not None:
        if sorted(ds.class_ids) != ids:
            missing = sorted(set(ids) - set(ds.class_ids))
            extra = sorted(set(ds.class_ids) - set(ids))
            raise DatasetDescriptionError(
                f"{ds.classes_source}: the class ids must be the category ids of {path}"
                + (f"; {', '.join(map(str, missing[:5]))} missing" if missing else "")
                + (f"; {', '.join(map(str, extra[:5]))} not in the json" if extra else "")
                + "; correct the ids."
            )
        by_id = dict(zip(ds.class_ids, ds.classes))
        classes = [by_id[i] for i in ids]
    else:
        if len(ds.classes) != len(cats):
            listed = f" {ds.classes_source}" if ds.classes_source != ds.source else ""
            raise DatasetDescriptionError(
                f"{ds.source}: the class list{listed} has {len(ds.classes)} classes but {path} has {len(cats)} "
                "categories; list one class per category, in ascending category id order."
            )
        classes = list(ds.classes)
        renamed = [(c["name"], n) for c, n in zip(cats, _first_names(classes)) if c["name"] != n]
        if renamed:
            logger.info("%s: class names that differ from the json's category names (json -> class): %s",
                        ds.name, ", ".join(f"{a!r} -> {b!r}" for a, b in renamed[:10]))
    colors = [list(c["color"]) if isinstance(c.get("color"), list) and len(c["color"]) == 3 else None for c in cats]
    if any(c is None for c in colors):
        colors = _colors(len(cats))
    if ds.layout == "coco_instances":
        meta.set(overwrite=True, thing_classes=classes, thing_colors=colors,
                 thing_dataset_id_to_contiguous_id={i: k for k, i in enumerate(ids)})
        return
    things = [k for k, c in enumerate(cats) if c["isthing"]]
    meta.set(
        overwrite=True, stuff_classes=classes, stuff_colors=colors,
        stuff_dataset_id_to_contiguous_id={i: k for k, i in enumerate(ids)},
        thing_classes=[classes[k] for k in things], thing_colors=[colors[k] for k in things],
        thing_dataset_id_to_contiguous_id={ids[k]: k for k in things},
    )


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
#: path -> (mtime_ns, (H, W)): image sizes read from file headers
_SIZES: dict[str, tuple[int, tuple[int, int]]] = {}
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _file_size(path: str, image: bool) -> tuple[int, int]:
    """(H, W) of an image (as :func:`~frozenseg.utils.image_io.read_image` returns it, EXIF
    orientation applied) or of a label map, from the file header; unreadable files are named."""
    from PIL import Image

    mtime = os.stat(path).st_mtime_ns
    cached = _SIZES.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        with Image.open(path) as im:
            w, h = im.size
            if image and im.getexif().get(0x0112) in _ROTATED:
                w, h = h, w
    except (OSError, SyntaxError, ValueError) as e:
        what = "Image" if image else "Annotation"
        raise AnnotationError(
            f"{what} {path!r} cannot be read ({type(e).__name__}: {e}); replace it or leave it out of the dataset."
        ) from None
    _SIZES[path] = (mtime, (h, w))
    return h, w


def _check_size(label: str, image: str) -> tuple[int, int]:
    """The (H, W) of ``image``; an error naming ``label`` when its size differs."""
    size = _file_size(image, True)
    got = _file_size(label, False)
    if got != size:
        raise AnnotationError(
            f"Annotation {label!r} is {got[0]}x{got[1]} pixels but its image {image} is {size[0]}x{size[1]}; "
            "re-create the annotation at the image's size."
        )
    return size


def _check_json_size(record: dict, json_file: str) -> None:
    """The image of ``record`` exists and has the size its json gives it."""
    image = record["file_name"]
    if not os.path.isfile(image):
        raise DatasetNotFoundError(
            f"Image {image} of {json_file} does not exist; add it or correct its file_name in the json."
        )
    if "height" in record and "width" in record:
        size = _file_size(image, True)
        if size != (record["height"], record["width"]):
            raise AnnotationError(
                f"Image {image!r} is {size[0]}x{size[1]} pixels but {json_file} gives it "
                f"{record['height']}x{record['width']}; correct its height and width in the json."
            )


def _load(ds: CustomDataset) -> list[dict]:
    """The dataset dicts of ``ds`` (:mod:`frozenseg.data.loaders` formats), checked."""
    meta = MetadataCatalog.get(ds.name)
    p = ds.paths
    if ds.layout == "sem_seg":
        dicts = load_sem_seg(p["label_root"], p["image_root"], gt_ext=ds.label_ext, image_ext=ds.image_exts,
                             dataset_name=ds.name, prepare=ds.fix)
        if not dicts:
            raise DatasetNotFoundError(
                f"Dataset {ds.name!r} ({ds.source}) has no image: no *.{ds.label_ext} label map in "
                f"{p['label_root']}; add the label maps or correct label_root and label_ext."
            )
        for d in dicts:
            d["height"], d["width"] = _check_size(d["sem_seg_file_name"], d["file_name"])
            d["sem_seg_num_classes"] = len(ds.classes)
        return dicts
    meta.get("stuff_classes")  # the json's classes: checked before the loader reads it again
    if ds.layout == "coco_panoptic":
        dicts = load_coco_panoptic_json(p["panoptic_json"], p["image_root"], p["panoptic_root"], meta,
                                        sem_seg_dir=p.get("label_root"), dataset_name=ds.name, prepare=ds.fix)
        for d in dicts:
            if not os.path.isfile(d["pan_seg_file_name"]):
                raise DatasetNotFoundError(
                    f"Panoptic PNG {d['pan_seg_file_name']} of {p['panoptic_json']} does not exist; add it or "
                    "correct its file_name in the json."
                )
            _check_json_size(d, p["panoptic_json"])
            size = _check_size(d["pan_seg_file_name"], d["file_name"])
            if "sem_seg_file_name" in d:
                _check_size(d["sem_seg_file_name"], d["file_name"])
                d["sem_seg_num_classes"] = len(meta.stuff_classes)
            d.setdefault("height", size[0])
            d.setdefault("width", size[1])
    else:
        dicts = load_coco_instances_json(p["instances_json"], p["image_root"], meta, ds.name, ds.fix)
        for d in dicts:
            _check_json_size(d, p["instances_json"])
    if not dicts:
        json_file = p.get("panoptic_json") or p["instances_json"]
        raise DatasetNotFoundError(f"Dataset {ds.name!r}: {json_file} lists no annotated image; add its images.")
    return dicts


# ---------------------------------------------------------------------------------------------
# Checks of a run's config
# ---------------------------------------------------------------------------------------------
def _task_switches(cfg) -> dict[str, bool]:
    """The evaluated tasks: ``MODEL.MASK_FORMER.TEST.{SEMANTIC,PANOPTIC,INSTANCE}_ON`` with
    Mask2Former's defaults where a model's config lacks them (as the evaluation does)."""
    test = cfg.MODEL.get("MASK_FORMER", {}).get("TEST", {})
    return {"SEMANTIC_ON": bool(test.get("SEMANTIC_ON", True)), "PANOPTIC_ON": bool(test.get("PANOPTIC_ON", False)),
            "INSTANCE_ON": bool(test.get("INSTANCE_ON", False))}


def check_custom_dataset_config(cfg) -> None:
    """Refuse, with one :class:`~frozenseg.utils.errors.ConfigValueError` sentence naming the
    key to set, a run whose settings cannot use its registered datasets: a training dataset
    that ``INPUT.DATASET_MAPPER_NAME`` cannot read, a ``sem_seg`` training dataset whose
    ignore label is not ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``, and a test dataset without the
    ground truth of an evaluated task (``MODEL.MASK_FORMER.TEST.*_ON``). Built-in datasets are
    not checked here."""
    mapper = cfg.INPUT.DATASET_MAPPER_NAME
    for name in cfg.DATASETS.TRAIN:
        ds = _CUSTOM.get(name)
        if ds is None:
            continue
        fits = ds.spec.mappers + (("mask_former_semantic",) if "label_root" in ds.paths else ())
        if mapper not in fits:
            raise ConfigValueError(
                f"INPUT.DATASET_MAPPER_NAME {mapper!r} cannot read the {ds.layout} training dataset {name!r} "
                f"({ds.source}); set INPUT.DATASET_MAPPER_NAME {fits[0]}."
            )
        ignore = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        if mapper == "mask_former_semantic" and ds.ignore_label != ignore:
            raise ConfigValueError(
                f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE is {ignore} but the training dataset {name!r} ({ds.source}) "
                f"marks unlabelled pixels with {ds.ignore_label}; set MODEL.SEM_SEG_HEAD.IGNORE_VALUE "
                f"{ds.ignore_label}."
            )
    on = _task_switches(cfg)
    for name in cfg.DATASETS.TEST:
        ds = _CUSTOM.get(name)
        if ds is None:
            continue
        key = "MODEL.MASK_FORMER.TEST."
        if ds.layout == "sem_seg" and not on["SEMANTIC_ON"]:
            raise ConfigValueError(
                f"The sem_seg test dataset {name!r} ({ds.source}) is evaluated by mIoU only, but "
                f"{key}SEMANTIC_ON is False; set {key}SEMANTIC_ON True."
            )
        if ds.layout == "coco_instances" and not on["INSTANCE_ON"]:
            raise ConfigValueError(
                f"The coco_instances test dataset {name!r} ({ds.source}) is evaluated by mask AP, but "
                f"{key}INSTANCE_ON is False; set {key}INSTANCE_ON True."
            )
        if ds.layout == "coco_panoptic":
            if on["SEMANTIC_ON"] and "label_root" not in ds.paths:
                raise ConfigValueError(
                    f"The coco_panoptic test dataset {name!r} ({ds.source}) has no semantic label maps for "
                    f"{key}SEMANTIC_ON; set {key}SEMANTIC_ON False, or add label_root to {ds.source}."
                )
            if on["INSTANCE_ON"]:
                raise ConfigValueError(
                    f"The coco_panoptic test dataset {name!r} ({ds.source}) has no instances json for "
                    f"{key}INSTANCE_ON; set {key}INSTANCE_ON False, or evaluate instances on a coco_instances "
                    "dataset."
                )
            if not (on["PANOPTIC_ON"] or on["SEMANTIC_ON"]):
                raise ConfigValueError(
                    f"The coco_panoptic test dataset {name!r} ({ds.source}) is evaluated by PQ, but "
                    f"{key}PANOPTIC_ON is False; set {key}PANOPTIC_ON True."
                )
