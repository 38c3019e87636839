"""The web demo: a Gradio page over :class:`~frozenseg.engine.predictor.SegmentationPredictor`.

A person uploads an image (or picks an example), types a vocabulary in the command-line syntax
(``cat,kitten; dog; grass``, :func:`~frozenseg.data.vocabulary.parse_cli_vocabulary`) or picks a
benchmark's (:func:`~frozenseg.data.vocabulary.load_vocabulary`), chooses panoptic / semantic /
instance, and gets the labelled overlay (:class:`~frozenseg.utils.visualizer.SegmentationVisualizer`),
a legend, a table of segments (class, score, area in % of the image) and the id PNG and segments
JSON (:func:`~frozenseg.utils.prediction_io.write_prediction`) to download.

Two layers:

* :class:`WebDemo`, the service (no Gradio in it): one predictor built once, one request at a
  time (a lock), the vocabulary's text classifier set only when the vocabulary changes (and the
  model's text-classifier builder keeps every vocabulary it has seen in memory, so switching back
  costs nothing), uploads larger than ``max_side`` resized with a notice, and every user error
  (empty vocabulary, unreadable file, not an image, a task the model has no output for) turned
  into one sentence for the page. Unexpected errors are logged with their traceback on the server
  and reported in the page in one line; the server keeps serving either way.
* :func:`build_app` / :func:`serve`, the page: Gradio Blocks whose requests go through Gradio's
  queue with one worker (``concurrency_limit=1``), with a progress bar while a request runs.

The command line is ``demo/app.py``; ``docs/demo.md`` documents it.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import tempfile
import threading
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

__all__ = [
    "MAX_SIDE", "DemoResult", "WebDemo", "available_memory", "default_memory_budget", "benchmark_vocabularies", "legend_html", "segments_table_html",
    "build_app", "serve",
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
    """

    def __init__(self, predictor: SegmentationPredictor, *, max_side: int = MAX_SIDE,
                 benchmarks: Sequence[str] | None = None, work_dir: str | None = None,
                 memory_budget: int | None = None):
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels, got {max_side}.")
        self.predictor = predictor
        self.max_side = int(max_side)
        self.memory_budget = default_memory_budget() if memory_budget is None else int(memory_budget)
        self.benchmarks = list(benchmark_vocabularies(predictor.cfg) if benchmarks is None else benchmarks)
        if work_dir is None:
            work_dir = tempfile.mkdtemp(prefix="frozenseg_web_")
            weakref.finalize(self, shutil.rmtree, work_dir, ignore_errors=True)
        self.work_dir = work_dir
        self._results: deque[str] = deque()
        self._lock = threading.Lock()
        self.visualizer = SegmentationVisualizer()

    # -- inputs ---------------------------------------------------------------------------------
    def vocabulary(self, text: str | None, benchmark: str | None = None) -> tuple[Vocabulary, str]:
        """The vocabulary of a request and a notice: ``benchmark`` (a registered dataset name)
        when given, else the typed ``text`` (``"cat,kitten; dog; grass"``). Raises
        :class:`~frozenseg.data.vocabulary.VocabularyError` (one sentence) when neither works."""
        text = (text or "").strip()
        if benchmark and benchmark != TYPED:
            vocab = load_vocabulary(dataset_vocabulary=benchmark, cfg=self.predictor.cfg)
            notice = f"Vocabulary of {benchmark} ({len(vocab)} classes)"
            return vocab, notice + ("; the typed vocabulary is not used." if text else ".")
        if not text:
            raise VocabularyError(EMPTY_VOCABULARY)
        return load_vocabulary(parse_cli_vocabulary(text, source="Vocabulary")), ""

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
        if vocab != p.vocabulary:
            progress(0.15, f"Text classifier of {len(vocab)} classes")
            p.set_vocabulary(vocab)
        progress(0.3, "Segmenting")
        pred = p(image)
        pred.source = os.path.basename(path)
        progress(0.85, "Drawing")
        overlay = self.visualizer.draw_prediction(pred, legend=False)
        paths = write_prediction(pred, self._result_dir(), overlay=overlay,
                                 stem=os.path.splitext(pred.source)[0] or "image")
        notices = [n for n in (resize_notice, vocab_notice) if n]
        notices.append(f"{pred.summary()} in {pred.seconds:.2f} s ({task}, confidence threshold "
                       f"{p.confidence_threshold:.2f}).")
        return DemoResult(overlay, legend_html(pred), segments_table_html(pred),
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


# -- HTML of the legend and the table -------------------------------------------------------------
def _class_colors(pred: Prediction) -> Callable[[int], tuple[int, int, int]]:
    """The overlay's colour of each class index (the vocabulary's own, else :func:`class_color`)."""
    return (lambda k: tuple(pred.class_colors[k])) if pred.class_colors else class_color


def _swatch(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color)
    return f'<span class="fs-swatch" style="background: rgb({r}, {g}, {b})"></span>'


def legend_html(pred: Prediction) -> str:
    """The legend: each class found (colour, name, share of the image in %, number of segments
    when more than one), in vocabulary order; for a vocabulary of at most
    :data:`LEGEND_ALL_CLASSES` classes its other classes follow as "not found", for a longer one
    their number. A class's share counts the pixels the id map gives it (where instances
    overlap, the pixels of the one shown), so the shares add up to at most 100 %."""
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
    rows = []
    for k, name in enumerate(pred.class_names):
        label = html.escape(split_synonyms(name)[0].strip())
        if k in area:
            n = f", {count[k]} segments" if count[k] > 1 else ""
            rows.append(f'<li class="fs-found">{_swatch(color_of(k))}<span class="fs-class">{label}</span>'
                        f' <span class="fs-area">{100.0 * area[k] / total:.1f}%{n}</span></li>')
        elif show_absent:
            rows.append(f'<li class="fs-absent">{_swatch((255, 255, 255))}<span class="fs-class">{label}</span>'
                        ' <span class="fs-area">not found</span></li>')
    absent = len(pred.class_names) - len(area)
    more = "" if show_absent or not absent else f'<p class="fs-more">{absent} other classes not found.</p>'
    return f'<div id="fs-legend"><ul>{"".join(rows)}</ul>{more}</div>'


def segments_table_html(pred: Prediction) -> str:
    """The table of segments: id (as in the id PNG), class, score (blank when the task has
    none), area in % of the image; in the prediction's order."""
    total = float(pred.ids.size)
    rows = []
    for s in pred.segments:
        score = "" if s["score"] is None else f"{s['score']:.4f}"
        rows.append(f'<tr><td>{s["id"]}</td><td class="fs-class">{html.escape(s["class"])}</td>'
                    f'<td>{score}</td><td>{100.0 * s["area"] / total:.2f}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="4">No segment; lower the confidence threshold or change the vocabulary.</td></tr>')
    return ('<table id="fs-segments"><thead><tr><th>id</th><th>class</th><th>score</th><th>area (%)</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


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
#fs-legend ul {list-style: none; padding-left: 0; margin: 0}
#fs-legend li {margin: 0.15em 0}
#fs-legend .fs-absent {color: #888}
#fs-legend .fs-area {color: #666; margin-left: 0.3em}
#fs-segments {border-collapse: collapse; width: 100%}
#fs-segments th, #fs-segments td {border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left}
.fs-error {background: #fdecea; color: #8a1c14; border: 1px solid #f5c2bd; padding: 0.6em; border-radius: 6px}
.fs-notice {background: #eef5fd; color: #123c69; border: 1px solid #c6dcf5; padding: 0.6em; border-radius: 6px}
"""
#: System fonts only: the page loads nothing from the internet.
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]


def build_app(demo: WebDemo, examples: Sequence[Sequence[str]] = (), task: str = "panoptic") -> gr.Blocks:
    """The page of ``demo``: inputs (image file, vocabulary, benchmark vocabulary, task,
    confidence threshold), ``examples`` rows of (image path, vocabulary, task), and the results
    (message, overlay, legend, table of segments, downloads). ``task`` is selected when the page
    opens (the model's first task when it has no such output)."""
    p = demo.predictor
    weights = p.cfg.MODEL.WEIGHTS
    if task not in p.supported_tasks:
        task = p.supported_tasks[0]
    with gr.Blocks(title="FrozenSeg open-vocabulary segmentation", analytics_enabled=False,
                   delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S)) as app:
        gr.Markdown(
            "## FrozenSeg: open-vocabulary segmentation\n"
            "Upload an image, type what to look for (classes separated by `;`, synonyms by `,`: "
            "`cat,kitten; dog; grass`) or pick a benchmark vocabulary, choose a task and press "
            f"**Segment**. Model: `{type(p.model).__name__}` on `{p.device}`, "
            + (f"weights `{os.path.basename(weights)}`." if weights else
               "**random weights** (no `MODEL.WEIGHTS`): the segments show the output format, "
               "not what a trained model finds."))
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.File(label="Image", file_count="single", type="filepath", elem_id="fs-image")
                preview = gr.Image(label="Input", interactive=False, height=220, elem_id="fs-preview")
                vocabulary = gr.Textbox(label="Vocabulary", placeholder="cat,kitten; dog; grass",
                                        info="classes separated by ';', synonyms by ','",
                                        elem_id="fs-vocabulary")
                benchmark = gr.Dropdown([TYPED, *demo.benchmarks], value=TYPED, label="Benchmark vocabulary",
                                        elem_id="fs-benchmark")
                task_radio = gr.Radio(list(TASKS), value=task, label="Task", elem_id="fs-task",
                                      info=None if set(TASKS) <= set(p.supported_tasks) else
                                      f"this model outputs {' and '.join(p.supported_tasks)} only")
                threshold = gr.Slider(0.0, 1.0, value=DEFAULT_CONFIDENCE[task], step=0.01,
                                      label="Confidence threshold", elem_id="fs-threshold")
                submit = gr.Button("Segment", variant="primary", elem_id="fs-submit")
                if examples:
                    gr.Examples([list(e) for e in examples], [image, vocabulary, task_radio], label="Examples")
            with gr.Column(scale=3):
                message = gr.HTML(elem_id="fs-message")
                overlay = gr.Image(label="Overlay", interactive=False, format="png", height=360, elem_id="fs-overlay")
                with gr.Row():
                    legend = gr.HTML(label="Legend", elem_id="fs-legend-box")
                    table = gr.HTML(label="Segments", elem_id="fs-table-box")
                downloads = gr.File(label="Downloads: id PNG and segments JSON", file_count="multiple",
                                    interactive=False, elem_id="fs-downloads")

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
        gr.on([submit.click, vocabulary.submit], run, [image, vocabulary, benchmark, task_radio, threshold],
              [overlay, legend, table, downloads, message], concurrency_limit=1)
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
