"""The web demo: a Gradio page over :class:`~frozenseg.engine.predictor.SegmentationPredictor`.

A person uploads an image (or picks an example), types a vocabulary in the command-line syntax
(``cat,kitten; dog; grass``, :func:`~frozenseg.data.vocabulary.parse_cli_vocabulary`) or picks a
benchmark's (:func:`~frozenseg.data.vocabulary.load_vocabulary`), chooses panoptic / semantic /
instance, and gets the labelled overlay (:class:`~frozenseg.utils.visualizer.SegmentationVisualizer`),
a legend, a table of segments (class, score from 0 to 1, area in % of the image) and the id PNG and
segments JSON (:func:`~frozenseg.utils.prediction_io.write_prediction`) to download. Scores read
the same everywhere on the page (a 0-1 value, as in the JSON: ``cat 0.87`` on the overlay), and
``%`` only ever means a share of the image.

Two layers:

* :class:`WebDemo`, the service (no Gradio in it): one predictor built once, one request at a
  time (a lock), the vocabulary's text classifier set only when the vocabulary changes (and the
  model's text-classifier builder keeps every vocabulary it has seen in memory, so switching back
  costs nothing), uploads larger than ``max_side`` resized with a notice, and every user error
  (empty vocabulary, unreadable file, not an image, a task the model has no output for) turned
  into one sentence for the page. Unexpected errors are logged with their traceback on the server
  and reported in the page in one line; the server keeps serving either way.
* :func:`build_app` / :func:`serve`, the page: Gradio Blocks whose requests go through Gradio's
  queue with one worker (``concurrency_limit=1``), with one progress bar (on the overlay) while a
  request runs. Its title and vocabulary help follow the model (:func:`model_family`; a model with
  ``literal_vocabulary`` takes each class string as one prompt, so the page does not speak of
  synonyms). The results column comes first below the inputs when the screen is too narrow for two
  columns (the examples follow it), and a finished request scrolls it into view when it is not.

The command line is ``demo/app.py``; ``docs/demo.md`` documents it.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import gradio as gr
import numpy as np
import torch

from ..data.builtin import dataset_vocabulary
from ..data.catalog import DatasetCatalog
from ..data.vocabulary import Vocabulary, VocabularyError, parse_cli_vocabulary, split_synonyms
from ..data.vocabulary_sources import load_vocabulary
from ..utils.errors import UserInputError, is_out_of_memory
from ..utils.image_io import read_image
from ..utils.prediction_io import write_prediction
from ..utils.visualizer import SegmentationVisualizer, class_color
from ..engine.predictor import DEFAULT_CONFIDENCE, TASKS, Prediction, SegmentationPredictor
from ..modeling.contract import SegmentationModel

__all__ = [
    "MAX_SIDE", "DemoResult", "WebDemo", "available_memory", "default_memory_budget", "benchmark_vocabularies",
    "model_family", "legend_html", "segments_table_html", "draw_overlay", "build_app", "serve",
]

logger = logging.getLogger(__name__)

GIB = 2**30
#: Share of the machine's available memory a request may use by default.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``); None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_memory_budget() -> int:
    """:data:`MEMORY_SHARE` of :func:`available_memory` now (8 GiB where it is unknown)."""
    available = available_memory()
    return int(MEMORY_SHARE * available) if available else 8 * GIB


#: Longest image side (pixels) the page segments; larger uploads are resized to it (with a notice).
MAX_SIDE = 1600
#: Vocabularies of at most this many classes list their classes not found in the legend too.
LEGEND_ALL_CLASSES = 24
#: Result folders (id PNG, segments JSON) kept on disk; older ones are deleted.
KEEP_RESULTS = 32
#: Gradio's copies of uploads and results older than this (seconds) are deleted, hourly.
CACHE_MAX_AGE_S = 3600
#: The benchmark dropdown's entry for "use the typed vocabulary".
TYPED = "(the typed vocabulary)"
EMPTY_VOCABULARY = "Type a vocabulary (e.g. cat,kitten; dog; grass) or pick a benchmark vocabulary."
NO_IMAGE = "Upload an image or pick an example first."
#: What the page and the server log say about the tiny random test model (``--tiny-random-model``).
RANDOM_TINY_MODEL = "random tiny test model: results are meaningless"
#: The table's headers of the score (0 to 1, as on the overlay) and the area (as in the legend).
SCORE_HEADER = "score (0\u20131)"
AREA_HEADER = "area (% of image)"

#: A progress callback: (fraction done in [0, 1], what is being done).
Progress = Callable[[float, str], None]


def benchmark_vocabularies(cfg=None) -> list[str]:
    """The registered evaluation datasets (names with ``_val``) whose vocabulary loads, sorted."""
    names = []
    for name in sorted(DatasetCatalog.list()):
        if "_val" not in name:
            continue
        try:
            dataset_vocabulary(name, cfg)
        except UserInputError as e:  # e.g. class names that are not shipped
            logger.debug("Benchmark vocabulary %s is not offered: %s", name, e)
            continue
        names.append(name)
    return names


def model_family(model: torch.nn.Module) -> str:
    """The model's name for the page: its meta-architecture class, or for a variant of one (a
    subclass, such as OVSeg's demo mode ``OVSegDEMO``) the model it varies (``OVSeg``)."""
    for cls in type(model).__mro__:
        if SegmentationModel in cls.__bases__:
            return cls.__name__
    return type(model).__name__


@dataclass
class DemoResult:
    """What the page shows for one request.

    ``overlay``: (H, W, 3) uint8 RGB labelled overlay, or None after an error. ``legend`` and
    ``table``: HTML. ``files``: the id PNG and the segments JSON. ``message``: a notice (a resized
    upload, a vocabulary choice) or the error, one sentence each; ``error`` tells which.
    """

    overlay: np.ndarray | None = None
    legend: str = ""
    table: str = ""
    files: list[str] = field(default_factory=list)
    message: str = ""
    error: bool = False


def _no_progress(fraction: float, desc: str) -> None:
    """The default :data:`Progress`: nothing to show."""


def _without_server_path(message: str, path: str) -> str:
    """``message`` with the server's path of an upload replaced by the file's own name, however
    the message spells it (as is, or quoted by ``repr``, which escapes characters such as U+200B);
    a message that would still show the server's folder becomes a generic sentence."""
    name = os.path.basename(path)
    for server, own in ((repr(path), repr(name)), (path, name)):
        message = message.replace(server, own)
    folder = os.path.dirname(path)
    if folder and (folder in message or repr(folder)[1:-1] in message):
        return f"Cannot read the uploaded file {name!r}: it is not an image this demo can read."
    return message


class WebDemo:
    """The web demo's service: segment one uploaded image per request with a shared predictor.

    Args:
        predictor: the model, built once by the caller.
        max_side: uploads whose longer side exceeds it (pixels) are resized to it.
        benchmarks: the benchmark vocabularies offered (default :func:`benchmark_vocabularies`).
        work_dir: where result files are written (default: a temporary folder removed with the
            service).
        memory_budget: bytes a request may need (:meth:`SegmentationPredictor.estimate_memory
            <frozenseg.engine.predictor.SegmentationPredictor.estimate_memory>`); a request
            estimated above it is refused in one sentence before any work. Default:
            :func:`default_memory_budget`.
        tiny_random_model: the predictor is the tiny random test model (``demo/app.py
            --tiny-random-model``): the page says so (:data:`RANDOM_TINY_MODEL`).
    """

    def __init__(self, predictor: SegmentationPredictor, *, max_side: int = MAX_SIDE,
                 benchmarks: Sequence[str] | None = None, work_dir: str | None = None,
                 memory_budget: int | None = None, tiny_random_model: bool = False):
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels, got {max_side}.")
        self.predictor = predictor
        self.max_side = int(max_side)
        self.tiny_random_model = bool(tiny_random_model)
        self.memory_budget = default_memory_budget() if memory_budget is None else int(memory_budget)
        self.benchmarks = list(benchmark_vocabularies(predictor.cfg) if benchmarks is None else benchmarks)
        if work_dir is None:
            work_dir = tempfile.mkdtemp(prefix="frozenseg_web_")
            weakref.finalize(self, shutil.rmtree, work_dir, ignore_errors=True)
        self.work_dir = work_dir
        self._results: deque[str] = deque()
        self._lock = threading.Lock()
        self.visualizer = SegmentationVisualizer()

    @property
    def model_name(self) -> str:
        """The model's name on the page (:func:`model_family`): ``FrozenSeg``, ``OVSeg``..."""
        return model_family(self.predictor.model)

    @property
    def random_weights_notice(self) -> str:
        """The page's notice when the model's trained parts are random (the tiny test model, or
        no ``MODEL.WEIGHTS``), else ""."""
        if self.tiny_random_model:
            return (f"{RANDOM_TINY_MODEL[0].upper()}{RANDOM_TINY_MODEL[1:]}. It has no trained weights and "
                    "only shows how the page works; start the demo with --model NAME (e.g. "
                    "frozenseg_convnext_large) for real segmentations.")
        if not self.predictor.cfg.MODEL.WEIGHTS:
            return ("Random weights (no MODEL.WEIGHTS): results are meaningless; the segments show the output "
                    "format, not what a trained model finds.")
        return ""

    # -- inputs ---------------------------------------------------------------------------------
    def vocabulary(self, text: str | None, benchmark: str | None = None) -> tuple[Vocabulary, str]:
        """The vocabulary of a request and a notice: ``benchmark`` (a registered dataset name)
        when given, else the typed ``text`` (``"cat,kitten; dog; grass"``). Raises
        :class:`~frozenseg.data.vocabulary.VocabularyError` (one sentence) when neither works."""
        text = (text or "").strip()
        literal = self.predictor.literal
        if benchmark and benchmark != TYPED:
            vocab = load_vocabulary(dataset_vocabulary=benchmark, cfg=self.predictor.cfg, literal=literal)
            notice = f"Vocabulary of {benchmark} ({len(vocab)} classes)"
            return vocab, notice + ("; the typed vocabulary is not used." if text else ".")
        if not text:
            raise VocabularyError(EMPTY_VOCABULARY)
        return load_vocabulary(parse_cli_vocabulary(text, literal=literal, source="Vocabulary"), literal=literal), ""

    def read(self, path: str | None) -> tuple[np.ndarray, str]:
        """The (H, W, 3) uint8 RGB image of an uploaded file, at most ``max_side`` pixels on its
        longer side, and a notice when it was resized. Raises
        :class:`~frozenseg.utils.errors.UserInputError` naming the file's own name (not the
        server's temporary path) when it is missing, unreadable or not an image."""
        if not path:
            raise UserInputError(NO_IMAGE)
        try:
            image = read_image(path)
        except UserInputError as e:
            raise UserInputError(_without_server_path(str(e), path)) from None
        h, w = image.shape[:2]
        if max(h, w) <= self.max_side:
            return image, ""
        scale = self.max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image, (f"The image ({w}x{h} pixels) was resized to {size[0]}x{size[1]} "
                       f"(the demo's --max-side {self.max_side}); the results are at that size.")

    # -- one request ----------------------------------------------------------------------------
    def segment(self, path: str | None, vocabulary_text: str | None, benchmark: str | None,
                task: str, confidence_threshold: float | None = None,
                progress: Progress = _no_progress) -> DemoResult:
        """Segment the image file ``path`` for the page; never raises for a bad request.

        Args:
            path: the uploaded file.
            vocabulary_text, benchmark: see :meth:`vocabulary`.
            task: ``"panoptic"``, ``"semantic"`` or ``"instance"``.
            confidence_threshold: drop segments scoring below it (None: the task's default,
                :data:`~frozenseg.engine.predictor.DEFAULT_CONFIDENCE`).
            progress: called with (fraction done, step) as the request advances.

        The message ends with the request's whole time, split into the text classifier (computed
        when the vocabulary changed, else "reused") and the rest (reading, segmenting, drawing),
        which says "reused the image features" when the image was segmented before (the
        predictor's image cache: only classification and post-processing ran):
        ``... in 37.02 s: text classifier 26.05 s + segmentation 10.97 s (panoptic, confidence
        threshold 0.00).``
        """
        try:
            with self._lock:
                return self._segment(path, vocabulary_text, benchmark, task, confidence_threshold, progress)
        except UserInputError as e:
            return DemoResult(message=str(e), error=True)
        except Exception as e:  # noqa: BLE001 - the service's boundary: log it, tell the page, go on
            if is_out_of_memory(e):  # this request alone: what it allocated is freed on return
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                logger.warning("Request ran out of memory: %s", (str(e).splitlines() or [""])[0])
                return DemoResult(message=(
                    f"The model ran out of memory on this image; try a smaller image (or restart "
                    f"the demo with a --max-side below {self.max_side})."), error=True)
            logger.exception("Request failed")
            first_line = (str(e).splitlines() or [""])[0]
            return DemoResult(message=(
                f"Segmenting this image failed ({type(e).__name__}: {first_line}); the server log "
                "has the details, and the demo keeps serving."), error=True)

    def _segment(self, path, vocabulary_text, benchmark, task, confidence_threshold,
                 progress: Progress) -> DemoResult:
        t0 = time.perf_counter()
        p = self.predictor
        if task not in TASKS:
            raise UserInputError(f"Choose a task among {', '.join(TASKS)}.")
        if task not in p.supported_tasks:
            raise UserInputError(
                f"This model ({type(p.model).__name__}) has no {task} output; choose "
                f"{' or '.join(p.supported_tasks)}.")
        vocab, vocab_notice = self.vocabulary(vocabulary_text, benchmark)
        progress(0.05, "Reading the image")
        image, resize_notice = self.read(path)
        p.set_task(task, confidence_threshold)
        self.check_memory(image.shape[0], image.shape[1])
        text_s = None
        if vocab != p.vocabulary:
            progress(0.15, f"Text classifier of {len(vocab)} classes")
            t = time.perf_counter()
            p.set_vocabulary(vocab)
            text_s = time.perf_counter() - t
        progress(0.3, "Segmenting")
        pred = p(image)
        pred.source = os.path.basename(path)
        progress(0.85, "Drawing")
        overlay = draw_overlay(pred, self.visualizer)
        paths = write_prediction(pred, self._result_dir(), overlay=overlay,
                                 stem=os.path.splitext(pred.source)[0] or "image")
        total_s = time.perf_counter() - t0
        text = "text classifier reused" if text_s is None else f"text classifier {text_s:.2f} s"
        notices = [n for n in (resize_notice, vocab_notice) if n]
        reused = ", reused the image features" if pred.reused_image_features else ""
        notices.append(f"{pred.summary()} in {total_s:.2f} s: {text} + segmentation "
                       f"{total_s - (text_s or 0.0):.2f} s{reused} ({task}, confidence threshold "
                       f"{p.confidence_threshold:.2f}).")
        return DemoResult(overlay, legend_html(pred, literal=p.literal), segments_table_html(pred),
                          [paths["ids"], paths["segments"]], " ".join(notices))

    def check_memory(self, height: int, width: int) -> None:
        """Refuse (:class:`~frozenseg.utils.errors.UserInputError`, one sentence) an image of
        ``height`` x ``width`` pixels whose estimated memory exceeds :attr:`memory_budget`."""
        need = self.predictor.estimate_memory(height, width)
        if need > self.memory_budget:
            raise UserInputError(
                f"This {width}x{height} image needs about {need / GIB:.1f} GiB of memory for "
                f"{self.predictor.task} segmentation, more than this demo's budget of "
                f"{self.memory_budget / GIB:.1f} GiB; try a smaller image (or restart the demo with "
                "a lower --max-side or a larger --memory-budget).")

    def _result_dir(self) -> str:
        """A new folder for one request's files; the oldest beyond :data:`KEEP_RESULTS` go."""
        d = os.path.join(self.work_dir, uuid.uuid4().hex)
        os.makedirs(d)
        self._results.append(d)
        while len(self._results) > KEEP_RESULTS:
            shutil.rmtree(self._results.popleft(), ignore_errors=True)
        return d


# -- HTML of the legend and the table, the overlay ------------------------------------------------
def _class_colors(pred: Prediction) -> Callable[[int], tuple[int, int, int]]:
    """The overlay's colour of each class index (the vocabulary's own, else :func:`class_color`)."""
    return (lambda k: tuple(pred.class_colors[k])) if pred.class_colors else class_color


def _swatch(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color)
    return f'<span class="fs-swatch" style="background: rgb({r}, {g}, {b})"></span>'


def _area(pixels: float, total: float) -> str:
    """A share of the image, as the page writes it everywhere: ``12.3% of image``."""
    return f"{100.0 * pixels / total:.1f}% of image"


def legend_html(pred: Prediction, literal: bool = False) -> str:
    """The legend: each class found (colour, name, share of the image as ``12.3% of image``,
    number of segments when more than one), in vocabulary order; then, for a vocabulary of at
    most :data:`LEGEND_ALL_CLASSES` classes, one grey line naming the classes not found (no
    swatch), for a longer one their number. A class's share counts the pixels the id map gives it
    (where instances overlap, the pixels of the one shown), so the shares add up to at most
    100 %. Class names are the first synonym, or the whole string for a ``literal`` vocabulary."""
    color_of = _class_colors(pred)
    total = float(pred.ids.size)
    pixels = np.bincount(pred.ids.ravel())  # pixels per id-map value
    area: dict[int, int] = {}
    count: dict[int, int] = {}
    for s in pred.segments:
        k = s["category_id"]
        area[k] = area.get(k, 0) + int(pixels[s["id"]] if s["id"] < len(pixels) else 0)
        count[k] = count.get(k, 0) + 1
    show_absent = len(pred.class_names) <= LEGEND_ALL_CLASSES
    rows, absent_names = [], []
    for k, name in enumerate(pred.class_names):
        label = html.escape((name if literal else split_synonyms(name)[0]).strip())
        if k in area:
            n = f", {count[k]} segments" if count[k] > 1 else ""
            rows.append(f'<li class="fs-found">{_swatch(color_of(k))}<span class="fs-class">{label}</span>'
                        f' <span class="fs-area">{_area(area[k], total)}{n}</span></li>')
        elif show_absent:
            absent_names.append(f'<span class="fs-absent-class">{label}</span>')
    absent = len(pred.class_names) - len(area)
    if absent_names:
        more = f'<p class="fs-absent">Not found: {", ".join(absent_names)}.</p>'
    else:
        more = "" if show_absent or not absent else f'<p class="fs-more">{absent} other classes not found.</p>'
    found = f'<ul>{"".join(rows)}</ul>' if rows else '<p class="fs-none">No class found.</p>'
    return f'<div id="fs-legend"><h4>Classes found</h4>{found}{more}</div>'


def segments_table_html(pred: Prediction) -> str:
    """The table of segments: id (as in the id PNG), class, score (0 to 1, as in the segments
    JSON; blank when the task has none), area in % of the image; in the prediction's order. The
    table sits in a box that scrolls sideways when the screen is narrower than the table."""
    total = float(pred.ids.size)
    rows = []
    for s in pred.segments:
        score = "" if s["score"] is None else f"{s['score']:.4f}"
        rows.append(f'<tr><td>{s["id"]}</td><td class="fs-class">{html.escape(s["class"])}</td>'
                    f'<td>{score}</td><td>{100.0 * s["area"] / total:.2f}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="4">No segment; lower the confidence threshold or change the vocabulary.</td></tr>')
    return ('<div id="fs-segments-scroll"><table id="fs-segments"><thead><tr><th>id</th><th>class</th>'
            f'<th>{html.escape(SCORE_HEADER)}</th><th>{html.escape(AREA_HEADER)}</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def draw_overlay(pred: Prediction, visualizer: SegmentationVisualizer | None = None) -> np.ndarray:
    """The page's overlay: the command-line demo's (same colours, fill and outlines; no legend
    panel), with each scored segment labelled ``class 0.87``, its score as a 0-1 value like the
    table's (the command-line overlay writes ``87%``, which on this page would read as a share of
    the image). Semantic segments are labelled with their class alone."""
    visualizer = visualizer or SegmentationVisualizer()
    if pred.task != "semantic":
        pred = dataclasses.replace(pred, segments=[
            s if s["score"] is None else {**s, "class": f"{s['class']} {s['score']:.2f}", "score": None}
            for s in pred.segments])
    return visualizer.draw_prediction(pred, legend=False)


def message_html(text: str, error: bool = False) -> str:
    """A notice (or an error) for the page, escaped."""
    if not text:
        return ""
    kind = "fs-error" if error else "fs-notice"
    return f'<div id="fs-status" class="{kind}">{html.escape(text)}</div>'


# -- the page -------------------------------------------------------------------------------------
CSS = """
#fs-overlay img {width: 100%; height: 100%; object-fit: contain}
.fs-swatch {display: inline-block; width: 1em; height: 1em; margin-right: 0.4em; border: 1px solid #555;
            vertical-align: middle}
#fs-legend h4 {margin: 0 0 0.3em 0; font-size: 0.95em}
#fs-legend ul {list-style: none; padding-left: 0; margin: 0}
#fs-legend li {margin: 0.15em 0}
#fs-legend .fs-area {color: #555; margin-left: 0.3em}
#fs-legend .fs-absent, #fs-legend .fs-more, #fs-legend .fs-none {color: #666; margin: 0.4em 0 0 0}
#fs-segments-scroll {max-width: 100%; overflow-x: auto}
#fs-segments {border-collapse: collapse; width: 100%}
#fs-segments th, #fs-segments td {border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left;
                                  white-space: nowrap}
#fs-segments td.fs-class {white-space: normal}
#fs-details {flex-wrap: wrap !important}
#fs-legend-box {flex: 1 1 200px !important}
#fs-table-box {flex: 2 1 360px !important}
.fs-error {background: #fdecea; color: #8a1c14; border: 1px solid #f5c2bd; padding: 0.6em; border-radius: 6px}
.fs-notice {background: #eef5fd; color: #123c69; border: 1px solid #c6dcf5; padding: 0.6em; border-radius: 6px}
.fs-warning {background: #fff4e5; color: #663c00; border: 1px solid #f5c98b; padding: 0.6em; border-radius: 6px;
             font-weight: 600}
.fs-warning code {white-space: nowrap}
"""
#: System fonts only: the page loads nothing from the internet.
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
#: Run in the browser when a request finishes: bring the results column into view when its top is
#: above the window or in its lower half (on a narrow screen it sits below the inputs).
SCROLL_TO_RESULTS_JS = """() => {
  const results = document.getElementById("fs-results");
  if (!results) return;
  const top = results.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight / 2) results.scrollIntoView({behavior: "smooth", block: "start"});
}"""


def _vocabulary_help(literal: bool) -> tuple[str, str, str]:
    """(the header's sentence, the field's placeholder, its hint) on how to type a vocabulary: with
    synonyms, or for a model that takes each class string as one prompt (``literal_vocabulary``)."""
    if literal:
        return ("classes separated by `;`, each class one prompt taken as typed (a `,` is part of the "
                "prompt): `cat; dog; grass`", "cat; dog; grass",
                "classes separated by ';'; each class is one prompt, as typed")
    return ("classes separated by `;`, synonyms by `,`: `cat,kitten; dog; grass`", "cat,kitten; dog; grass",
            "classes separated by ';', synonyms by ','")


def build_app(demo: WebDemo, examples: Sequence[Sequence[str]] = (), task: str = "panoptic") -> gr.Blocks:
    """The page of ``demo``: inputs (image file, vocabulary, benchmark vocabulary, task,
    confidence threshold), the results (message, overlay, legend, table of segments, downloads),
    then ``examples`` rows of (image path, vocabulary, task). On a wide screen the inputs and the
    results are side by side; on a narrow one the results come right after the inputs, before
    the examples, and are scrolled into view when a request finishes. The title and the help
    name the model (:attr:`WebDemo.model_name`) and describe its vocabulary syntax; a random
    model is flagged at the top (:attr:`WebDemo.random_weights_notice`). ``task`` is selected
    when the page opens (the model's first task when it has no such output)."""
    p = demo.predictor
    weights = p.cfg.MODEL.WEIGHTS
    name = demo.model_name
    if task not in p.supported_tasks:
        task = p.supported_tasks[0]
    how, placeholder, hint = _vocabulary_help(p.literal)
    title = f"{name} open-vocabulary segmentation" + (f" ({RANDOM_TINY_MODEL})" if demo.tiny_random_model else "")
    with gr.Blocks(title=title, analytics_enabled=False,
                   delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S)) as app:
        gr.Markdown(
            f"## {name}: open-vocabulary segmentation\n"
            f"Upload an image, type what to look for ({how}) or pick a benchmark vocabulary, choose a "
            f"task and press **Segment**. Model: `{type(p.model).__name__}` on `{p.device}`, "
            + (f"weights `{os.path.basename(weights)}`." if weights else "no weights."),
            elem_id="fs-header")
        notice = demo.random_weights_notice
        if notice:
            flags = re.sub(r"(--[a-z][a-z-]* [A-Z]+|MODEL\.WEIGHTS)", r"<code>\1</code>", html.escape(notice))
            gr.HTML(f'<div id="fs-random" class="fs-warning">{flags}</div>')
        with gr.Row(elem_id="fs-main"):
            with gr.Column(scale=2, min_width=300, elem_id="fs-inputs"):
                with gr.Row(elem_id="fs-upload"):
                    image = gr.File(label="Image", file_count="single", type="filepath", height=150, scale=3,
                                    min_width=160, elem_id="fs-image")
                    preview = gr.Image(label="Input", interactive=False, height=150, scale=2, min_width=160,
                                       elem_id="fs-preview")
                vocabulary = gr.Textbox(label="Vocabulary", placeholder=placeholder, info=hint,
                                        elem_id="fs-vocabulary")
                benchmark = gr.Dropdown([TYPED, *demo.benchmarks], value=TYPED, label="Benchmark vocabulary",
                                        elem_id="fs-benchmark")
                task_radio = gr.Radio(list(TASKS), value=task, label="Task", elem_id="fs-task",
                                      info=None if set(TASKS) <= set(p.supported_tasks) else
                                      f"this model outputs {' and '.join(p.supported_tasks)} only")
                threshold = gr.Slider(0.0, 1.0, value=DEFAULT_CONFIDENCE[task], step=0.01,
                                      label="Confidence threshold", elem_id="fs-threshold")
                submit = gr.Button("Segment", variant="primary", elem_id="fs-submit")
            with gr.Column(scale=3, min_width=300, elem_id="fs-results"):
                message = gr.HTML(elem_id="fs-message")
                overlay = gr.Image(label="Overlay (labels: class and score from 0 to 1)", interactive=False,
                                   format="png", height=360, elem_id="fs-overlay")
                with gr.Row(elem_id="fs-details"):
                    legend = gr.HTML(label="Legend", min_width=240, elem_id="fs-legend-box")
                    table = gr.HTML(label="Segments", min_width=280, elem_id="fs-table-box")
                downloads = gr.File(label="Downloads: id PNG and segments JSON", file_count="multiple",
                                    interactive=False, elem_id="fs-downloads")
        if examples:
            gr.Examples([list(e) for e in examples], [image, vocabulary, task_radio], label="Examples",
                        elem_id="fs-examples")

        def show_input(path):
            if not path:
                return None, ""
            try:
                picture, notice = demo.read(path)
            except UserInputError as e:
                return None, message_html(str(e), error=True)
            return picture, message_html(notice)

        def run(path, text, bench, task_name, thr, progress=gr.Progress()):
            r = demo.segment(path, text, bench, task_name, thr, progress=lambda f, d: progress(f, desc=d))
            return r.overlay, r.legend, r.table, r.files or None, message_html(r.message, r.error)

        image.change(show_input, image, [preview, message], concurrency_limit=None, show_progress="hidden")
        task_radio.change(lambda t: DEFAULT_CONFIDENCE[t], task_radio, threshold, concurrency_limit=None,
                          show_progress="hidden")
        # one progress bar, on the overlay, not one per output
        gr.on([submit.click, vocabulary.submit], run, [image, vocabulary, benchmark, task_radio, threshold],
              [overlay, legend, table, downloads, message], concurrency_limit=1, show_progress="full",
              show_progress_on=overlay).then(None, js=SCROLL_TO_RESULTS_JS, queue=False)
    return app


def serve(demo: WebDemo, *, examples: Sequence[Sequence[str]] = (), task: str = "panoptic",
          host: str = "127.0.0.1", port: int = 7860, queue_size: int = 16,
          max_file_size: str = "50mb") -> None:
    """Serve the page of ``demo`` on ``host:port`` until interrupted: one worker, at most
    ``queue_size`` waiting requests, uploads up to ``max_file_size``."""
    app = build_app(demo, examples, task)
    app.queue(default_concurrency_limit=1, max_size=queue_size)
    allowed = sorted({os.path.dirname(os.path.abspath(e[0])) for e in examples} | {demo.work_dir})
    app.launch(server_name=host, server_port=port, allowed_paths=allowed, max_file_size=max_file_size,
               show_error=False, ssr_mode=False, share=False, footer_links=[], css=CSS,
               theme=gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"]))
