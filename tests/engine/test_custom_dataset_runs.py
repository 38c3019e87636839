"""Your own dataset end to end with ``train_net.py``: register each layout from its description
file (``--register-dataset``), train a few iterations and evaluate, fine-tune from the written
checkpoint, evaluate it again with ``--eval-only`` from the run's saved config; the demo's
``--dataset-vocabulary`` with the registered name; and every inconsistency ending the command
line in one sentence on stderr, exit status 2, no traceback."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ..conftest import REPO_ROOT
from ..data.test_custom_datasets import SHAPES, SYNONYMS, forget_custom_datasets, make_layouts  # noqa: F401
from .conftest import SHAPES_CONFIG

PREFIX = "train_net.py: error: "

# 64 px images, 2 images per step, 2 iterations, no intermediate checkpoint
TINY = ["MODEL.DEVICE", "cpu", "INPUT.IMAGE_SIZE", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
        "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0", "SEED", "7", "MODEL.SAM_IMAGE_SIZE", "64",
        "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256"]

#: what each layout needs besides the shapes config (which trains panoptic with LSJ crops and
#: evaluates semantic + panoptic output)
LAYOUT_OPTS = {
    "sem_seg": ["INPUT.DATASET_MAPPER_NAME", "mask_former_semantic", "INPUT.MIN_SIZE_TRAIN", "(64,)",
                "INPUT.MAX_SIZE_TRAIN", "96", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False"],
    "coco_panoptic": [],
    "coco_instances": ["INPUT.DATASET_MAPPER_NAME", "coco_instance_lsj", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4",
                       "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True", "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "False",
                       "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False"],
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _argv(layouts, layout, out, *extra, flags=()):
    """``train_net.py`` arguments: ``flags`` (``--eval-only``), the two descriptions of ``layout``,
    the tiny settings and the layout's, then the ``extra`` overrides."""
    return ["--config-file", str(SHAPES_CONFIG), *flags,
            "--register-dataset", str(layouts[f"{layout}_train"]), "--register-dataset", str(layouts[f"{layout}_val"]),
            *TINY, *LAYOUT_OPTS[layout], "DATASETS.TRAIN", f"('my_{layout}_train',)",
            "DATASETS.TEST", f"('my_{layout}_val',)", "OUTPUT_DIR", str(out), *extra]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in a)


def forget_custom_datasets_now(name: str) -> None:
    """Unregister ``name`` (as a fresh process would not know it)."""
    from frozenseg.data import DatasetCatalog, MetadataCatalog
    from frozenseg.data import custom

    custom._CUSTOM.pop(name, None)
    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.data:
            catalog.remove(name)


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUT_OPTS))
def test_train_finetune_and_evaluate_a_registered_dataset(layout, tmp_path):
    import train_net
    from frozenseg.engine import DefaultTrainer, default_argument_parser

    layouts = make_layouts(tmp_path / "data", size=64, num_train=4, num_val=2)

    # 1. train from scratch, evaluated at the end
    run1 = tmp_path / "run1"
    res1 = train_net.cli(_argv(layouts, layout, run1))
    if layout == "coco_instances":  # AP per category of the ground-truth json, by its names
        assert set(res1) == {"segm"}
        assert [k for k in res1["segm"] if k.startswith("AP-")] == [f"AP-{c}" for c in SHAPES[:4]]
    else:
        assert set(res1) == ({"sem_seg"} if layout == "sem_seg" else {"sem_seg", "panoptic_seg"})
        classes = SYNONYMS if layout == "sem_seg" else SHAPES  # the class file's synonyms / the json's names
        assert [k for k in res1["sem_seg"] if k.startswith("IoU-")] == [f"IoU-{c}" for c in classes]
        assert 0.0 <= res1["sem_seg"]["mIoU"] <= 100.0
    ckpt = torch.load(run1 / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 1 and ckpt["data_state"]["samples_consumed"] == 4
    saved = yaml.safe_load((run1 / "config.yaml").read_text())
    assert saved["DATASETS"]["REGISTER"] == [str(layouts[f"{layout}_train"]), str(layouts[f"{layout}_val"])]
    on_disk = json.loads((run1 / "inference" / f"my_{layout}_val" / "results.json").read_text())
    assert on_disk.keys() == res1.keys()

    # 2. fine-tune: MODEL.WEIGHTS initialises the model, training starts at iteration 0
    run2 = tmp_path / "run2"
    weights = str(run1 / "model_final.pth")
    args = default_argument_parser().parse_args(_argv(layouts, layout, run2, "MODEL.WEIGHTS", weights))
    trainer = DefaultTrainer(train_net.setup(args))
    trainer.resume_or_load(resume=False)
    assert trainer.start_iter == 0
    state = trainer.unwrapped_model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ckpt["model"].items())  # every tensor from the checkpoint
    res2 = trainer.train()
    assert res2.keys() == res1.keys()
    tuned = torch.load(run2 / "model_final.pth", weights_only=True)["model"]
    key = "sem_seg_head.predictor.query_feat.weight"
    assert not torch.equal(tuned[key], ckpt["model"][key])  # trained further

    # 3. evaluate the fine-tuned weights from the run's saved config alone (it registers the datasets)
    for name in (f"my_{layout}_train", f"my_{layout}_val"):
        forget_custom_datasets_now(name)
    res3 = train_net.cli(["--config-file", str(run2 / "config.yaml"), "--eval-only",
                          "MODEL.WEIGHTS", str(run2 / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "run3")])
    assert res3.keys() == res2.keys() and all(_same(res3[t], res2[t]) for t in res2)


# ---------------------------------------------------------------------------------------------
# The demo's vocabulary option
# ---------------------------------------------------------------------------------------------
def _demo_cli():
    spec = importlib.util.spec_from_file_location("frozenseg_demo_cli_custom", REPO_ROOT / "demo" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_uses_the_vocabulary_of_a_registered_dataset(tmp_path, caplog):
    from .test_predictor import FAST_OPTS, TINY as TINY_CONFIG, tiny_predictor

    layouts = make_layouts(tmp_path / "data")
    demo = _demo_cli()
    predictor = tiny_predictor()
    image = layouts["sem_seg_val"].parent / "val" / "images" / "val_00000.png"
    out = tmp_path / "out"
    rc = demo.main(["--config-file", TINY_CONFIG, "--input", str(image), "--output", str(out),
                    "--register-dataset", str(layouts["sem_seg_val"]), "--dataset-vocabulary", "my_sem_seg_val",
                    "--task", "semantic", "--opts", *FAST_OPTS], predictor=predictor)
    assert rc == 0
    meta = json.loads((out / "val_00000_segments.json").read_text())
    assert meta["task"] == "semantic" and meta["classes"] == SYNONYMS
    assert f"Vocabulary: 8 classes from dataset my_sem_seg_val" in caplog.text

    bad = layouts["sem_seg_val"].parent / "bad.yaml"
    bad.write_text("name: bad\nlayout: sem_seg\nimage_root: val/images\n")
    caplog.clear()
    rc = demo.main(["--config-file", TINY_CONFIG, "--input", str(image), "--output", str(out),
                    "--register-dataset", str(bad), "--dataset-vocabulary", "bad"], predictor=predictor)
    assert rc == 2
    assert (f"Dataset description {str(bad)!r} lacks the key 'label_root' (the folder of the label maps), which "
            "the sem_seg layout needs; add it.") in caplog.text


# ---------------------------------------------------------------------------------------------
# One sentence per inconsistency from the command line
# ---------------------------------------------------------------------------------------------
def _resave(path: Path, fn) -> None:
    Image.fromarray(fn(np.array(Image.open(path)))).save(path)


def _drop_key(path: Path, key: str) -> Path:
    keys = yaml.safe_load(path.read_text())
    del keys[key]
    path.write_text(yaml.safe_dump(keys))
    return path


def _label_9(layouts):
    """Every training label map holds 9 (which one is read first depends on the seed)."""
    labels = sorted((layouts["sem_seg_train"].parent / "train" / "panoptic_semseg").glob("*.png"))
    for label in labels:
        _resave(label, lambda a: np.where(a == 255, a, np.uint8(9)))
    return ("sem_seg", [], [f"Annotation {str(label)!r} holds the label 9, outside the class ids 0..7 and the ignore "
                            "label 255 of its dataset; correct the label map, or add the class to the dataset's class "
                            "list." for label in labels])


def _small_label(layouts):
    label = layouts["sem_seg_val"].parent / "val" / "panoptic_semseg" / "val_00001.png"
    image = label.parent.parent / "images" / "val_00001.png"
    with Image.open(image) as im:
        h, w = im.height, im.width
    _resave(label, lambda a: a[:, : w // 2])
    return ("sem_seg", ["--eval-only"], f"Annotation {str(label)!r} is {h}x{w // 2} pixels but its image {image} is "
                                        f"{h}x{w}; re-create the annotation at the image's size.")


def _moved_image(layouts):
    d = layouts["coco_panoptic_val"].parent / "val"
    (d / "images" / "val_00000.png").unlink()
    return ("coco_panoptic", ["--eval-only"],
            f"Dataset 'my_coco_panoptic_val': image 'val_00000.png' of {d / 'panoptic.json'} is not under "
            f"{d / 'images'}; to create it, correct the paths in {layouts['coco_panoptic_val']} or add the missing "
            "files.")


def _moved_instance_image(layouts):
    d = layouts["coco_instances_train"].parent / "train"
    (d / "images" / "train_00001.png").unlink()
    return ("coco_instances", [], f"Image {d / 'images' / 'train_00001.png'} of {d / 'instances.json'} does not "
                                  "exist; add it or correct its file_name in the json.")


def _missing_key(layouts):
    desc = _drop_key(layouts["sem_seg_train"], "label_root")
    return ("sem_seg", [], f"Dataset description {str(desc)!r} lacks the key 'label_root' (the folder of the label "
                           "maps), which the sem_seg layout needs; add it.")


def _unknown_layout(layouts):
    desc = layouts["sem_seg_val"]
    desc.write_text(desc.read_text().replace("layout: sem_seg", "layout: semantic"))
    return ("sem_seg", ["--eval-only"], f"Dataset description {str(desc)!r} has the unknown layout 'semantic'; use "
                                        "one of sem_seg, coco_panoptic, coco_instances.")


def _missing_folder(layouts):
    d = layouts["sem_seg_train"].parent
    (d / "train" / "panoptic_semseg").rename(d / "train" / "labels")
    return ("sem_seg", [], f"Dataset 'my_sem_seg_train': the folder {d / 'train' / 'panoptic_semseg'} (label_root of "
                           f"{layouts['sem_seg_train']}) does not exist; correct label_root (a relative path is "
                           "relative to the description file) or create the folder.")


def _duplicate_class(layouts):
    classes = layouts["sem_seg_train"].parent / "classes.txt"
    classes.write_text(classes.read_text().replace("water", "sky,blue"))
    return ("sem_seg", [], f"{classes}: duplicate class 'sky': class #8 ('sky,blue') repeats class #5 ('sky'); merge "
                           "their synonyms into one class.")


def _wrong_mapper(layouts):
    return ("sem_seg", ["INPUT.DATASET_MAPPER_NAME", "coco_panoptic_lsj"],
            "INPUT.DATASET_MAPPER_NAME 'coco_panoptic_lsj' cannot read the sem_seg training dataset "
            f"'my_sem_seg_train' ({layouts['sem_seg_train']}); set INPUT.DATASET_MAPPER_NAME mask_former_semantic.")


def _num_classes(layouts):
    return ("coco_instances", ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "8"],
            "The training vocabulary has 4 classes but MODEL.SEM_SEG_HEAD.NUM_CLASSES is 8; set "
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES 4.")


CLI_CASES = {f.__name__[1:]: f for f in (
    _missing_key, _unknown_layout, _missing_folder, _duplicate_class, _wrong_mapper, _num_classes,
    _label_9, _small_label, _moved_image, _moved_instance_image)}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_an_inconsistent_dataset_ends_the_command_line_in_one_sentence(case, tmp_path, capsys):
    """In process: ``train_net.cli`` raises SystemExit(2) after writing the one sentence to
    stderr (the subprocess test below shows that nothing else reaches stderr)."""
    import train_net

    layouts = make_layouts(tmp_path / "data", size=64, num_train=4, num_val=2)
    layout, extra, expected = CLI_CASES[case](layouts)
    flags = [x for x in extra if x.startswith("--")]
    overrides = [x for x in extra if not x.startswith("--")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train_net.cli(_argv(layouts, layout, tmp_path / "out", *overrides, flags=flags))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith(PREFIX)]
    others = [ln for ln in err.splitlines() if not ln.startswith((PREFIX, " ")) and "Warning" not in ln]
    assert len(errors) == 1 and others == [], err  # besides the sentence: only a library's warnings
    assert errors[0][len(PREFIX):] in (expected if isinstance(expected, list) else [expected])
    assert not (tmp_path / "out" / "model_final.pth").exists()


@pytest.mark.slow
def test_a_bad_label_in_a_loader_worker_ends_the_process_in_one_sentence(tmp_path):
    """A fresh ``python train_net.py`` whose label map holds an id outside the class list, read in
    a data-loader worker: exit status 2, the sentence alone on stderr, no traceback."""
    layouts = make_layouts(tmp_path / "data", size=64, num_train=4, num_val=2)
    _, _, expected = _label_9(layouts)
    argv = _argv(layouts, "sem_seg", tmp_path / "out", "DATALOADER.NUM_WORKERS", "1")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    env.pop("FROZENSEG_DEBUG", None)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "train_net.py"), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING:")]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0][len(PREFIX):] in expected, proc.stderr
    assert lines[0].startswith(PREFIX)
