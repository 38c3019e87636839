"""The web demo's service (frozenseg.apps.web_demo.WebDemo) without a browser: vocabularies,
uploads (resized, unreadable, not an image), tasks a model cannot do, the text-classifier cache
across requests, errors that leave it serving, the legend and the files to download."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from frozenseg.data.vocabulary import VocabularyError

from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.engine.predictor import SegmentationPredictor
from frozenseg.apps.web_demo import EMPTY_VOCABULARY, NO_IMAGE, TYPED, WebDemo, build_app, legend_html

from ..conftest import REPO_ROOT
from .test_predictor import FAST_OPTS, TINY, scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OVSEG_TINY = str(REPO_ROOT / "configs/tiny/ovseg_tiny_resnet.yaml")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    predictor = SegmentationPredictor.from_config_file(TINY, opts=FAST_OPTS, vocabulary=["object"], task="semantic")
    return WebDemo(predictor, max_side=100, benchmarks=["openvocab_ade20k_panoptic_val"],
                   work_dir=str(tmp_path_factory.mktemp("web_demo")))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(scene(48, 64)).save(path)
    return str(path)


def test_vocabulary_typed_or_benchmark(demo):
    vocab, notice = demo.vocabulary(" cat , kitten; dog ;", None)
    assert vocab.class_names == ["cat,kitten", "dog"] and notice == ""
    for empty in ("", "  ", None):
        with pytest.raises(VocabularyError) as e:
            demo.vocabulary(empty, TYPED)
        assert str(e.value) == EMPTY_VOCABULARY
    with pytest.raises(VocabularyError, match=r"^Vocabulary: class #2 is empty; give it a name"):
        demo.vocabulary("cat;;dog", TYPED)
    vocab, notice = demo.vocabulary("cat", "openvocab_ade20k_panoptic_val")
    assert vocab == load_vocabulary(dataset_vocabulary="openvocab_ade20k_panoptic_val")
    assert notice == "Vocabulary of openvocab_ade20k_panoptic_val (150 classes); the typed vocabulary is not used."


def test_segment_outputs_and_files(demo, image_file):
    steps = []
    r = demo.segment(image_file, "sky; grass; ball,sphere", TYPED, "semantic",
                     progress=lambda fraction, what: steps.append((fraction, what)))
    assert not r.error, r.message
    assert steps == [(0.05, "Reading the image"), (0.15, "Text classifier of 3 classes"), (0.3, "Segmenting"),
                     (0.85, "Drawing")]
    assert r.overlay.shape == (48, 64, 3) and r.overlay.dtype == np.uint8  # no legend panel in the image
    ids = cv2.imread(r.files[0], cv2.IMREAD_UNCHANGED)
    meta = json.loads(open(r.files[1]).read())
    assert r.files[0].endswith("scene_ids.png") and r.files[1].endswith("scene_segments.json")
    assert meta["image"] == "scene.png" and meta["task"] == "semantic" and ids.shape == (48, 64)
    assert meta["classes"] == ["sky", "grass", "ball,sphere"]
    for s in meta["segments"]:  # one table row per segment: id, class, score, area in %
        assert (f'<tr><td>{s["id"]}</td><td class="fs-class">{s["class"]}</td><td>{s["score"]:.4f}</td>'
                f'<td>{100 * s["area"] / (48 * 64):.2f}</td></tr>') in r.table
    assert r.message.endswith("(semantic, confidence threshold 0.00).")


def test_large_upload_is_resized_with_a_notice(demo, tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(scene(60, 300)).save(path)
    r = demo.segment(str(path), "sky; grass", TYPED, "panoptic")
    assert not r.error, r.message
    assert r.overlay.shape == (20, 100, 3)
    assert r.message.startswith("The image (300x60 pixels) was resized to 100x20 (the demo's --max-side 100);")
    assert cv2.imread(r.files[0], cv2.IMREAD_UNCHANGED).shape == (20, 100)


def test_bad_uploads_are_messages(demo, tmp_path):
    r = demo.segment(None, "cat", TYPED, "panoptic")
    assert (r.message, r.error) == (NO_IMAGE, True)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path in (text, empty):
        r = demo.segment(str(path), "cat", TYPED, "panoptic")
        assert r.error and r.overlay is None and r.files == []
        assert f"'{path.name}'" in r.message and str(tmp_path) not in r.message, r.message
    r = demo.segment(str(text), "", TYPED, "panoptic")  # the vocabulary is checked first
    assert r.message == EMPTY_VOCABULARY
    for name in ("zero\u200bwidth.png", "right\u202eto-left.png"):  # repr() escapes these characters
        odd = tmp_path / name
        odd.write_text("not an image")
        r = demo.segment(str(odd), "cat", TYPED, "panoptic")
        assert r.error and str(tmp_path) not in r.message and repr(str(tmp_path))[1:-1] not in r.message, r.message
        assert repr(name) in r.message


def test_text_classifier_is_computed_once_per_vocabulary(demo, image_file, monkeypatch):
    builder = demo.predictor.model.text_classifier_builder
    encoded: list[list[str]] = []
    original = builder._encode_synonyms
    monkeypatch.setattr(builder, "_encode_synonyms", lambda syns: encoded.append(list(syns)) or original(syns))
    calls = []
    original_set = demo.predictor.set_vocabulary
    monkeypatch.setattr(demo.predictor, "set_vocabulary", lambda v, *a: calls.append(v.class_names) or original_set(v, *a))
    for vocab in ("zebra; okapi", "zebra; okapi", "giraffe", "zebra; okapi"):
        assert not demo.segment(image_file, vocab, TYPED, "panoptic").error
    assert encoded == [["zebra", "okapi"], ["giraffe"]]  # the third request for A: from memory
    assert calls == [["zebra", "okapi"], ["giraffe"], ["zebra", "okapi"]]  # set only on a change


def test_unexpected_errors_are_messages_and_it_keeps_serving(demo, image_file, monkeypatch, caplog):
    def broken(image):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(type(demo.predictor), "__call__", lambda self, image: broken(image))
    r = demo.segment(image_file, "cat", TYPED, "panoptic")
    assert r.error and r.message.startswith("Segmenting this image failed (RuntimeError: boom); the server log")
    assert "Traceback" in caplog.text  # the details are in the server's log
    monkeypatch.undo()
    assert not demo.segment(image_file, "cat", TYPED, "panoptic").error


def test_request_over_the_memory_budget_is_refused_then_a_normal_one_runs(demo, image_file, tmp_path):
    """The estimate is checked before any work: nothing is segmented, nothing is written."""
    big = tmp_path / "big.png"
    Image.fromarray(scene(72, 96)).save(big)  # within max_side 100: not resized
    small_need = demo.predictor.estimate_memory(48, 64)
    big_need = demo.predictor.estimate_memory(72, 96)
    assert small_need < big_need
    before, budget = len(demo._results), demo.memory_budget
    demo.memory_budget = (small_need + big_need) // 2
    try:
        refused = demo.segment(str(big), "cat; grass", TYPED, "panoptic")
        assert refused.error and refused.overlay is None and len(demo._results) == before
        assert refused.message.startswith("This 96x72 image needs about ")
        assert "more than this demo's budget of" in refused.message and "--memory-budget" in refused.message
        assert not demo.segment(image_file, "cat; grass", TYPED, "panoptic").error
    finally:
        demo.memory_budget = budget


def test_estimate_does_not_grow_with_the_classes_and_grows_with_the_pixels(demo):
    p = demo.predictor
    p.set_task("semantic")
    one = p.estimate_memory(1200, 1600)
    p.set_vocabulary([f"class {i}" for i in range(300)])
    try:
        assert p.estimate_memory(1200, 1600) == one
        assert p.estimate_memory(2400, 3200) > 3 * one // 2
    finally:
        p.set_vocabulary(["object"])


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 9663676416 bytes."),
                                   MemoryError()])
def test_allocation_failure_is_that_requests_message_and_it_keeps_serving(demo, image_file, monkeypatch, error):
    def fail(self, image):
        raise error

    monkeypatch.setattr(type(demo.predictor), "__call__", fail)
    r = demo.segment(image_file, "cat", TYPED, "panoptic")
    assert r.error and r.message == ("The model ran out of memory on this image; try a smaller image (or restart "
                                     "the demo with a --max-side below 100).")
    monkeypatch.undo()
    assert not demo.segment(image_file, "cat", TYPED, "panoptic").error


def test_semantic_only_model_explains_the_other_tasks(image_file, tmp_path):
    predictor = SegmentationPredictor.from_config_file(OVSEG_TINY, opts=["SEED", "0"], vocabulary=["cat"],
                                                       task="semantic")
    assert predictor.supported_tasks == ("semantic",)
    demo = WebDemo(predictor, benchmarks=[], work_dir=str(tmp_path))
    for task in ("panoptic", "instance"):
        r = demo.segment(image_file, "cat; dog", TYPED, task)
        assert r.error and r.message == f"This model (OVSeg) has no {task} output; choose semantic."
    assert not demo.segment(image_file, "cat; dog", TYPED, "semantic").error


@pytest.mark.slow
def test_legend_lists_the_vocabulary_and_visible_shares(demo, image_file):
    pred = demo.predictor
    pred.set_vocabulary(load_vocabulary("cat; dog; zebra"))
    pred.set_task("instance", 0.0)
    p = pred(image_file)
    html = legend_html(p)
    found = {s["class"] for s in p.segments}
    assert html.count('class="fs-found"') == len(found) and html.count('class="fs-absent"') == 3 - len(found)
    shares = [float(x.split("%")[0]) for x in html.split('class="fs-area">')[1:] if x[0].isdigit()]
    assert sum(shares) <= 100.05  # visible pixels: overlapping instances are not counted twice
    pred.set_vocabulary(load_vocabulary(dataset_vocabulary="openvocab_ade20k_panoptic_val"))
    pred.set_task("semantic")
    html = legend_html(pred(image_file))
    assert "fs-absent" not in html and "other classes not found." in html


def test_page_runs_one_request_at_a_time_with_progress(demo):
    app = build_app(demo, task="instance")
    segment = [f for f in app.fns.values() if f.name == "run"]
    assert len(segment) == 1 and segment[0].concurrency_limit == 1 and segment[0].tracks_progress
    assert len(segment[0].inputs) == 5 and len(segment[0].outputs) == 5
