"""The web demo's service (frozenseg.apps.web_demo.WebDemo) without a browser: vocabularies,
uploads (resized, unreadable, not an image), tasks a model cannot do, the text-classifier cache
across requests and the request's time, errors that leave it serving, the legend, the table and
the overlay's labels (one unit each), the page's title and help for each model, and the files to
download; and demo/app.py's command line: released weights by name (fetched from a local HTTP
server into the cache), the explicit tiny random model, the usage error without a model, and the
bundled examples."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import time

import cv2
import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from frozenseg.checkpoint import zoo
from frozenseg.checkpoint.zoo import RELEASED_WEIGHTS, WeightsEntry
from frozenseg.data.vocabulary import VocabularyError, parse_cli_vocabulary
from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.engine.predictor import TASKS, Prediction, SegmentationPredictor
from frozenseg.engine.setup import load_config
from frozenseg.modeling.build import build_model
from frozenseg.utils.visualizer import SegmentationVisualizer
from frozenseg.apps.web_demo import (
    AREA_HEADER,
    EMPTY_VOCABULARY,
    NO_IMAGE,
    RANDOM_TINY_MODEL,
    SCORE_HEADER,
    SCROLL_TO_RESULTS_JS,
    TYPED,
    WebDemo,
    build_app,
    draw_overlay,
    legend_html,
    segments_table_html,
)

from ..conftest import REPO_ROOT, restored_loggers
from ..test_weights_zoo import WeightsServer, saved
from .test_predictor import FAST_OPTS, TINY, scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OVSEG_TINY = str(REPO_ROOT / "configs/tiny/ovseg_tiny_resnet.yaml")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    text_cache = str(tmp_path_factory.mktemp("text_classifier"))  # not the user's cache
    predictor = SegmentationPredictor.from_config_file(TINY, opts=[*FAST_OPTS, "MODEL.FROZEN_SEG.TEXT_CACHE_DIR", text_cache],
                                                       vocabulary=["object"], task="semantic")
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
    for s in meta["segments"]:  # one table row per segment: id, class, score (0-1, as in the JSON), area in %
        assert (f'<tr><td>{s["id"]}</td><td class="fs-class">{s["class"]}</td><td>{s["score"]:.4f}</td>'
                f'<td>{100 * s["area"] / (48 * 64):.2f}</td></tr>') in r.table
    assert f"<th>{SCORE_HEADER}</th><th>{AREA_HEADER}</th>" in r.table
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


TIMING = re.compile(r" in (\d+\.\d\d) s: text classifier (?:(\d+\.\d\d) s|reused) \+ segmentation "
                    r"(\d+\.\d\d) s(?:, reused the image features)? \(panoptic, confidence threshold 0\.00\)\.$")


def test_message_times_the_whole_request_text_classifier_included(demo, image_file, monkeypatch):
    """A new vocabulary's text classifier (slowed to 0.4 s here) is part of the time reported,
    split from the segmentation; the same vocabulary again says it was reused."""
    original = demo.predictor.set_vocabulary

    def slow(vocab, *args):
        time.sleep(0.4)
        return original(vocab, *args)

    monkeypatch.setattr(demo.predictor, "set_vocabulary", slow)
    r = demo.segment(image_file, "heron; egret", TYPED, "panoptic")
    assert not r.error, r.message
    total, text, seg = (float(x) for x in TIMING.search(r.message).groups())
    model_seconds = json.loads(open(r.files[1]).read())["seconds"]  # the model's time alone
    assert text >= 0.4 and total >= text and abs(total - (text + seg)) <= 0.011
    assert model_seconds <= seg + 0.005 and total - model_seconds >= 0.4  # the model's time alone left it out
    again = demo.segment(image_file, "heron; egret", TYPED, "panoptic")
    m = TIMING.search(again.message)
    assert m and m.group(2) is None and "text classifier reused + segmentation" in again.message
    assert m.group(1) == m.group(3)  # nothing but segmentation


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


@pytest.fixture(scope="module")
def ovseg_demo(tmp_path_factory):
    predictor = SegmentationPredictor.from_config_file(OVSEG_TINY, opts=["SEED", "0"], vocabulary=["cat"],
                                                       task="semantic")
    return WebDemo(predictor, benchmarks=[], work_dir=str(tmp_path_factory.mktemp("ovseg_web_demo")))


def test_semantic_only_model_explains_the_other_tasks(ovseg_demo, image_file):
    demo = ovseg_demo
    assert demo.predictor.supported_tasks == ("semantic",)
    for task in ("panoptic", "instance"):
        r = demo.segment(image_file, "cat; dog", TYPED, task)
        assert r.error and r.message == f"This model (OVSeg) has no {task} output; choose semantic."
    assert not demo.segment(image_file, "cat; dog", TYPED, "semantic").error


def _page_texts(app: gr.Blocks) -> str:
    """The page's fixed texts: title, Markdown and HTML, and the fields' hints and placeholders."""
    texts = [app.title]
    for b in app.blocks.values():
        if isinstance(b, (gr.Markdown, gr.HTML)) and isinstance(b.value, str):
            texts.append(b.value)
        if isinstance(b, gr.Textbox):
            texts += [b.info or "", b.placeholder or ""]
    return "\n".join(texts)


def test_page_title_and_help_follow_the_model(demo, ovseg_demo, image_file):
    frozenseg = _page_texts(build_app(demo))
    assert build_app(demo).title == "FrozenSeg open-vocabulary segmentation"
    assert "## FrozenSeg: open-vocabulary segmentation" in frozenseg and "synonyms by" in frozenseg
    assert "Random weights (no <code>MODEL.WEIGHTS</code>): results are meaningless" in frozenseg

    ovseg_app = build_app(ovseg_demo)
    ovseg = _page_texts(ovseg_app)
    assert ovseg_app.title == "OVSeg open-vocabulary segmentation"
    assert "## OVSeg: open-vocabulary segmentation" in ovseg and "FrozenSeg" not in ovseg
    assert "synonym" not in ovseg and "each class is one prompt, as typed" in ovseg
    # ... and the service takes the typed classes as the model does: verbatim, commas included,
    # and a repeated vocabulary does not recompute the text classifier
    vocab, _ = ovseg_demo.vocabulary("a cat, sleeping; dog", TYPED)
    assert vocab.class_names == ["a cat, sleeping", "dog"] and vocab.literal
    assert not ovseg_demo.segment(image_file, "a cat, sleeping; dog", TYPED, "semantic").error
    again = ovseg_demo.segment(image_file, "a cat, sleeping; dog", TYPED, "semantic")
    assert "text classifier reused" in again.message, again.message


def _prediction(task: str = "panoptic") -> Prediction:
    """A 40x40 prediction: cat (400 pixels, score 0.8734) and zebra (300 pixels, 0.5); dog not found."""
    ids = np.zeros((40, 40), np.int32)
    ids[:10] = 1
    ids[10:18, :] = 2
    ids[18:20, :10] = 2
    segments = [
        {"id": 1, "category_id": 0, "class": "cat", "class_name": "cat,kitten", "isthing": True, "score": 0.8734,
         "area": 400, "bbox": [0, 0, 40, 10]},
        {"id": 2, "category_id": 2, "class": "zebra", "class_name": "zebra", "isthing": True, "score": 0.5,
         "area": 340, "bbox": [0, 10, 40, 10]},
    ]
    return Prediction(task=task, image=np.full((40, 40, 3), 128, np.uint8), ids=ids, none_value=0,
                      segments=segments, class_names=["cat,kitten", "dog", "zebra"], seconds=0.1)


def test_legend_table_and_overlay_each_write_one_unit():
    """Scores are 0-1 values everywhere (table, overlay labels); "%" is only ever a share of the
    image, and says so; classes not found get no swatch (they read as unchecked boxes)."""
    pred = _prediction()
    legend = legend_html(pred)
    assert re.findall(r'<span class="fs-class">(\w+)</span> <span class="fs-area">([^<]*)</span>', legend) == [
        ("cat", "25.0% of image"), ("zebra", "21.2% of image")]
    assert legend.count('class="fs-swatch"') == 2  # the found classes only
    assert '<p class="fs-absent">Not found: <span class="fs-absent-class">dog</span>.</p>' in legend
    assert "cat,kitten" in legend_html(pred, literal=True)  # a literal class string is its own name

    table = segments_table_html(pred)
    assert re.findall(r"<th>([^<]*)</th>", table) == ["id", "class", "score (0\u20131)", "area (% of image)"]
    assert '<td>0.8734</td><td>25.00</td>' in table and '<td>0.5000</td><td>21.25</td>' in table
    assert '<div id="fs-segments-scroll">' in table  # scrolls sideways rather than being cut

    labels = []
    visualizer = SegmentationVisualizer()
    visualizer._put_label = lambda canvas, text, *args: labels.append(text)
    overlay = draw_overlay(pred, visualizer)
    assert overlay.shape == (40, 40, 3) and labels == ["cat 0.87", "zebra 0.50"]  # not "87%"
    labels.clear()
    draw_overlay(_prediction("semantic"), visualizer)
    assert labels == ["cat", "zebra"]


@pytest.mark.slow
def test_legend_lists_the_vocabulary_and_visible_shares(demo, image_file):
    pred = demo.predictor
    pred.set_vocabulary(load_vocabulary("cat; dog; zebra"))
    pred.set_task("instance", 0.0)
    p = pred(image_file)
    html = legend_html(p)
    found = {s["class"] for s in p.segments}
    assert html.count('class="fs-found"') == len(found) and html.count('class="fs-absent-class"') == 3 - len(found)
    shares = re.findall(r'class="fs-area">(\d+\.\d)% of image', html)
    assert len(shares) == len(found)
    assert sum(map(float, shares)) <= 100.05  # visible pixels: overlapping instances are not counted twice
    pred.set_vocabulary(load_vocabulary(dataset_vocabulary="openvocab_ade20k_panoptic_val"))
    pred.set_task("semantic")
    html = legend_html(pred(image_file))
    assert "fs-absent" not in html and "other classes not found." in html


def test_page_runs_one_request_at_a_time_with_progress(demo):
    """One request at a time, one progress bar (on the overlay, not on each of the five outputs),
    and the results scrolled into view in the browser when the request is done."""
    app = build_app(demo, task="instance")
    segment = [f for f in app.fns.values() if f.name == "run"]
    assert len(segment) == 1 and segment[0].concurrency_limit == 1 and segment[0].tracks_progress
    assert len(segment[0].inputs) == 5 and len(segment[0].outputs) == 5
    overlay = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "fs-overlay")
    assert segment[0].show_progress == "full" and segment[0].show_progress_on == [overlay]
    scroll = [f for f in app.fns.values() if f.js == SCROLL_TO_RESULTS_JS]
    assert len(scroll) == 1 and scroll[0].fn is None and scroll[0].trigger_after == segment[0]._id
    assert 'getElementById("fs-results")' in SCROLL_TO_RESULTS_JS
    # the results column comes before the examples in the page (the order of a narrow screen)
    ids = [getattr(b, "elem_id", None) for b in app.blocks.values()]
    assert ids.index("fs-inputs") < ids.index("fs-results")


# -- demo/app.py: choosing the model --------------------------------------------------------------
def _app_cli():
    spec = importlib.util.spec_from_file_location("frozenseg_web_demo_app", REPO_ROOT / "demo" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def app_cli(monkeypatch, tmp_path):
    """demo/app.py as a module whose ``serve`` records its arguments instead of serving, with an
    empty project cache (``FROZENSEG_CACHE``); the loggers and the SIGTERM handler its ``main``
    sets are restored afterwards."""
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    mod = _app_cli()
    served: list[dict] = []
    monkeypatch.setattr(mod, "serve", lambda demo, **kwargs: served.append({"demo": demo, **kwargs}))
    mod.served = served
    sigterm = signal.getsignal(signal.SIGTERM)
    with restored_loggers(("frozenseg", "frozenseg.demo")):
        yield mod
    signal.signal(signal.SIGTERM, sigterm)


#: Quick tiny-model settings for demo/app.py in this process (one thread, the allocator untouched).
APP_OPTS = [*FAST_OPTS, "MODEL.CPU_THREADS", "1", "MODEL.CPU_REUSE_FREED_MEMORY", "False"]


@pytest.fixture
def released_tiny(tmp_path, monkeypatch):
    """A released name ``tiny_frozenseg`` (the tiny FrozenSeg's config; its trainable weights, one
    tensor set to 0.125) whose file a local HTTP server on 127.0.0.1 serves through
    ``FROZENSEG_WEIGHTS_URL``, and an empty cache. Yields (server, the marked key, cached path)."""
    server = WeightsServer()
    state = build_model(load_config(TINY, FAST_OPTS)).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(("backbone.clip_model.", "sam."))}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[key] = torch.full_like(state[key], 0.125)
    server.files["tiny_frozenseg.pth"] = saved({"model": state})
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_frozenseg", WeightsEntry(
        "tiny_frozenseg", "Tiny FrozenSeg (a test entry)", "model", "tiny_frozenseg.pth",
        ("https://weights.invalid/tiny_frozenseg.pth",), config_file="configs/tiny/frozenseg_tiny_convnext.yaml"))
    monkeypatch.setenv(zoo.URL_ENV, server.base)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    yield server, key, tmp_path / "cache" / "weights" / "tiny_frozenseg.pth"
    server.close()


def test_app_model_name_downloads_once_and_serves_those_weights(app_cli, released_tiny, capsys):
    """``demo/app.py --model NAME``: the name's config, MODEL.WEIGHTS NAME fetched into the cache
    (logged with its path), the weights loaded, the page naming them with no random-model notice;
    a second start takes the file from the cache without a request."""
    server, key, cached = released_tiny
    assert app_cli.main(["--model", "tiny_frozenseg", "--port", "7999", "--opts", *APP_OPTS]) == 0
    log = capsys.readouterr().out
    (served,) = app_cli.served
    demo = served["demo"]
    cfg = demo.predictor.cfg
    assert cfg.MODEL.WEIGHTS == "tiny_frozenseg" and cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME == "tiny_convnext_clip"
    assert served["port"] == 7999 and served["examples"] == app_cli.EXAMPLES
    assert cached.is_file() and [path for path, _ in server.requests] == ["/tiny_frozenseg.pth"]
    assert f"MODEL.WEIGHTS tiny_frozenseg: {cached}" in log  # the name, resolved to the cache
    assert torch.all(demo.predictor.model.state_dict()[key] == 0.125)  # the served file's weights
    assert demo.random_weights_notice == "" and not demo.tiny_random_model
    page = _page_texts(build_app(demo))
    assert "weights `tiny_frozenseg`" in page and "fs-random" not in page and "meaningless" not in page

    assert app_cli.main(["--model", "tiny_frozenseg", "--opts", *APP_OPTS]) == 0
    assert len(server.requests) == 1  # from the cache
    assert torch.all(app_cli.served[1]["demo"].predictor.model.state_dict()[key] == 0.125)


def test_app_model_name_offline_is_one_line(app_cli, tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv(zoo.URL_ENV, closed)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    assert app_cli.main(["--model", "frozenseg_convnext_large", "--opts", "MODEL.DEVICE", "cpu"]) == 2
    errors = [ln for ln in capsys.readouterr().out.splitlines() if " ERROR]: " in ln]
    assert len(errors) == 1 and "Cannot start the web demo: Cannot download frozenseg_convnext_large.pth" in errors[0]
    assert str(tmp_path / "cache" / "weights" / "frozenseg_convnext_large.pth") in errors[0]
    assert app_cli.served == []


def test_app_without_a_model_is_a_usage_error_naming_the_choices(app_cli, capsys):
    with pytest.raises(SystemExit) as e:
        app_cli.main([])
    assert e.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
    assert "--model NAME" in line and "--tiny-random-model" in line
    for name in ("frozenseg_convnext_large", "frozenseg_rn50x64", "ovseg_swinb_vitl14", "ovseg_r101c_vitb16"):
        assert name in line
    assert "sam_vit_b" not in line  # weights without a config are no choice
    for argv in (["--tiny-random-model", "--config-file", TINY], ["--tiny-random-model", "--opts", "MODEL.WEIGHTS", "x.pth"],
                 ["--tiny-random-model", "--model", "frozenseg_convnext_large"]):
        with pytest.raises(SystemExit) as e:
            app_cli.main(argv)
        assert e.value.code == 2
    assert app_cli.served == []


def test_app_tiny_random_model_is_labelled_on_the_page_and_in_the_log(app_cli, capsys):
    assert app_cli.main(["--tiny-random-model", "--opts", *APP_OPTS]) == 0
    log = capsys.readouterr().out
    demo = app_cli.served[0]["demo"]
    assert demo.tiny_random_model and demo.predictor.cfg.MODEL.WEIGHTS == ""
    assert demo.predictor.cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME == "tiny_convnext_clip"
    warnings = [ln for ln in log.splitlines() if "frozenseg.demo WARNING" in ln]
    assert len(warnings) == 1 and "Random tiny test model: results are meaningless." in warnings[0]
    app = build_app(demo)
    assert app.title == f"FrozenSeg open-vocabulary segmentation ({RANDOM_TINY_MODEL})"
    assert ('<div id="fs-random" class="fs-warning">Random tiny test model: results are meaningless.'
            in _page_texts(app))


def test_bundled_examples_are_large_small_files_that_match_their_vocabulary():
    examples = _app_cli().EXAMPLES
    assert len(examples) == 2
    for path, vocabulary, task in examples:
        with Image.open(path) as im:
            assert im.width >= 640 and im.height >= 480, (path, im.size)
        assert os.path.getsize(path) < 150_000, path
        assert parse_cli_vocabulary(vocabulary) and task in TASKS


def test_a_new_vocabulary_for_the_same_image_reuses_its_features(demo, tmp_path, monkeypatch):
    """The second request on the same image (another vocabulary, task and threshold) runs no
    vocabulary-free part of the model and says so; its result equals a fresh run's."""
    path = tmp_path / "again.png"
    Image.fromarray(scene(40, 56)).save(path)
    demo.predictor.image_cache.clear()
    first = demo.segment(str(path), "sky; grass", TYPED, "panoptic")
    assert not first.error and "reused the image features" not in first.message
    model = demo.predictor.model
    calls = []
    original = type(model).encode_images
    monkeypatch.setattr(type(model), "encode_images", lambda self, x: calls.append(1) or original(self, x))
    second = demo.segment(str(path), "sky; grass; red disc", TYPED, "semantic", 0.2)
    assert not second.error and calls == []
    assert ", reused the image features (semantic, confidence threshold 0.20)." in second.message
    demo.predictor.image_cache.clear()
    fresh = demo.segment(str(path), "sky; grass; red disc", TYPED, "semantic", 0.2)
    assert calls == [1] and "reused the image features" not in fresh.message
    assert np.array_equal(second.overlay, fresh.overlay) and second.table == fresh.table
