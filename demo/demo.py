#!/usr/bin/env python
"""FrozenSeg demo: open-vocabulary panoptic / semantic / instance segmentation of images,
videos or a webcam, with the vocabulary given on the command line.

Examples::

    # one image, your own classes (";" between classes, "," between synonyms)
    python demo/demo.py --config-file configs/coco/frozenseg/convnext_large_eval_ade20k.yaml \\
        --input photo.jpg --output out/ --vocabulary "cat,kitten;dog,puppy;grass" \\
        --opts MODEL.WEIGHTS frozenseg_convnext_large.pth MODEL.DEVICE cuda

    # the same with the released weights by name: downloaded once into the cache, verified, and
    # the name's config used (tools/download_weights.py lists the names)
    python demo/demo.py --model frozenseg_convnext_large --input photo.jpg --output out/ \\
        --vocabulary "cat,kitten;dog,puppy;grass" --opts MODEL.DEVICE cuda

    # a folder / glob, semantic task, vocabulary of a registered dataset
    python demo/demo.py --config-file ... --input "images/*.jpg" --output out/ \\
        --task semantic --dataset-vocabulary openvocab_ade20k_panoptic_val

    # the classes of your own dataset (its description file: datasets/README.md)
    python demo/demo.py --config-file ... --input photo.jpg --output out/ \\
        --register-dataset my_pets_train.yaml --dataset-vocabulary my_pets_train

    # a video, written frame by frame
    python demo/demo.py --config-file ... --video-input clip.mp4 --output out/clip_seg.mp4

    # OVSeg (semantic only; each class string is one prompt, "cat,kitten" included), and the
    # release's demo mode (CLIP-only classification, one proposal per class, uncovered pixels
    # unlabelled): --ovseg-demo-mode, or the release's demo config
    python demo/demo.py --config-file configs/ovseg/ovseg_swinB_vitL_bs32_120k.yaml \\
        --input photo.jpg --output out/ --vocabulary "cat,kitten;dog;grass" --ovseg-demo-mode \\
        --opts MODEL.WEIGHTS ovseg_swinbase_vitL14_ft_mpt.pth

Per image, ``--output DIR`` receives ``<stem>_overlay.png`` (labelled colour overlay; legend
panel for semantic), ``<stem>_ids.png`` (segment ids for panoptic/instance with 0 = none, class
indices for semantic with 255 = none (also the pixels a model leaves unlabelled, e.g. OVSeg's
demo mode), 16-bit when needed) and ``<stem>_segments.json`` (class,
score, area, bbox per segment). A per-image summary (segments, time) is printed. Unreadable
inputs, images too elongated to segment within the pixel budget (see
:meth:`frozenseg.data.dataset_mappers.test_mapper.TestDatasetMapper.input_size`) and images that
run out of device memory are reported in one line and skipped, nothing is written for them, and
the run goes on with the next image; the exit status is then 1.

The work is done by the package: :mod:`frozenseg.data.vocabulary` (the vocabulary),
:class:`frozenseg.engine.predictor.SegmentationPredictor` (the model),
:class:`frozenseg.utils.visualizer.SegmentationVisualizer` (the overlay) and
:func:`frozenseg.utils.prediction_io.write_prediction` (the files).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from frozenseg.data.builtin import check_vocabulary_files
from frozenseg.engine.launch import configure_cpu_process
from frozenseg.data.vocabulary import Vocabulary, VocabularyError
from frozenseg.data.vocabulary_sources import load_vocabulary
from frozenseg.engine.predictor import (
    TASKS,
    Prediction,
    SegmentationPredictor,
    UnsupportedTaskError,
    checked_threshold,
    model_tasks,
)
from frozenseg.engine.setup import load_config, released_model_config
from frozenseg.modeling.build import meta_arch_class
from frozenseg.utils.errors import UserInputError, is_out_of_memory
from frozenseg.utils.prediction_io import prediction_paths, write_prediction
from frozenseg.utils.visualizer import SegmentationVisualizer

logger = logging.getLogger("frozenseg.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jfif")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
WINDOW = "FrozenSeg"


def _threshold(text: str) -> float:
    """``--confidence-threshold``: a number from 0 to 1 (argparse names the flag in its error)."""
    try:
        return checked_threshold(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="FrozenSeg open-vocabulary segmentation demo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Vocabulary: classes separated by ';', synonyms by ',', e.g. \"cat,kitten;dog,puppy;grass\".",
    )
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="path to a config file (default with --model: the config of its released weights)")
    p.add_argument(
        "--model", default="", metavar="NAME",
        help="released weights by name (e.g. frozenseg_convnext_large, ovseg_swinb_vitl14): sets MODEL.WEIGHTS to "
             "it (downloaded once into the cache) and, without --config-file, uses its config",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="image files, directories or glob patterns (quote globs)")
    src.add_argument("--video-input", help="a video file")
    src.add_argument("--webcam", action="store_true", help="the default camera (needs a display)")
    p.add_argument("--output", help="output directory, or a file when there is a single input")
    voc = p.add_mutually_exclusive_group()
    voc.add_argument("--vocabulary", help='classes: "cat,kitten;dog,puppy;grass"')
    voc.add_argument("--vocabulary-file", help="a vocabulary file (one 'id:name,synonym,...' per line)")
    voc.add_argument("--dataset-vocabulary", metavar="NAME", help="the vocabulary of a registered dataset")
    p.add_argument(
        "--register-dataset", action="append", default=[], metavar="FILE",
        help="register your own dataset from a description file (YAML or JSON; datasets/README.md, "
             "'Your own dataset'), e.g. to use its classes with --dataset-vocabulary; repeatable",
    )
    p.add_argument("--task", choices=TASKS, default=None,
                   help="output task (default: panoptic, or semantic for a semantic-only model such as OVSeg)")
    p.add_argument(
        "--ovseg-demo-mode", action="store_true",
        help="the release's demo rule of a model that has one (OVSeg: CLIP alone classifies the proposals, "
             "one proposal per class, pixels no kept proposal covers stay unlabelled); the overrides are the "
             "model's demo_overrides",
    )
    p.add_argument(
        "--confidence-threshold", type=_threshold, default=None,
        help="drop instances/segments scoring below this (default: 0.5 instance, 0 panoptic/semantic)",
    )
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (sets MODEL.CPU_THREADS; 0: auto, physical cores)")
    p.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model.pth MODEL.DEVICE cpu",
    )
    return p


def setup_logging() -> None:
    """Log to stdout: FrozenSeg's INFO messages (the per-image summary), other libraries'
    warnings and errors only."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.WARNING,
                            format="%(asctime)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("frozenseg", "frozenseg.demo"):
        logging.getLogger(name).setLevel(logging.INFO)


def _glob(pattern: str) -> list[str]:
    """Files matching ``pattern``; a ``**`` walks the folders below without following symbolic
    links to folders (pathlib's rule), so a link loop is never entered."""
    if "**" not in pattern:
        return glob.glob(pattern)
    parts = Path(pattern).parts
    first_magic = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    base = Path(*parts[:first_magic]) if first_magic else Path(".")
    return [str(p) for p in base.glob(str(Path(*parts[first_magic:])))]


def expand_inputs(patterns: list[str]) -> tuple[list[str], list[str]]:
    """Files named by ``patterns`` (files, directories (their images, sorted) or globs), in
    order, each file once however many paths (links) lead to it, and the patterns that matched
    nothing."""
    files: list[str] = []
    unmatched: list[str] = []
    for pat in patterns:
        pat = os.path.expanduser(pat)
        if os.path.isdir(pat):
            found = sorted(
                os.path.join(pat, f) for f in os.listdir(pat)
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(pat, f))
            )
        elif os.path.exists(pat):
            found = [pat]
        elif glob.has_magic(pat):
            found = sorted(f for f in _glob(pat) if os.path.isfile(f))
        else:
            found = []
        if not found:
            unmatched.append(pat)
        files.extend(found)
    unique: dict[str, str] = {}
    for f in files:
        unique.setdefault(os.path.realpath(f), f)
    return list(unique.values()), unmatched


def output_stems(files: list[str]) -> list[str]:
    """Output stems: the file's stem, prefixed by its folder (and numbered) when stems repeat."""
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    out, used = [], set()
    for f, s in zip(files, stems):
        if stems.count(s) > 1:
            s = f"{os.path.basename(os.path.dirname(os.path.abspath(f))) or 'root'}_{s}"
        base, n = s, 1
        while s in used:
            n += 1
            s = f"{base}_{n}"
        used.add(s)
        out.append(s)
    return out


def gui_available() -> bool:
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        cv2.destroyWindow(WINDOW)
        return True
    except cv2.error:
        return False


def overlay(prediction: Prediction, legend: bool = True) -> np.ndarray:
    """The demo's drawing of a prediction (RGB uint8)."""
    return SegmentationVisualizer().draw_prediction(prediction, legend=legend)


def run_images(predictor: SegmentationPredictor, files: list[str], output: str | None) -> tuple[int, int]:
    """Predict and write every image; returns (done, failed). An image that cannot be read or
    segmented (a user error of that image, or an allocation failure) is reported in one line and
    skipped, with nothing written for it."""
    single_file = output is not None and len(files) == 1 and os.path.splitext(output)[1].lower() in IMAGE_EXTENSIONS
    stems = output_stems(files)
    done = failed = 0
    for i, (path, stem) in enumerate(zip(files, stems), start=1):
        try:
            pred = predictor(path)
        except Exception as e:  # noqa: BLE001 - this image only: go on with the next
            if not isinstance(e, (OSError, UserInputError)) and not is_out_of_memory(e):
                raise
            reason = "out of memory (try a smaller image)" if is_out_of_memory(e) else e
            logger.error("[%d/%d] %s: skipped: %s", i, len(files), path, reason)
            failed += 1
            continue
        written = ""
        if output is not None:
            paths = write_prediction(pred, output, overlay=overlay(pred), stem=None if single_file else stem)
            written = f" -> {paths['overlay']}"
        else:
            import cv2

            cv2.imshow(WINDOW, overlay(pred)[:, :, ::-1])
            if cv2.waitKey(0) == 27:
                break
        logger.info(
            "[%d/%d] %s: %s (%dx%d) in %.2f s%s",
            i, len(files), path, pred.summary(), pred.image.shape[1], pred.image.shape[0], pred.seconds, written,
        )
        done += 1
    return done, failed


def _fmt_eta(seconds: float) -> str:
    if seconds != seconds or seconds < 0:
        return "?"
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def video_output_path(source: str | int, output: str | None) -> str | None:
    """The video file the overlay frames of ``source`` go to (None: shown in a window)."""
    if output is None or source == 0:
        return None
    if os.path.splitext(output)[1].lower() in VIDEO_EXTENSIONS:
        return output
    return os.path.join(output, f"{os.path.splitext(os.path.basename(str(source)))[0]}_overlay.mp4")


def overwritten_inputs(inputs: list[str], outputs: list[str]) -> list[str]:
    """The ``outputs`` that are one of the ``inputs`` (the same file, whatever the spelling)."""
    given = {os.path.realpath(f) for f in inputs}
    return [p for p in outputs if os.path.realpath(p) in given]


def planned_outputs(files: list[str], output: str) -> list[str]:
    """Every file :func:`run_images` writes for ``files`` under ``output``."""
    return [p for stem in output_stems(files) for p in prediction_paths(output, stem).values()]


def run_video(predictor: SegmentationPredictor, source: str | int, output: str | None) -> int:
    """Segment a video (or the webcam, ``source=0``) frame by frame; returns the frames done."""
    import cv2

    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise OSError(f"Cannot open {'the webcam' if source == 0 else repr(source)} with OpenCV.")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if source != 0 else 0
    writer = None
    out_path = video_output_path(source, output)
    if out_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    t0 = time.perf_counter()
    n = 0
    log_every = max(1, total // 20) if total else 25
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            pred = predictor(frame[:, :, ::-1].copy())
            vis = overlay(pred, legend=False)[:, :, ::-1]
            if out_path is not None:
                if writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("XVID" if out_path.lower().endswith(".avi") else "mp4v"))
                    writer = cv2.VideoWriter(out_path, fourcc, fps, (vis.shape[1], vis.shape[0]))
                    if not writer.isOpened():
                        raise OSError(f"Cannot write video {out_path} (codec not available?).")
                writer.write(vis)
            else:
                cv2.imshow(WINDOW, vis)
                if cv2.waitKey(1) == 27:  # Esc
                    break
            n += 1
            if n % log_every == 0 or (total and n == total):
                rate = n / max(time.perf_counter() - t0, 1e-9)
                of = f"/{total} ({100 * n / total:.0f}%)" if total else ""
                eta = f", ETA {_fmt_eta((total - n) / rate)}" if total else ""
                logger.info("frame %d%s: %s, %.2f frames/s%s", n, of, pred.summary(), rate, eta)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if out_path is None:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    logger.info("%d frames in %.1f s%s", n, time.perf_counter() - t0, f" -> {out_path}" if out_path else "")
    return n


def main(argv: list[str] | None = None, predictor: SegmentationPredictor | None = None) -> int:
    """CLI entry point. Returns 0 on success, 1 when some inputs failed, 2 on usage errors.

    ``predictor`` reuses an already built predictor (its vocabulary and task are set from the
    arguments); the config file is then only used for a fresh build.
    """
    parser = get_parser()
    args = parser.parse_args(argv)
    if not args.config_file and not args.model:
        parser.error("give --config-file FILE or --model NAME")
    setup_logging()
    try:
        config_file, weights_defaults = released_model_config(args.model, args.config_file)
        demo_overrides: tuple[str, ...] = ()
        if args.ovseg_demo_mode:
            model_class = meta_arch_class(load_config(config_file))
            demo_overrides = model_class.demo_overrides
            if not demo_overrides:
                raise ValueError(
                    f"--ovseg-demo-mode needs an OVSeg config, but {config_file} builds "
                    f"{model_class.__name__}; use a config of configs/ovseg/ or drop the flag."
                )
        cfg = load_config(config_file, list(args.opts), defaults=[*weights_defaults, *demo_overrides],
                          threads=args.threads, register_datasets=args.register_dataset)
        configure_cpu_process(cfg)
        vocab: Vocabulary = load_vocabulary(args.vocabulary, args.vocabulary_file, args.dataset_vocabulary, cfg,
                                            literal=meta_arch_class(cfg).literal_vocabulary)
        check_vocabulary_files(cfg)
    except (VocabularyError, ValueError, KeyError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    logger.info("Vocabulary: %d classes from %s", len(vocab), vocab.source)

    files: list[str] = []
    if args.input:
        files, unmatched = expand_inputs(args.input)
        for pat in unmatched:
            logger.error("No image found for --input %r.", pat)
        if not files:
            return 2
        if args.output and len(files) > 1 and os.path.splitext(args.output)[1].lower() in IMAGE_EXTENSIONS:
            logger.error(
                "--output %r is a file name but there are %d inputs; give a directory.", args.output, len(files)
            )
            return 2
    else:
        unmatched = []
    if args.output is not None and not args.webcam:
        planned = planned_outputs(files, args.output) if args.input else [video_output_path(args.video_input, args.output)]
        clash = overwritten_inputs(files if args.input else [args.video_input], planned)
        if clash:
            logger.error("--output %r would overwrite the input %s; write the results to another folder or file.",
                         args.output, clash[0])
            return 2
    needs_window = args.webcam or args.output is None
    if needs_window and not gui_available():
        logger.error(
            "%s needs a display, but this OpenCV has no GUI support (opencv-python-headless?)%s.",
            "--webcam" if args.webcam else "Showing results without --output",
            "" if args.webcam else "; pass --output DIR to write the results instead",
        )
        return 2

    try:
        if predictor is None:
            # image_cache_bytes=0: folders and videos never show an image twice, so keeping
            # each one's features would only hash the frames and hold memory
            predictor = SegmentationPredictor(cfg, vocabulary=vocab, task=args.task,
                                              confidence_threshold=args.confidence_threshold,
                                              image_cache_bytes=0)
        else:
            predictor.set_task(args.task or model_tasks(predictor.model)[0], args.confidence_threshold)
            predictor.set_vocabulary(vocab)
    except UnsupportedTaskError as e:  # e.g. --task panoptic with OVSeg
        logger.error("%s", e)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError, UserInputError) as e:  # weights, device, config
        if isinstance(e, RuntimeError) and not isinstance(e, UserInputError) and "CUDA" not in str(e):
            raise
        logger.error("Cannot build the model: %s", e)
        return 2
    logger.info("Task %s, confidence threshold %.2f", predictor.task, predictor.confidence_threshold)

    if args.input:
        t0 = time.perf_counter()
        done, failed = run_images(predictor, files, args.output)
        failed += len(unmatched)
        logger.info("%d images done, %d failed, in %.1f s.", done, failed, time.perf_counter() - t0)
        return 1 if failed else 0
    try:
        run_video(predictor, 0 if args.webcam else args.video_input, args.output)
    except (OSError, UserInputError) as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
