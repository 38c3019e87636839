"""Run a segmentation model on single images with a chosen vocabulary and task.

The model of :class:`SegmentationPredictor` is Detectron2's ``DefaultPredictor``: build the model
from a config, load ``MODEL.WEIGHTS``, preprocess one image as the test data loader does
(:meth:`frozenseg.data.dataset_mappers.TestDatasetMapper.resize`), run it, and convert its
output into a :class:`Prediction` (an id map and one record per segment)::

    from frozenseg.data.vocabulary_sources import load_vocabulary
    from frozenseg.engine.predictor import SegmentationPredictor
    from frozenseg.utils.prediction_io import write_prediction
    from frozenseg.utils.visualizer import SegmentationVisualizer

    predictor = SegmentationPredictor.from_config_file(
        "configs/coco/frozenseg/convnext_large_eval_ade20k.yaml",
        opts=["MODEL.WEIGHTS", "frozenseg_convnext_large.pth", "MODEL.DEVICE", "cuda"],
        vocabulary=load_vocabulary("cat,kitten;dog,puppy;grass"), task="panoptic")
    pred = predictor("image.jpg")            # a path or an RGB uint8 (H, W, 3) array
    pred.segments                            # [{"id", "category_id", "class", "score", "area", "bbox", ...}]
    overlay = SegmentationVisualizer().draw_prediction(pred)      # RGB uint8 (H, W', 3)
    write_prediction(pred, overlay, "out_dir")                    # overlay, id PNG, segments JSON

The predictor works with any model through the model contract
(:class:`frozenseg.modeling.contract.SegmentationModel`): its ``supported_tasks`` (OVSeg is
semantic only), ``set_tasks``, ``set_vocabulary`` and ``encode_vocabulary`` (the text embeddings of
a new vocabulary are computed when it is set), ``literal_vocabulary`` (each class string is one
prompt: class strings reach the model verbatim, ``"cat,kitten"`` is one class named so), and the
eval-mode outputs, among them ``sem_seg_unlabelled`` ((H, W) bool: pixels the model leaves without
a class, e.g. OVSeg's demo mode), which the semantic task shows as unlabelled (``none_value``, no
segment, no colour).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import time
from typing import Any, Sequence

import numpy as np
import torch

from ..data.builtin import check_vocabulary_files
from .setup import build_inference_model, check_config, load_config
from ..data.dataset_mappers.test_mapper import TestDatasetMapper
from ..data.vocabulary import (
    Vocabulary,
    normalize_class_names,
    normalize_literal_class_names,
    parse_cli_vocabulary,
    split_synonyms,
)
from ..data.vocabulary_sources import default_vocabulary, infer_thing_classes
from ..modeling.contract import ImageFeatures, SegmentationModel
from ..structures.prediction import Prediction
from ..structures.semantic import semantic_scores
from ..utils.errors import UserInputError
from ..utils.image_io import read_image

__all__ = ["Prediction", "SegmentationPredictor", "ImageFeatureCache", "image_key", "FrozenSegPredictor", "ThresholdError", "UnsupportedTaskError",
           "checked_threshold", "model_tasks"]

logger = logging.getLogger(__name__)

TASKS = ("panoptic", "semantic", "instance")
#: Default confidence threshold per task (instance scores are probabilities; panoptic and
#: semantic segments keep everything unless a threshold is given).
DEFAULT_CONFIDENCE = {"instance": 0.5, "panoptic": 0.0, "semantic": 0.0}
#: The model output each task reads.
_TASK_OUTPUT = {"panoptic": ("panoptic_seg",), "semantic": ("sem_seg_scores", "sem_seg"),
                "instance": ("instances",)}


def checked_threshold(value: float) -> float:
    """``value`` as a float in [0, 1]; ``ValueError`` (one sentence) for anything else (NaN too)."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 <= threshold <= 1.0:  # also False for NaN
        raise ThresholdError(f"The confidence threshold must be a number from 0 to 1; got {value!r}.")
    return threshold


class UnsupportedTaskError(UserInputError, ValueError):
    """The model cannot produce the requested task's output (e.g. panoptic with OVSeg)."""


class ThresholdError(UserInputError, ValueError):
    """A confidence threshold outside [0, 1]."""


def model_tasks(model: SegmentationModel) -> tuple[str, ...]:
    """The predictor tasks ``model`` can do, in :data:`TASKS` order (its ``supported_tasks``)."""
    return tuple(t for t in TASKS if t in model.supported_tasks)


#: Default memory of :attr:`SegmentationPredictor.image_cache`, in bytes.
DEFAULT_IMAGE_CACHE_BYTES = 1 << 30


def image_key(image: np.ndarray) -> str:
    """A digest of an RGB uint8 (H, W, 3) image's size and pixels (the image cache's key)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=20)
    digest.update(repr(image.shape).encode())
    return digest.hexdigest()


class ImageFeatureCache:
    """The vocabulary-free features of recent images
    (:meth:`~frozenseg.modeling.contract.SegmentationModel.encode_images`), by image, least
    recently used first out, within ``budget_bytes`` of tensor memory. A new vocabulary, task or
    threshold for a cached image recomputes only the classification and post-processing
    (:meth:`~frozenseg.modeling.contract.SegmentationModel.classify_images`), with results
    identical to a fresh run."""

    def __init__(self, budget_bytes: int = DEFAULT_IMAGE_CACHE_BYTES):
        self.budget_bytes = max(0, int(budget_bytes))
        self._entries: collections.OrderedDict[str, ImageFeatures] = collections.OrderedDict()

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return sum(f.nbytes for f in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str | None) -> ImageFeatures | None:
        """The features cached for ``key`` (now the most recently used), else None."""
        if key is None or key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: str, features: ImageFeatures) -> None:
        """Keep ``features`` (unless larger than the whole budget), dropping the least recently
        used entries until the total fits."""
        if features.nbytes > self.budget_bytes:
            return
        self._entries[key] = features
        self._entries.move_to_end(key)
        while self.nbytes > self.budget_bytes:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every image; call it after changing the model's weights or switches, which
        the cached features do not record."""
        self._entries.clear()


def _bbox_xywh(mask: np.ndarray) -> list[int]:
    """[x, y, w, h] in pixels of the (H, W) bool ``mask`` ([0, 0, 0, 0] when empty)."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


class SegmentationPredictor:
    """Run an open-vocabulary segmentation model on single images.

    Args:
        cfg: a config (``frozenseg.get_cfg()`` + merges); it is cloned and frozen.
        vocabulary: a :class:`~frozenseg.data.vocabulary.Vocabulary` (used verbatim: a dataset's
            class strings stay exactly as registered), a list of class names (normalised, thing
            classes inferred), a string in the command-line syntax (``"cat,kitten;dog"``), or None
            for :func:`~frozenseg.data.vocabulary.default_vocabulary`.
        thing_classes: indices of thing classes (overrides the vocabulary's).
        task: ``"panoptic"``, ``"semantic"`` or ``"instance"`` (one of :func:`model_tasks`;
            None: the first of them, panoptic for FrozenSeg, semantic for OVSeg).
        confidence_threshold: drop instances / segments scoring below it (default per task:
            :data:`DEFAULT_CONFIDENCE`). Panoptic and semantic segment scores are the mean, over
            the segment, of the pixel's class probability normalised over the vocabulary.
        model: an already built model (skips building and weight loading).
        image_cache_bytes: memory for the vocabulary-free features of recent images
            (:class:`ImageFeatureCache`); 0 turns the cache off.

    ``DATASETS.VOCABULARY_FILES`` entries are checked first
    (:func:`~frozenseg.data.builtin.check_vocabulary_files`). ``MODEL.WEIGHTS`` is loaded when set (released or project checkpoints); a checkpoint that
    contains the frozen CLIP and SAM weights makes loading them from their own sources
    unnecessary. The vocabulary's text embeddings are computed once, when it is set (and reused
    from the disk cache in ``MODEL.FROZEN_SEG.TEXT_CACHE_DIR`` across runs). SAM proposal masks
    (``TEST.USE_SAM_MASKS``) are not used: new images have no cached proposals.
    """

    def __init__(
        self,
        cfg,
        *,
        vocabulary: Vocabulary | Sequence[str] | None = None,
        thing_classes: Sequence[int] | None = None,
        task: str | None = "panoptic",
        confidence_threshold: float | None = None,
        model: torch.nn.Module | None = None,
        image_cache_bytes: int = DEFAULT_IMAGE_CACHE_BYTES,
    ):
        self.cfg = cfg.clone()
        self.image_cache = ImageFeatureCache(image_cache_bytes)
        check_config(self.cfg)
        check_vocabulary_files(self.cfg)  # an entry nothing uses is a mistake: say so now
        if self.cfg.TEST.USE_SAM_MASKS:
            logger.warning("TEST.USE_SAM_MASKS is ignored by the predictor (no cached SAM proposals for new images).")
            self.cfg.TEST.USE_SAM_MASKS = False
        self.cfg.freeze()
        self.model = model if model is not None else build_inference_model(self.cfg)
        self.model.eval()
        self.model.use_sam_masks = False
        self.model.full_semantic_map = False  # read "sem_seg_scores": memory independent of the classes
        self.device = next(self.model.parameters()).device
        self.mapper = TestDatasetMapper.from_config(self.cfg, is_train=False)
        self.task = ""
        self.confidence_threshold: float = 0.0
        self._explicit_threshold = None if confidence_threshold is None else checked_threshold(confidence_threshold)
        self.set_task(model_tasks(self.model)[0] if task is None else task)
        if isinstance(vocabulary, str):
            vocabulary = parse_cli_vocabulary(vocabulary, literal=self.literal, source="vocabulary")
        if vocabulary is None:
            vocabulary = default_vocabulary()
        elif not isinstance(vocabulary, Vocabulary) and not self.literal:
            names = normalize_class_names(list(vocabulary))
            vocabulary = Vocabulary(names, infer_thing_classes(names), "list")
        self.vocabulary: Vocabulary
        self.set_vocabulary(vocabulary, thing_classes)

    @classmethod
    def from_config_file(cls, config_file: str, opts: Sequence[str] = (), **kwargs) -> "SegmentationPredictor":
        """Build from a YAML config plus ``KEY VALUE`` overrides; ``kwargs`` are the constructor's."""
        return cls(load_config(config_file, opts), **kwargs)

    @property
    def class_names(self) -> list[str]:
        """The active vocabulary's class strings."""
        return self.vocabulary.class_names

    @property
    def supported_tasks(self) -> tuple[str, ...]:
        """The tasks the model can output (:func:`model_tasks`)."""
        return model_tasks(self.model)

    @property
    def literal(self) -> bool:
        """True when the model takes each class string as one prompt (``literal_vocabulary``)."""
        return self.model.literal_vocabulary

    # -- setup ----------------------------------------------------------------------------------
    def set_task(self, task: str, confidence_threshold: float | None = None) -> None:
        """Switch the output task (and the model's post-processing) without rebuilding.

        Raises :class:`UnsupportedTaskError` (one sentence) for a task the model cannot do."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
        tasks = model_tasks(self.model)
        if task not in tasks:
            raise UnsupportedTaskError(
                f"{type(self.model).__name__} does not do {task} segmentation (it gives {' and '.join(tasks)} "
                f"output only); use --task {tasks[0]}."
            )
        self.task = task
        # the semantic scores also score panoptic and semantic segments; instances score themselves
        self.model.set_tasks({task} if task == "instance" else {"semantic", task})
        if confidence_threshold is not None:
            self._explicit_threshold = checked_threshold(confidence_threshold)
        thr = self._explicit_threshold
        self.confidence_threshold = float(DEFAULT_CONFIDENCE[task] if thr is None else thr)

    def set_vocabulary(self, vocabulary: Vocabulary | Sequence[str],
                       thing_classes: Sequence[int] | None = None) -> None:
        """Set the vocabulary and compute its text embeddings now (once).

        A :class:`~frozenseg.data.vocabulary.Vocabulary` (from
        :func:`~frozenseg.data.vocabulary.load_vocabulary`, already validated) is used verbatim,
        with its thing classes and colours; a list of class names is normalised first
        (:func:`~frozenseg.data.vocabulary.normalize_class_names`; every class a thing). For a
        model with ``literal_vocabulary`` the class strings are kept as they are (only the spaces
        around each are stripped, :func:`~frozenseg.data.vocabulary.normalize_literal_class_names`)
        and the vocabulary becomes literal. The caller's list is never modified.
        ``thing_classes`` overrides the vocabulary's.
        """
        literal = self.literal
        if isinstance(vocabulary, str):
            vocabulary = parse_cli_vocabulary(vocabulary, literal=literal, source="vocabulary")
        if not isinstance(vocabulary, Vocabulary):
            names = (normalize_literal_class_names(list(vocabulary)) if literal
                     else normalize_class_names(list(vocabulary), warn=False))
            vocabulary = Vocabulary(names, source="list", literal=literal)
        elif literal and not vocabulary.literal:
            vocabulary = dataclasses.replace(vocabulary, literal=True)
        if thing_classes is not None:
            vocabulary = dataclasses.replace(vocabulary, thing_classes=list(thing_classes))
        self.model.set_vocabulary(vocabulary.class_names, vocabulary.thing_classes)
        self.vocabulary = vocabulary
        t0 = time.perf_counter()
        n_syn = sum(len(p) for p in vocabulary.prompts)
        logger.info("Encoding the vocabulary: %d classes (%d %s)...", len(vocabulary), n_syn,
                    "prompts" if literal else "synonyms")
        with torch.no_grad():
            where = self.model.encode_vocabulary()
        logger.info("Vocabulary ready in %.1f s%s", time.perf_counter() - t0, f" (disk cache: {where})" if where else "")

    # -- inference ------------------------------------------------------------------------------
    def estimate_memory(self, height: int, width: int) -> int:
        """Estimated peak memory, in bytes beyond the weights, of segmenting an image of
        ``height`` x ``width`` pixels with the current task: the model's
        :meth:`~frozenseg.modeling.contract.SegmentationModel.inference_memory` at the test
        mapper's input size, plus the image and the prediction (id map, overlay; 32 bytes per
        pixel). It does not grow with the number of classes."""
        input_size = self.mapper.input_size(int(height), int(width), strict=False)
        return self.model.inference_memory(input_size, (int(height), int(width))) + 32 * int(height) * int(width)

    def _model_input(self, image: np.ndarray, name: str = "") -> dict[str, Any]:
        """The model input of an (H, W, 3) uint8 RGB image: the test mapper's resize of the
        (3, H, W) tensor, and the original size to return predictions at. Raises
        :class:`~frozenseg.data.dataset_mappers.test_mapper.ImageSizeError` (naming ``name``) for
        an image too elongated to segment."""
        h, w = image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return {"image": self.mapper.resize(tensor, name), "height": h, "width": w}

    def __call__(self, image: np.ndarray | str) -> Prediction:
        """Predict one image (a path, or an RGB uint8 (H, W, 3) array).

        Errors of one image are user errors (:class:`~frozenseg.utils.errors.UserInputError`,
        one sentence) and leave the predictor usable for the next: an unreadable file
        (``ImageReadError``) and an image too elongated to segment within the pixel budget
        (``ImageSizeError``, see :meth:`TestDatasetMapper.input_size
        <frozenseg.data.dataset_mappers.test_mapper.TestDatasetMapper.input_size>`).
        """
        source = ""
        if isinstance(image, (str, os.PathLike)):
            source = os.fspath(image)
            image = read_image(source)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}.")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"The image is empty ({image.shape[0]}x{image.shape[1]} pixels); give an image of at least 1x1.")
        t0 = time.perf_counter()
        with torch.no_grad():
            inputs = [self._model_input(image, source)]
            key = image_key(image) if self.image_cache.budget_bytes > 0 else None
            features = self.image_cache.get(key)
            reused = features is not None
            if features is None:
                encoded = self.model.encode_images(inputs)
                features = None if encoded is None else encoded[0]
                if features is not None and key is not None:
                    self.image_cache.put(key, features)
            out = self.model(inputs)[0] if features is None else self.model.classify_images(inputs, [features])[0]
            pred = self._to_prediction(image, out)
            pred.reused_image_features = reused
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        pred.seconds = time.perf_counter() - t0
        pred.source = source
        return pred

    def _segment(self, seg_id: int, cls: int, mask: np.ndarray, score: float | None, isthing: bool) -> dict:
        name = self.vocabulary.class_names[cls]
        return {
            "id": int(seg_id),
            "category_id": int(cls),
            "class": (name if self.vocabulary.literal else split_synonyms(name)[0]).strip(),
            "class_name": name,
            "isthing": bool(isthing),
            "score": None if score is None else round(float(score), 4),
            "area": int(mask.sum()),
            "bbox": _bbox_xywh(mask),
        }

    def _to_prediction(self, image: np.ndarray, out: dict[str, Any]) -> Prediction:
        """Convert the model's output dict for ``image`` into a :class:`Prediction` of the task."""
        needed = _TASK_OUTPUT[self.task]
        if not any(key in out for key in needed):
            raise ValueError(
                f"{type(self.model).__name__} gave no {needed[-1]!r} output, so it cannot do the "
                f"{self.task} task; choose another --task."
            )
        thr = self.confidence_threshold
        things = None if self.vocabulary.thing_classes is None else set(self.vocabulary.thing_classes)
        scores = semantic_scores(out)
        h, w = image.shape[:2]
        segments: list[dict[str, Any]] = []
        if self.task == "semantic":
            summary = scores.summarize()
            k = len(self.vocabulary)
            none = 255 if k < 255 else 65535
            ids = np.full((h, w), none, dtype=np.int64)
            conf = summary.normalized(summary.best).cpu().numpy()
            labels_np = summary.labels.cpu().numpy()
            unlabelled = summary.all_zero if scores.marks_unlabelled else out.get("sem_seg_unlabelled")
            if unlabelled is not None:  # pixels the model gives no class: no segment
                labels_np[unlabelled.cpu().numpy()] = -1
            for cls in np.unique(labels_np[labels_np >= 0]):
                mask = labels_np == cls
                score = float(conf[mask].mean())
                if score < thr:
                    continue
                ids[mask] = cls
                segments.append(self._segment(int(cls), int(cls), mask, score, things is None or int(cls) in things))
            segments.sort(key=lambda s: -s["area"])
        elif self.task == "panoptic":
            pan, infos = out["panoptic_seg"]
            pan_np = pan.cpu().numpy().astype(np.int64)
            prob_at = None
            if scores is not None and infos:
                # each pixel's score for its segment's class, normalised over the vocabulary
                class_of_id = np.full(int(pan_np.max()) + 1, -1, dtype=np.int64)
                for info in infos:
                    class_of_id[info["id"]] = int(info["category_id"])
                summary = scores.summarize(torch.from_numpy(class_of_id[pan_np]))
                prob_at = summary.normalized(summary.at).cpu().numpy()
            ids = np.zeros((h, w), dtype=np.int64)
            for info in infos:
                mask = pan_np == info["id"]
                cls = int(info["category_id"])
                score = None
                if prob_at is not None and mask.any():
                    score = float(prob_at[mask].mean())
                if score is not None and score < thr:
                    continue
                ids[mask] = info["id"]
                segments.append(self._segment(info["id"], cls, mask, score, bool(info.get("isthing", True))))
            none = 0
        else:
            inst = out["instances"]
            scores = inst.scores.float().cpu().numpy()
            classes = inst.pred_classes.cpu().numpy()
            masks = inst.pred_masks.cpu().numpy().astype(bool, copy=False)
            keep = [i for i in np.argsort(-scores, kind="stable")
                    if scores[i] >= thr and (things is None or int(classes[i]) in things) and masks[i].any()]
            ids = np.zeros((h, w), dtype=np.int64)
            for new_id, i in reversed(list(enumerate(keep, start=1))):  # best on top
                ids[masks[i]] = new_id
            for new_id, i in enumerate(keep, start=1):
                segments.append(self._segment(new_id, int(classes[i]), masks[i], float(scores[i]), True))
            none = 0
        return Prediction(self.task, image, ids, none, segments, self.vocabulary.class_names, 0.0, raw=out,
                          class_colors=self.vocabulary.colors)


#: The released model's name for the predictor (it serves every model of the package).
FrozenSegPredictor = SegmentationPredictor
