"""The demo: vocabulary parsing, the predictor, and the CLI end to end on generated images with
the tiny random model (outputs: overlay, id PNG, segments JSON)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"
TINY = str(REPO / "configs/tiny/frozenseg_tiny_convnext.yaml")
# faster than the tiny config's defaults, same code paths
FAST_OPTS = ["SEED", "0", "MODEL.SAM_IMAGE_SIZE", "256", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128"]


def _load(name: str, path: Path):
    if str(DEMO) not in sys.path:
        sys.path.insert(0, str(DEMO))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


predictor_mod = _load("predictor", DEMO / "predictor.py")
demo_cli = _load("frozenseg_demo_cli", DEMO / "demo.py")
VocabularyArgumentError = predictor_mod.VocabularyArgumentError


# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# vocabulary parsing
# ---------------------------------------------------------------------------------------------
def test_parse_vocabulary_separators_and_whitespace():
    parse = predictor_mod.parse_vocabulary
    assert parse("cat,kitten;dog,puppy;grass") == ["cat,kitten", "dog,puppy", "grass"]
    assert parse("  cat , kitten ;dog,  puppy ; grass;") == ["cat,kitten", "dog,puppy", "grass"]
    assert parse("traffic light,stop light") == ["traffic light,stop light"]
    assert parse("cat,cat,kitten") == ["cat,kitten"]  # a repeated synonym is dropped


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("cat;;dog", "class #2 is empty"),
        (";cat", "class #1 is empty"),
        ("cat,,kitten;dog", "empty synonym"),
        ("cat,kitten;dog;Cat", "duplicate class 'Cat'"),
        ("dog,puppy;dog", "duplicate class 'dog'"),
    ],
)
def test_parse_vocabulary_errors(text, message):
    with pytest.raises(VocabularyArgumentError, match=message):
        predictor_mod.parse_vocabulary(text)


def test_load_vocabulary_sources(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# my classes\n3:cat,kitten\n7:grass\n")
    v = predictor_mod.load_vocabulary(vocabulary_file=str(f))
    assert v.class_names == ["cat,kitten", "grass"] and v.thing_classes == [0]  # grass is stuff
    v = predictor_mod.load_vocabulary(dataset_vocabulary="synthetic_shapes_val_panoptic")
    assert v.class_names[0].startswith("circle") and v.thing_classes == [0, 1, 2, 3]
    with pytest.raises(VocabularyArgumentError, match="not a registered dataset"):
        predictor_mod.load_vocabulary(dataset_vocabulary="no_such_dataset")
    with pytest.raises(VocabularyArgumentError, match="only one"):
        predictor_mod.load_vocabulary(vocabulary="cat", vocabulary_file=str(f))


def test_default_vocabulary_merges_and_dedupes():
    v = predictor_mod.default_vocabulary(include_lvis=False)
    firsts = [n.split(",")[0].lower() for n in v.class_names]
    assert len(firsts) == len(set(firsts))  # deduplicated by first synonym
    assert 133 < len(v) < 133 + 150  # COCO + the ADE20K classes COCO lacks
    assert firsts[0] == "person" and 0 in v.thing_classes
    assert firsts.index("sky") not in v.thing_classes


# ---------------------------------------------------------------------------------------------
# visualizer
# ---------------------------------------------------------------------------------------------
def test_visualizer_overlay_and_legend():
    from frozenseg.utils.visualizer import SegmentationVisualizer, VisSegment, class_color

    img = np.full((60, 80, 3), 100, np.uint8)
    ids = np.zeros((60, 80), np.int64)
    ids[10:40, 10:50] = 3
    vis = SegmentationVisualizer(alpha=0.5)
    out = vis.draw_segments(img, ids, [VisSegment(3, "cat", class_color(1))])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[0, 0] == 100).all() and not (out[25, 20] == 100).all()  # only the segment is tinted
    with_legend = vis.draw_legend(out, [("cat 50%", class_color(1))], title="classes")
    assert with_legend.shape[0] == 60 and with_legend.shape[1] > 80


# ---------------------------------------------------------------------------------------------
# end to end with the tiny model
# ---------------------------------------------------------------------------------------------
def _scene(h=48, w=64) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (110, 170, 235)
    img[h // 2 :] = (60, 150, 50)
    cv2.circle(img, (w // 3, h // 2), h // 4, (220, 40, 40), -1)
    return img


@pytest.fixture(scope="module")
def predictor():
    return predictor_mod.FrozenSegPredictor.from_config_file(
        TINY, opts=FAST_OPTS, vocabulary=["cat"], task="panoptic"
    )


def test_demo_cli_writes_all_outputs(predictor, tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_scene()).save(images / "scene.png")
    Image.fromarray(_scene()[:, :, 1]).save(images / "gray.png")  # grayscale input
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    vocab = "cat,kitten; dog,puppy ;grass"
    rc = demo_cli.main(
        ["--config-file", TINY, "--input", str(images), "--output", str(out), "--vocabulary", vocab,
         "--opts", *FAST_OPTS],
        predictor=predictor,
    )
    assert rc == 1  # the broken file is reported and skipped, the others are written
    logged = caplog.text  # the per-image summary: segments found and time
    assert "broken.jpg: skipped" in logged
    assert re.search(r"scene\.png: \d+ segments?.* in \d+\.\d\d s -> ", logged)
    for stem in ("scene", "gray"):
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert overlay.shape == (48, 64, 3)
        ids = cv2.imread(str(out / f"{stem}_ids.png"), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (48, 64)
        meta = json.loads((out / f"{stem}_segments.json").read_text())
        assert meta["task"] == "panoptic" and meta["classes"] == ["cat,kitten", "dog,puppy", "grass"]
        assert {s["id"] for s in meta["segments"]} == set(np.unique(ids).tolist()) - {0}
    assert not (out / "broken_overlay.png").exists()

    # semantic, single input written to a file name; legend panel; class ids with 255 = none
    rc = demo_cli.main(
        ["--config-file", TINY, "--input", str(images / "scene.png"), "--output", str(tmp_path / "sem.png"),
         "--task", "semantic", "--vocabulary", "sky;grass;ball,sphere"],
        predictor=predictor,
    )
    assert rc == 0
    overlay = np.asarray(Image.open(tmp_path / "sem.png"))
    assert overlay.shape[0] == 48 and overlay.shape[1] > 64
    ids = cv2.imread(str(tmp_path / "sem_ids.png"), cv2.IMREAD_UNCHANGED)
    meta = json.loads((tmp_path / "sem_segments.json").read_text())
    assert meta["none_value"] == 255 and set(np.unique(ids).tolist()) <= {0, 1, 2, 255}
    assert meta["segments"] and sum(s["area"] for s in meta["segments"]) == 48 * 64
    for s in meta["segments"]:
        assert s["class"] in ("sky", "grass", "ball") and 0 <= s["score"] <= 1
        x, y, w, h = s["bbox"]
        assert 0 <= x < x + w <= 64 and 0 <= y < y + h <= 48

    # instance task through the predictor API
    predictor.set_vocabulary(["cat,kitten", "dog"])
    predictor.set_task("instance", confidence_threshold=0.0)
    pred = predictor(_scene())
    assert pred.segments and all(s["class"] in ("cat", "dog") for s in pred.segments)
    scores = [s["score"] for s in pred.segments]
    assert scores == sorted(scores, reverse=True)
    paths = predictor.save(pred, str(tmp_path / "inst"), stem="x")
    assert all(Path(p).is_file() for p in paths.values())


def test_demo_video_and_usage_errors(predictor, tmp_path, monkeypatch):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    assert writer.isOpened()
    for _ in range(2):
        writer.write(_scene()[:, :, ::-1])
    writer.release()
    rc = demo_cli.main(
        ["--config-file", TINY, "--video-input", str(video), "--output", str(tmp_path / "v"),
         "--vocabulary", "cat;grass", "--task", "semantic"],
        predictor=predictor,
    )
    assert rc == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "clip_overlay.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()

    monkeypatch.setattr(demo_cli, "gui_available", lambda: False)
    assert demo_cli.main(["--config-file", TINY, "--webcam", "--vocabulary", "cat"], predictor=predictor) == 2
    assert demo_cli.main(["--config-file", TINY, "--input", str(tmp_path / "none*.png"), "--output",
                          str(tmp_path)], predictor=predictor) == 2
    assert demo_cli.main(["--config-file", TINY, "--input", str(video), "--vocabulary", "a;;b",
                          "--output", str(tmp_path)], predictor=predictor) == 2


def test_dataset_vocabulary_is_used_verbatim_with_the_benchmark_colours(predictor):
    """A benchmark vocabulary reaches the model exactly as registered (the release's strings:
    repeated display names in A-847, "window " with its space) and draws in the release's colours."""
    from frozenseg.data import MetadataCatalog

    v = predictor_mod.load_vocabulary(dataset_vocabulary="openvocab_ade20k_instance_val")
    assert v.class_names[1] == "window " and v.thing_classes is None
    assert v.colors is not None and len(v.colors) == 100  # generated: the release gives none here
    v = predictor_mod.load_vocabulary(dataset_vocabulary="openvocab_ade20k_panoptic_val")
    meta = MetadataCatalog.get("openvocab_ade20k_panoptic_val")
    assert v.colors[0] == (120, 120, 120) and v.colors == [tuple(c) for c in meta.stuff_colors]
    assert v.thing_classes == sorted(meta.thing_dataset_id_to_contiguous_id.values())
    a847 = predictor_mod.load_vocabulary(dataset_vocabulary="openvocab_ade20k_full_sem_seg_val")
    try:
        predictor.set_vocabulary(a847)  # "pot,flowerpot" and "pot": no duplicate-class error
        assert predictor.class_names == MetadataCatalog.get("openvocab_ade20k_full_sem_seg_val").stuff_classes
        predictor.set_vocabulary(v)
        predictor.set_task("semantic")
        pred = predictor(_scene())
        overlay = predictor.visualize(pred, legend=False)
        for s in pred.segments:  # a class's pixels blend the image with the release's colour
            assert predictor._class_color(s["category_id"]) == v.colors[s["category_id"]]
        assert overlay.shape[:2] == pred.ids.shape
    finally:
        predictor.set_task("panoptic")
        predictor.set_vocabulary(["cat"])
