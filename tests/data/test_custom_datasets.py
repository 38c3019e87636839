"""Your own dataset without code: description files (YAML / JSON) for the three common layouts
(semantic label maps, COCO panoptic, COCO instances) are registered in the catalogs with their
class names and synonyms, loaded by the standard loaders, and every inconsistency is refused
with one sentence naming the file and the fix.

The datasets are the synthetic shapes set (:func:`frozenseg.data.synthetic.make_shapes`): 3
training and 2 validation images; classes circle, square, triangle, star (things, category ids
1-4), sky, grass, sand, water (stuff, ids 5-8); semantic maps hold the category id - 1, 255 void.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from frozenseg.config import get_cfg
from frozenseg.data import (
    DatasetCatalog,
    DatasetDescriptionError,
    MetadataCatalog,
    dataset_vocabulary,
    register_dataset_description,
)
from frozenseg.data import custom
from frozenseg.data.builtin import thing_class_indices
from frozenseg.data.custom import check_custom_dataset_config, register_custom_datasets
from frozenseg.data.dataset_mappers import MaskFormerSemanticDatasetMapper
from frozenseg.data.loaders import DatasetNotFoundError
from frozenseg.data.vocabulary import VocabularyError
from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.utils.errors import AnnotationError, ConfigValueError, UserInputError

from ..conftest import REPO_ROOT

SHAPES_CONFIG = str(REPO_ROOT / "configs" / "synthetic" / "frozenseg_tiny_shapes.yaml")
SHAPES = ["circle", "square", "triangle", "star", "sky", "grass", "sand", "water"]
#: the class file of the semantic layout: synonyms, a comment and a blank line
CLASS_FILE = ("# the shapes classes, label value = line order\n"
              "circle,disc\nsquare,box\ntriangle\nstar\n\nsky\ngrass,lawn\nsand\nwater\n")
SYNONYMS = ["circle,disc", "square,box", "triangle", "star", "sky", "grass,lawn", "sand", "water"]


def write_description(path: Path, **keys) -> Path:
    """A description file with ``keys``: JSON for a ``.json`` name, else YAML."""
    path.write_text(json.dumps(keys) if path.suffix == ".json" else yaml.safe_dump(keys, sort_keys=False))
    return path


def make_layouts(root: Path, size: int = 48, num_train: int = 3, num_val: int = 2) -> dict[str, Path]:
    """The shapes set under ``root/synthetic_shapes`` with a description of each layout and split:
    ``{"sem_seg_train": path, "coco_panoptic_val": path, ...}`` (datasets ``my_<layout>_<split>``)."""
    from frozenseg.data.synthetic import make_shapes

    make_shapes(str(root), 0, num_train, num_val, size=size)
    d = root / "synthetic_shapes"
    (d / "classes.txt").write_text(CLASS_FILE)
    out = {}
    for split in ("train", "val"):
        out[f"sem_seg_{split}"] = write_description(
            d / f"sem_seg_{split}.yaml", name=f"my_sem_seg_{split}", layout="sem_seg", image_root=f"{split}/images",
            label_root=f"{split}/panoptic_semseg", classes="classes.txt",
            things=["circle", "square", "triangle", "star"])
        out[f"coco_panoptic_{split}"] = write_description(
            d / f"coco_panoptic_{split}.json", name=f"my_coco_panoptic_{split}", layout="coco_panoptic",
            image_root=f"{split}/images", panoptic_root=f"{split}/panoptic", panoptic_json=f"{split}/panoptic.json",
            label_root=f"{split}/panoptic_semseg")
        out[f"coco_instances_{split}"] = write_description(
            d / f"coco_instances_{split}.yaml", name=f"my_coco_instances_{split}", layout="coco_instances",
            image_root=f"{split}/images", instances_json=f"{split}/instances.json",
            classes=["circle,disc", "square,box", "triangle", "star"])
    return out


@pytest.fixture(autouse=True)
def forget_custom_datasets():
    """Registrations made by a test are removed afterwards (names are reused across tests)."""
    before = set(custom._CUSTOM)
    yield
    for name in set(custom._CUSTOM) - before:
        del custom._CUSTOM[name]
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.data:
            MetadataCatalog.remove(name)


@pytest.fixture
def layouts(tmp_path):
    return make_layouts(tmp_path)


def _sentence(exc_info, cls=UserInputError) -> str:
    """The message of a raised user error: one sentence, on one line."""
    assert isinstance(exc_info.value, cls) and isinstance(exc_info.value, UserInputError)
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.endswith((".", "?")), msg
    return msg


# ---------------------------------------------------------------------------------------------
# The three layouts
# ---------------------------------------------------------------------------------------------
def test_sem_seg_description_registers_classes_synonyms_and_things(layouts):
    desc = layouts["sem_seg_train"]
    d = desc.parent
    assert register_dataset_description(str(desc)) == "my_sem_seg_train"
    assert dataset_vocabulary("my_sem_seg_train") == SYNONYMS
    assert thing_class_indices("my_sem_seg_train") == [0, 1, 2, 3]
    meta = MetadataCatalog.get("my_sem_seg_train")
    assert (meta.evaluator_type, meta.dataset_kind, meta.ignore_label) == ("sem_seg", "sem_seg", 255)
    assert meta.stuff_dataset_id_to_contiguous_id == {k: k for k in range(8)}
    assert meta.thing_classes == SYNONYMS[:4]
    assert meta.sem_seg_root == str(d / "train" / "panoptic_semseg")  # relative to the description
    assert meta.image_root == str(d / "train" / "images")
    dicts = DatasetCatalog.get("my_sem_seg_train")
    assert [r["image_id"] for r in dicts] == ["train_00000", "train_00001", "train_00002"]
    for r in dicts:
        stem = r["image_id"]
        assert r["file_name"] == str(d / "train" / "images" / f"{stem}.png")
        assert r["sem_seg_file_name"] == str(d / "train" / "panoptic_semseg" / f"{stem}.png")
        with Image.open(r["file_name"]) as im:
            assert (r["height"], r["width"]) == (im.height, im.width)
        assert r["sem_seg_num_classes"] == 8


def test_sem_seg_vocabulary_format_file_inline_list_and_ignore_label(layouts):
    d = layouts["sem_seg_train"].parent
    (d / "ids.txt").write_text("".join(f"{k}:{c}\n" for k, c in enumerate(SYNONYMS)))
    desc = write_description(d / "ids.yaml", name="ids_sem", layout="sem_seg", image_root="train/images",
                             label_root="train/panoptic_semseg", classes="ids.txt", ignore_label=254,
                             image_ext="png", things=[0, 3])
    register_dataset_description(str(desc))
    assert dataset_vocabulary("ids_sem") == SYNONYMS
    assert thing_class_indices("ids_sem") == [0, 3]
    assert MetadataCatalog.get("ids_sem").ignore_label == 254
    assert len(DatasetCatalog.get("ids_sem")) == 3

    inline = write_description(d / "inline.json", name="inline_sem", layout="sem_seg", image_root="train/images",
                               label_root="train/panoptic_semseg", classes=[" cat , kitten", "dog"] + SHAPES[2:])
    register_dataset_description(str(inline))
    assert dataset_vocabulary("inline_sem") == ["cat,kitten", "dog"] + SHAPES[2:]
    assert thing_class_indices("inline_sem") is None  # no things given: the demo guesses them

    (d / "ids.txt").write_text("".join(f"{k + 1}:{c}\n" for k, c in enumerate(SYNONYMS)))
    with pytest.raises(DatasetDescriptionError) as e:
        register_dataset_description(str(desc))
    assert _sentence(e) == (
        f"{d / 'ids.txt'}: class 'circle' has the id 1, but the classes of a sem_seg dataset are its label values "
        "0..7 in file order (expected 0); renumber the file or leave the ids out.")


def test_coco_panoptic_description_in_json_with_a_synonym_file(layouts):
    desc = layouts["coco_panoptic_train"]
    d = desc.parent
    shutil.copy(REPO_ROOT / "frozenseg" / "data" / "vocabularies" / "synthetic_shapes.txt", d / "shapes.txt")
    keys = json.loads(desc.read_text())
    write_description(desc, **keys, classes="shapes.txt")  # "id:name,synonym" with the json's category ids
    assert register_dataset_description(str(desc)) == "my_coco_panoptic_train"
    assert dataset_vocabulary("my_coco_panoptic_train") == [
        "circle,disc,round shape", "square,box shape", "triangle,triangular shape", "star,star shape",
        "sky,blue sky", "grass,lawn", "sand,beach", "water,sea"]
    meta = MetadataCatalog.get("my_coco_panoptic_train")
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.dataset_kind == "panoptic"
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2, 4: 3}
    assert meta.stuff_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 9)}
    assert meta.panoptic_json == str(d / "train" / "panoptic.json")
    dicts = DatasetCatalog.get("my_coco_panoptic_train")
    gt = json.loads((d / "train" / "panoptic.json").read_text())
    assert [r["image_id"] for r in dicts] == [1, 2, 3]
    for r, ann in zip(dicts, gt["annotations"]):
        assert r["pan_seg_file_name"] == str(d / "train" / "panoptic" / ann["file_name"])
        assert r["sem_seg_file_name"] == str(d / "train" / "panoptic_semseg" / ann["file_name"])
        assert r["sem_seg_num_classes"] == 8
        assert [(s["category_id"], s["isthing"]) for s in r["segments_info"]] == [
            (s["category_id"] - 1, s["category_id"] <= 4) for s in ann["segments_info"]]

    # without classes: the json's category names
    write_description(desc, **keys)
    register_dataset_description(str(desc))
    assert dataset_vocabulary("my_coco_panoptic_train") == SHAPES


def test_coco_instances_description_with_inline_synonyms(layouts):
    desc = layouts["coco_instances_train"]
    d = desc.parent
    assert register_dataset_description(str(desc)) == "my_coco_instances_train"
    assert dataset_vocabulary("my_coco_instances_train") == ["circle,disc", "square,box", "triangle", "star"]
    meta = MetadataCatalog.get("my_coco_instances_train")
    assert (meta.evaluator_type, meta.dataset_kind) == ("coco", "instances")
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2, 4: 3}
    assert meta.json_file == str(d / "train" / "instances.json")
    dicts = DatasetCatalog.get("my_coco_instances_train")
    gt = json.loads((d / "train" / "instances.json").read_text())
    assert len(dicts) == 3 and sum(len(r["annotations"]) for r in dicts) == len(gt["annotations"])
    assert sorted(a["category_id"] for r in dicts for a in r["annotations"]) == sorted(
        a["category_id"] - 1 for a in gt["annotations"])


def test_the_demo_vocabulary_option_takes_a_registered_dataset(layouts):
    """``--dataset-vocabulary NAME`` (load_vocabulary) gives the dataset's class strings, its
    thing classes and colours; an unknown name suggests the close one and the registration."""
    register_custom_datasets([str(layouts["sem_seg_val"]), str(layouts["coco_instances_val"])])
    vocab = load_vocabulary(dataset_vocabulary="my_sem_seg_val")
    assert vocab.class_names == SYNONYMS and vocab.thing_classes == [0, 1, 2, 3]
    assert vocab.source == "dataset my_sem_seg_val" and len(vocab.colors) == 8
    assert vocab.prompts[0] == ["circle", "disc"]
    inst = load_vocabulary(dataset_vocabulary="my_coco_instances_val")
    assert inst.class_names == ["circle,disc", "square,box", "triangle", "star"] and inst.thing_classes is None
    with pytest.raises(VocabularyError) as e:
        load_vocabulary(dataset_vocabulary="my_sem_seg_vl")
    assert _sentence(e) == (
        "--dataset-vocabulary 'my_sem_seg_vl' is not a registered dataset; did you mean my_sem_seg_val, "
        "ade20k_sem_seg_val, pascalvoc20_sem_seg_val? (your own dataset: register its description file with "
        "--register-dataset FILE or DATASETS.REGISTER).")


def test_config_key_and_command_line_flag_register_datasets(layouts, tmp_path, monkeypatch):
    from frozenseg.engine import default_argument_parser, setup_cfg
    from frozenseg.engine.setup import load_config

    d = layouts["sem_seg_train"].parent
    monkeypatch.chdir(d)  # DATASETS.REGISTER paths are relative to the working directory
    cfg = load_config(SHAPES_CONFIG, ["DATASETS.REGISTER", "('sem_seg_train.yaml', 'sem_seg_val.yaml')"])
    assert cfg.DATASETS.REGISTER == ("sem_seg_train.yaml", "sem_seg_val.yaml")
    assert {"my_sem_seg_train", "my_sem_seg_val"} <= set(DatasetCatalog.list())

    args = default_argument_parser().parse_args([
        "--config-file", SHAPES_CONFIG, "--register-dataset", str(layouts["coco_panoptic_train"]),
        "--register-dataset", str(layouts["coco_panoptic_val"]), "DATASETS.TRAIN", "('my_coco_panoptic_train',)",
        "DATASETS.TEST", "('my_coco_panoptic_val',)", "OUTPUT_DIR", str(tmp_path / "out")])
    cfg = setup_cfg(args)
    assert cfg.DATASETS.REGISTER == (str(layouts["coco_panoptic_train"]), str(layouts["coco_panoptic_val"]))
    assert dataset_vocabulary("my_coco_panoptic_val", cfg) == SHAPES

    with pytest.raises(ConfigValueError) as e:
        load_config(SHAPES_CONFIG, ["DATASETS.REGISTER", "('classes.txt',)"])
    assert _sentence(e) == ("DATASETS.REGISTER must be a list of dataset description files (.yaml, .yml or .json) "
                            "such as ('my_data.yaml',); got ('classes.txt',).")


def test_registering_again_replaces_and_names_stay_unique(layouts):
    desc = layouts["sem_seg_train"]
    d = desc.parent
    register_dataset_description(str(desc))
    (d / "classes.txt").write_text("\n".join(["circle,ball,sphere"] + SHAPES[1:]) + "\n")
    register_dataset_description(str(desc))  # the same file again: its edits take effect
    assert dataset_vocabulary("my_sem_seg_train") == ["circle,ball,sphere"] + SHAPES[1:]

    other = write_description(d / "other.yaml", **yaml.safe_load(desc.read_text()))
    with pytest.raises(DatasetDescriptionError) as e:
        register_dataset_description(str(other))
    assert _sentence(e) == (f"Dataset description {str(other)!r}: the name 'my_sem_seg_train' is already registered "
                            f"by {desc}; give each dataset its own name.")
    write_description(other, **dict(yaml.safe_load(desc.read_text()), name="coco_2017_val_panoptic"))
    with pytest.raises(DatasetDescriptionError) as e:
        register_dataset_description(str(other))
    assert _sentence(e) == (f"Dataset description {str(other)!r}: 'coco_2017_val_panoptic' is the name of a built-in "
                            "dataset; choose another name.")


# ---------------------------------------------------------------------------------------------
# One sentence per inconsistency: at registration
# ---------------------------------------------------------------------------------------------
def _sem(d: Path, **changes) -> Path:
    keys = dict(name="bad", layout="sem_seg", image_root="train/images", label_root="train/panoptic_semseg",
                classes="classes.txt")
    keys.update(changes)
    return write_description(d / "bad.yaml", **{k: v for k, v in keys.items() if v is not None})


REGISTRATION_ERRORS = {
    "missing key": (lambda d: _sem(d, label_root=None),
                    "Dataset description '{desc}' lacks the key 'label_root' (the folder of the label maps), which "
                    "the sem_seg layout needs; add it."),
    "unknown layout": (lambda d: _sem(d, layout="semseg"),
                       "Dataset description '{desc}' has the unknown layout 'semseg'; use one of sem_seg, "
                       "coco_panoptic, coco_instances (did you mean sem_seg?)."),
    "unknown key": (lambda d: _sem(d, label_rot="x"),
                    "Dataset description '{desc}' has the unknown key 'label_rot' (did you mean 'label_root'?); the "
                    "keys of the sem_seg layout are name, layout, image_root, label_root, classes, ignore_label, "
                    "things, image_ext, label_ext."),
    "missing image folder": (lambda d: _sem(d, image_root="train/imgs"),
                             "Dataset 'bad': the folder {d}/train/imgs (image_root of {desc}) does not exist; correct "
                             "image_root (a relative path is relative to the description file) or create the folder."),
    "missing label folder": (lambda d: _sem(d, label_root="train/labels"),
                             "Dataset 'bad': the folder {d}/train/labels (label_root of {desc}) does not exist; "
                             "correct label_root (a relative path is relative to the description file) or create the "
                             "folder."),
    "missing class file": (lambda d: _sem(d, classes="names.txt"),
                           "The class file {d}/names.txt (classes of {desc}) does not exist; create it with one class "
                           "per line, synonyms after commas ('cat,kitten'), or list the classes inline."),
    "empty class file": (lambda d: (d / "classes.txt").write_text("# nothing yet\n\n") and _sem(d),
                         "The class file {d}/classes.txt (classes of {desc}) lists no class; write one class per "
                         "line, synonyms after commas ('cat,kitten')."),
    "duplicated class": (lambda d: (d / "classes.txt").write_text("cat,kitten\ndog\nCat\n") and _sem(d),
                         "{d}/classes.txt: duplicate class 'Cat': class #3 ('Cat') repeats class #1 ('cat,kitten'); "
                         "merge their synonyms into one class."),
    "empty synonym": (lambda d: (d / "classes.txt").write_text("cat,,kitten\ndog\n") and _sem(d),
                      "{d}/classes.txt, class #1 ('cat,,kitten') has an empty synonym; separate the class name and "
                      "its synonyms by single commas, e.g. 'cat,kitten' (no empty class name or synonym)."),
    "ignore label is a class": (lambda d: _sem(d, ignore_label=3),
                                "Dataset description '{desc}': ignore_label 3 is the label of class 'star'; choose a "
                                "value outside the class ids 0..7 (255 by default)."),
    "unknown thing": (lambda d: _sem(d, things=["circle", "sqare"]),
                      "Dataset description '{desc}': things lists 'sqare', which is not a class name (did you mean "
                      "'square'?); use the first names of the classes (circle, square, triangle, star, sky, grass, "
                      "sand, water)."),
    "name with a space": (lambda d: _sem(d, name="my pets"),
                          "Dataset description '{desc}': name 'my pets' must be one word without spaces or ':' (e.g. "
                          "my_pets_train); rename it."),
    "not a mapping": (lambda d: (d / "bad.yaml").write_text("- name: x\n") and d / "bad.yaml",
                      "Dataset description '{desc}' must be a mapping of keys such as name, layout and image_root, "
                      "not list; see datasets/README.md, \"Your own dataset\"."),
    "invalid YAML": (lambda d: (d / "bad.yaml").write_text("name: [x\nlayout: sem_seg\n") and d / "bad.yaml",
                     "Dataset description '{desc}' is not valid YAML at line 2 (expected ',' or ']', but got ':'); "
                     "fix its syntax there (an unclosed bracket or quote, a tab for indentation)."),
    "invalid JSON": (lambda d: (d / "bad.json").write_text('{"name": "x",}') and d / "bad.json",
                     "Dataset description '{desc}' is not valid JSON at line 1, column 14 (Expecting property name "
                     "enclosed in double quotes); fix its syntax there."),
    "missing description": (lambda d: d / "nope.yaml",
                            "Dataset description '{desc}' does not exist; give the path of a YAML or JSON file "
                            "describing the dataset (datasets/README.md, \"Your own dataset\")."),
}


@pytest.mark.parametrize("case", list(REGISTRATION_ERRORS))
def test_a_bad_description_is_one_sentence_naming_the_file(layouts, case):
    d = layouts["sem_seg_train"].parent
    make, expected = REGISTRATION_ERRORS[case]
    desc = make(d)
    with pytest.raises(UserInputError) as e:
        register_dataset_description(str(desc))
    assert _sentence(e) == expected.format(d=d, desc=desc)
    assert "bad" not in DatasetCatalog


# ---------------------------------------------------------------------------------------------
# ... when the dataset is loaded, and when a label map is read
# ---------------------------------------------------------------------------------------------
def _resave(path: Path, fn) -> None:
    arr = np.array(Image.open(path))
    Image.fromarray(fn(arr)).save(path)


def test_a_label_map_of_another_size_is_named(layouts):
    register_dataset_description(str(layouts["sem_seg_train"]))
    label = layouts["sem_seg_train"].parent / "train" / "panoptic_semseg" / "train_00001.png"
    image = label.parent.parent / "images" / "train_00001.png"
    _resave(label, lambda a: a[:-4])
    with Image.open(image) as im:
        h, w = im.height, im.width
    with pytest.raises(AnnotationError) as e:
        DatasetCatalog.get("my_sem_seg_train")
    assert _sentence(e) == (f"Annotation {str(label)!r} is {h - 4}x{w} pixels but its image {image} is {h}x{w}; "
                            "re-create the annotation at the image's size.")


def test_a_label_map_without_image_is_named(layouts):
    register_dataset_description(str(layouts["sem_seg_train"]))
    d = layouts["sem_seg_train"].parent / "train"
    (d / "images" / "train_00002.png").unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        DatasetCatalog.get("my_sem_seg_train")
    assert _sentence(e) == (
        f"Dataset 'my_sem_seg_train': 1 label maps in {d / 'panoptic_semseg'} have no image in {d / 'images'} "
        f"(first: train_00002); to create it, correct the paths in {layouts['sem_seg_train']} or add the missing "
        "files.")


def test_a_label_outside_the_class_list_is_named_when_the_map_is_read(layouts):
    """Label values are checked lazily, when the training mapper or the evaluator reads the map."""
    from frozenseg.evaluation import SemSegEvaluator

    register_dataset_description(str(layouts["sem_seg_train"]))
    label = layouts["sem_seg_train"].parent / "train" / "panoptic_semseg" / "train_00000.png"
    _resave(label, lambda a: np.where(np.arange(a.shape[1])[None, :] < 3, np.uint8(9), a))
    records = DatasetCatalog.get("my_sem_seg_train")  # loading does not decode the label maps
    expected = (f"Annotation {str(label)!r} holds the label 9, outside the class ids 0..7 and the ignore label 255 "
                "of its dataset; correct the label map, or add the class to the dataset's class list.")
    mapper = MaskFormerSemanticDatasetMapper(True, min_size_train=(48,), max_size_train=96, crop_enabled=False)
    with pytest.raises(AnnotationError) as e:
        mapper(records[0])
    assert _sentence(e) == expected
    out = mapper(records[1])  # an intact map: mapped, the check key consumed
    assert "sem_seg_num_classes" not in out and int(out["sem_seg"].max()) in range(8)

    import torch

    evaluator = SemSegEvaluator("my_sem_seg_train", distributed=False)
    pred = {"sem_seg": torch.zeros(8, records[0]["height"], records[0]["width"])}
    with pytest.raises(AnnotationError) as e:
        evaluator.process([records[0]], [pred])
    assert _sentence(e) == expected
    plain = {k: v for k, v in records[0].items() if k != "sem_seg_num_classes"}  # a built-in dataset's dict
    evaluator.process([plain], [pred])  # warns and ignores the label, as before


def test_json_layout_inconsistencies_are_named(layouts):
    pan, inst = layouts["coco_panoptic_train"], layouts["coco_instances_train"]
    d = pan.parent / "train"
    gt = json.loads((d / "panoptic.json").read_text())
    register_custom_datasets([str(pan), str(inst)])

    (d / "images" / "train_00001.png").rename(d / "images" / "moved.png")  # a missing image
    with pytest.raises(DatasetNotFoundError) as e:
        DatasetCatalog.get("my_coco_panoptic_train")
    assert _sentence(e) == (f"Dataset 'my_coco_panoptic_train': image 'train_00001.png' of {d / 'panoptic.json'} is "
                            f"not under {d / 'images'}; to create it, correct the paths in {pan} or add the missing "
                            "files.")
    with pytest.raises(DatasetNotFoundError) as e:
        DatasetCatalog.get("my_coco_instances_train")
    assert _sentence(e) == (f"Image {d / 'images' / 'train_00001.png'} of {d / 'instances.json'} does not exist; add "
                            "it or correct its file_name in the json.")
    (d / "images" / "moved.png").rename(d / "images" / "train_00001.png")

    gt["images"][0]["height"] += 1  # a size the image does not have
    (d / "panoptic.json").write_text(json.dumps(gt))
    h, w = gt["images"][0]["height"] - 1, gt["images"][0]["width"]
    register_dataset_description(str(pan))
    with pytest.raises(AnnotationError) as e:
        DatasetCatalog.get("my_coco_panoptic_train")
    assert _sentence(e) == (f"Image {str(d / 'images' / 'train_00000.png')!r} is {h}x{w} pixels but "
                            f"{d / 'panoptic.json'} gives it {h + 1}x{w}; correct its height and width in the json.")
    gt["images"][0]["height"] -= 1

    gt["annotations"][1]["segments_info"][0]["category_id"] = 12  # a category the json does not list
    (d / "panoptic.json").write_text(json.dumps(gt))
    register_dataset_description(str(pan))
    with pytest.raises(AnnotationError) as e:
        dataset_vocabulary("my_coco_panoptic_train")
    assert _sentence(e) == (f"{d / 'panoptic.json'}: image 2 has an annotation of category 12, which is not in its "
                            "'categories' (ids 1, 2, 3, 4, 5, 6, 7, 8); correct the category id or add the category.")

    write_description(inst, **dict(yaml.safe_load(inst.read_text()), classes=["circle", "square"]))
    register_dataset_description(str(inst))
    with pytest.raises(DatasetDescriptionError) as e:
        DatasetCatalog.get("my_coco_instances_train")
    assert _sentence(e) == (f"{inst}: the class list has 2 classes but {d / 'instances.json'} has 4 categories; list "
                            "one class per category, in ascending category id order.")


def test_a_panoptic_png_of_another_size_is_named(layouts):
    pan = layouts["coco_panoptic_val"]
    png = pan.parent / "val" / "panoptic" / "val_00000.png"
    image = pan.parent / "val" / "images" / "val_00000.png"
    _resave(png, lambda a: a[:, :-2])
    register_dataset_description(str(pan))
    with Image.open(image) as im:
        h, w = im.height, im.width
    with pytest.raises(AnnotationError) as e:
        DatasetCatalog.get("my_coco_panoptic_val")
    assert _sentence(e) == (f"Annotation {str(png)!r} is {h}x{w - 2} pixels but its image {image} is {h}x{w}; "
                            "re-create the annotation at the image's size.")


# ---------------------------------------------------------------------------------------------
# ... and when a run's settings cannot use the dataset
# ---------------------------------------------------------------------------------------------
def _run_cfg(train: str, test: str, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(SHAPES_CONFIG)
    cfg.merge_from_list(["DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{test}',)", *opts])
    return cfg


def test_run_settings_that_cannot_use_the_dataset_are_refused(layouts):
    register_custom_datasets([str(p) for p in layouts.values()])
    sem, pan, inst = layouts["sem_seg_train"], layouts["coco_panoptic_val"], layouts["coco_instances_val"]
    cases = [
        (_run_cfg("my_sem_seg_train", "my_sem_seg_val"),
         f"INPUT.DATASET_MAPPER_NAME 'coco_panoptic_lsj' cannot read the sem_seg training dataset 'my_sem_seg_train' "
         f"({sem}); set INPUT.DATASET_MAPPER_NAME mask_former_semantic."),
        (_run_cfg("my_sem_seg_train", "my_sem_seg_val", "INPUT.DATASET_MAPPER_NAME", "mask_former_semantic",
                  "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "0"),
         f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE is 0 but the training dataset 'my_sem_seg_train' ({sem}) marks unlabelled "
         "pixels with 255; set MODEL.SEM_SEG_HEAD.IGNORE_VALUE 255."),
        (_run_cfg("my_coco_instances_train", "my_coco_instances_val", "INPUT.DATASET_MAPPER_NAME", "coco_instance_lsj"),
         f"The coco_instances test dataset 'my_coco_instances_val' ({inst}) is evaluated by mask AP, but "
         "MODEL.MASK_FORMER.TEST.INSTANCE_ON is False; set MODEL.MASK_FORMER.TEST.INSTANCE_ON True."),
        (_run_cfg("my_coco_panoptic_train", "my_coco_panoptic_val", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True"),
         f"The coco_panoptic test dataset 'my_coco_panoptic_val' ({pan}) has no instances json for "
         "MODEL.MASK_FORMER.TEST.INSTANCE_ON; set MODEL.MASK_FORMER.TEST.INSTANCE_ON False, or evaluate instances on "
         "a coco_instances dataset."),
    ]
    for cfg, expected in cases:
        with pytest.raises(ConfigValueError) as e:
            check_custom_dataset_config(cfg)
        assert _sentence(e) == expected
    # panoptic without semantic maps: semantic evaluation needs label_root
    keys = json.loads(pan.read_text())
    del keys["label_root"]
    write_description(pan, **keys)
    register_dataset_description(str(pan))
    with pytest.raises(ConfigValueError) as e:
        check_custom_dataset_config(_run_cfg("my_coco_panoptic_train", "my_coco_panoptic_val"))
    assert _sentence(e) == (
        f"The coco_panoptic test dataset 'my_coco_panoptic_val' ({pan}) has no semantic label maps for "
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON; set MODEL.MASK_FORMER.TEST.SEMANTIC_ON False, or add label_root to "
        f"{pan}.")
    check_custom_dataset_config(_run_cfg("my_coco_panoptic_train", "my_coco_panoptic_val",
                                         "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "False"))  # accepted
    # the settings the layouts need are accepted
    check_custom_dataset_config(_run_cfg("my_sem_seg_train", "my_sem_seg_val",
                                         "INPUT.DATASET_MAPPER_NAME", "mask_former_semantic"))
    check_custom_dataset_config(_run_cfg("my_coco_instances_train", "my_coco_instances_val",
                                         "INPUT.DATASET_MAPPER_NAME", "coco_instance_lsj",
                                         "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True"))
