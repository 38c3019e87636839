"""A reusable FrozenSeg predictor: config in, image in, outputs and visualisation out.

Usable from notebooks and scripts without the CLI::

    import sys; sys.path.insert(0, "demo")          # or: from demo.predictor import ...
    from predictor import FrozenSegPredictor, parse_vocabulary

    predictor = FrozenSegPredictor.from_config_file(
        "configs/coco/frozenseg/convnext_large_eval_ade20k.yaml",
        opts=["MODEL.WEIGHTS", "frozenseg_convnext_large.pth", "MODEL.DEVICE", "cuda"],
        vocabulary=parse_vocabulary("cat,kitten;dog,puppy;grass"),
        task="panoptic",
    )
    pred = predictor("image.jpg")            # a path or an RGB uint8 (H, W, 3) array
    pred.segments                            # [{"id", "category_id", "class", "score", "area", "bbox", ...}]
    overlay = predictor.visualize(pred)      # RGB uint8 array
    predictor.save(pred, "out_dir")          # <stem>_overlay.png, <stem>_ids.png, <stem>_segments.json

Vocabularies: a list of class names, each a comma-separated list of synonyms (``"cat,kitten"``).
:func:`parse_vocabulary` reads the CLI form (classes separated by ``;``), :func:`load_vocabulary`
also reads vocabulary files, registered datasets' vocabularies and the default merged
COCO + ADE20K (+ LVIS when its annotations are present) vocabulary.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from frozenseg.utils.image_io import read_image
from frozenseg.utils.visualizer import SegmentationVisualizer, VisSegment, class_color, instance_color

__all__ = [
    "TASKS",
    "VocabularyArgumentError",
    "Vocabulary",
    "parse_vocabulary",
    "load_vocabulary",
    "default_vocabulary",
    "dataset_vocabulary_with_things",
    "infer_thing_classes",
    "Prediction",
    "FrozenSegPredictor",
]

logger = logging.getLogger("frozenseg.demo")

TASKS = ("panoptic", "semantic", "instance")
#: Datasets whose vocabularies make up the default vocabulary, in this order.
DEFAULT_VOCABULARY_DATASETS = (
    "openvocab_coco_2017_val_panoptic",
    "openvocab_ade20k_panoptic_val",
    "openvocab_lvis_v1_val",
)
#: Default confidence threshold per task (instance scores are probabilities; panoptic and
#: semantic segments keep everything unless a threshold is given).
DEFAULT_CONFIDENCE = {"instance": 0.5, "panoptic": 0.0, "semantic": 0.0}


class VocabularyArgumentError(ValueError):
    """A vocabulary given by the user is malformed (empty, empty entry, duplicate class)."""


@dataclass
class Vocabulary:
    """Class names (``"name,synonym,..."``), which of them are things, where they came from, and
    the dataset's own class colours (RGB, one per class) when it has them."""

    class_names: list[str]
    thing_classes: list[int] | None = None
    source: str = ""
    colors: list[tuple[int, int, int]] | None = None

    def __len__(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------------------------------------
# Vocabulary parsing
# ---------------------------------------------------------------------------------------------
def _synonyms(entry: str) -> list[str]:
    return [s.strip() for s in entry.split(",")]


def normalize_class_names(entries: Sequence[str], source: str = "vocabulary", warn: bool = True) -> list[str]:
    """Validate and normalise class entries (``"cat , kitten"`` -> ``"cat,kitten"``).

    Raises :class:`VocabularyArgumentError` for: no classes, an empty class, an empty synonym,
    or a class whose first name repeats an earlier class (the error names both). A synonym
    repeated inside one class is dropped, and a secondary synonym shared by two classes is
    allowed with a warning (both classes then score the same on it).
    """
    if not entries:
        raise VocabularyArgumentError(f"{source}: the vocabulary is empty; give at least one class.")
    out: list[str] = []
    first_seen: dict[str, int] = {}
    owner: dict[str, int] = {}
    for i, entry in enumerate(entries, start=1):
        syns = _synonyms(entry)
        if not entry.strip():
            raise VocabularyArgumentError(
                f"{source}: class #{i} is empty (two separators in a row, or a trailing one?)."
            )
        if any(not s for s in syns):
            raise VocabularyArgumentError(
                f"{source}: class #{i} ({entry.strip()!r}) has an empty synonym; synonyms are "
                "separated by ',' and must not be empty."
            )
        if any(";" in s or "\n" in s for s in syns):
            raise VocabularyArgumentError(f"{source}: class #{i} ({entry!r}) contains ';' or a newline.")
        unique = list(dict.fromkeys(syns))
        if len(unique) != len(syns) and warn:
            logger.warning("%s: class #%d (%r) repeats a synonym; using %r.", source, i, entry, ",".join(unique))
        key = unique[0].lower()
        if key in first_seen:
            j = first_seen[key]
            raise VocabularyArgumentError(
                f"{source}: duplicate class {unique[0]!r}: class #{i} ({','.join(unique)!r}) repeats "
                f"class #{j} ({out[j - 1]!r}). Merge their synonyms into one class."
            )
        first_seen[key] = i
        for s in unique[1:]:
            if warn and s.lower() in owner and owner[s.lower()] != i:
                logger.warning(
                    "%s: synonym %r is used by class #%d and class #%d.", source, s, owner[s.lower()], i
                )
        for s in unique:
            owner.setdefault(s.lower(), i)
        out.append(",".join(unique))
    return out


def parse_vocabulary(text: str) -> list[str]:
    """Parse the CLI vocabulary: classes separated by ``;``, synonyms by ``,``.

    ``"cat,kitten; dog , puppy;grass"`` -> ``["cat,kitten", "dog,puppy", "grass"]``. A single
    trailing ``;`` is allowed. Errors (:class:`VocabularyArgumentError`): empty text, empty
    classes (``";;"``), empty synonyms (``"cat,,kitten"``), duplicate classes.
    """
    if text is None or not str(text).strip():
        raise VocabularyArgumentError("--vocabulary is empty; e.g. --vocabulary \"cat,kitten;dog,puppy;grass\".")
    parts = str(text).split(";")
    if len(parts) > 1 and not parts[-1].strip():
        parts = parts[:-1]  # one trailing separator is harmless
    return normalize_class_names(parts, source="--vocabulary")


def _thing_lookup() -> dict[str, bool]:
    """Synonym (lower case) -> is-thing, from the COCO and ADE20K vocabularies (first wins)."""
    lookup: dict[str, bool] = {}
    for name in DEFAULT_VOCABULARY_DATASETS[:2]:
        try:
            names, things = dataset_vocabulary_with_things(name)
        except Exception as e:  # noqa: BLE001 - the heuristic is optional
            logger.debug("No thing/stuff information from %s: %s", name, e)
            continue
        thing_set = set(things) if things is not None else set(range(len(names)))
        for k, entry in enumerate(names):
            for s in _synonyms(entry):
                lookup.setdefault(s.lower(), k in thing_set)
    return lookup


def infer_thing_classes(class_names: Sequence[str]) -> list[int]:
    """Thing classes of a user vocabulary: a class is stuff when its first synonym known to the
    COCO / ADE20K vocabularies is a stuff class there ("grass", "sky", "wall"); every other
    class is a thing. Stuff classes form one segment per class in panoptic output and are not
    reported as instances."""
    lookup = _thing_lookup()
    things, stuff = [], []
    for k, entry in enumerate(class_names):
        verdict = next((lookup[s.lower()] for s in _synonyms(entry) if s.lower() in lookup), True)
        (things if verdict else stuff).append(k)
    if stuff:
        logger.info(
            "Treating as stuff (known stuff classes): %s", ", ".join(_synonyms(class_names[k])[0] for k in stuff)
        )
    return things


def dataset_vocabulary_with_things(dataset_name: str, cfg=None) -> tuple[list[str], list[int] | None]:
    """(class names, thing class indices or None for "all things") of a registered dataset."""
    from frozenseg.data import DatasetCatalog, MetadataCatalog, dataset_vocabulary

    if dataset_name not in DatasetCatalog:
        raise VocabularyArgumentError(
            f"--dataset-vocabulary {dataset_name!r} is not a registered dataset; registered: "
            f"{', '.join(sorted(DatasetCatalog.list())[:12])}, ..."
        )
    from frozenseg.engine.defaults import thing_class_indices

    names = dataset_vocabulary(dataset_name, cfg)
    if MetadataCatalog.get(dataset_name).get("dataset_kind") in ("instances", "lvis"):
        return names, None
    things = thing_class_indices(dataset_name)  # the release's thing flags, where it has them
    return names, things if things is not None else infer_thing_classes(names)


def default_vocabulary(include_lvis: bool = True) -> Vocabulary:
    """COCO panoptic (133) + ADE20K (150) + LVIS (1203, only when its annotation json is
    present under ``$DETECTRON2_DATASETS``), merged in that order.

    De-duplication: a class is skipped when its name (first synonym) is already a synonym of an
    earlier class (COCO "tv" vs ADE20K "television receiver,tv": both kept; ADE20K "car" after
    COCO "car,cars": skipped); secondary synonyms already used by an earlier class are dropped
    from the later class, so no two classes share a prompt.
    """
    names: list[str] = []
    things: list[int] = []
    used: set[str] = set()
    sources = []
    for ds in DEFAULT_VOCABULARY_DATASETS if include_lvis else DEFAULT_VOCABULARY_DATASETS[:2]:
        try:
            ds_names, ds_things = dataset_vocabulary_with_things(ds)
        except Exception as e:  # noqa: BLE001 - LVIS is optional
            logger.info("Default vocabulary: skipping %s (%s).", ds, str(e).splitlines()[0][:200])
            continue
        thing_set = set(range(len(ds_names))) if ds_things is None else set(ds_things)
        added = 0
        for k, entry in enumerate(ds_names):
            syns = list(dict.fromkeys(_synonyms(entry)))
            if syns[0].lower() in used:
                continue
            syns = [syns[0]] + [x for x in syns[1:] if x.lower() not in used]
            used.update(x.lower() for x in syns)
            if k in thing_set:
                things.append(len(names))
            names.append(",".join(syns))
            added += 1
        sources.append(f"{ds} (+{added})")
    if not names:
        raise VocabularyArgumentError("No default vocabulary available; pass --vocabulary.")
    return Vocabulary(names, things, "default: " + ", ".join(sources))


def load_vocabulary(
    vocabulary: str | Sequence[str] | None = None,
    vocabulary_file: str | None = None,
    dataset_vocabulary: str | None = None,
    cfg=None,
) -> Vocabulary:
    """The active vocabulary from exactly one source (or the default when none is given).

    Args:
        vocabulary: CLI text (``"cat,kitten;dog"``) or a list of class names.
        vocabulary_file: a file in the vocabulary format (``id:name,synonym,...`` per line).
        dataset_vocabulary: a registered dataset name.
        cfg: config (for ``DATASETS.VOCABULARY_FILES`` overrides).
    """
    given = [x is not None for x in (vocabulary, vocabulary_file, dataset_vocabulary)]
    if sum(given) > 1:
        raise VocabularyArgumentError(
            "Give only one of --vocabulary, --vocabulary-file and --dataset-vocabulary."
        )
    if vocabulary is not None:
        names = parse_vocabulary(vocabulary) if isinstance(vocabulary, str) else normalize_class_names(
            list(vocabulary), source="vocabulary"
        )
        return Vocabulary(names, infer_thing_classes(names), "--vocabulary")
    if vocabulary_file is not None:
        from frozenseg.data import read_vocabulary_file

        names = normalize_class_names(read_vocabulary_file(vocabulary_file), source=vocabulary_file)
        return Vocabulary(names, infer_thing_classes(names), vocabulary_file)
    if dataset_vocabulary is not None:
        from frozenseg.data.builtin import dataset_class_colors

        names, things = dataset_vocabulary_with_things(dataset_vocabulary, cfg)
        colors = dataset_class_colors(dataset_vocabulary)  # the benchmark's own colours
        if colors is not None and len(colors) != len(names):  # an override of another size
            colors = None
        return Vocabulary(list(names), things, f"dataset {dataset_vocabulary}", colors)
    return default_vocabulary()


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """Result of one image.

    ``ids``: (H, W) map: segment ids (0 = none) for panoptic and instance, class indices for
    semantic (``none_value`` = unassigned). Where instances overlap, the higher-scoring one is
    shown. ``segments``: one dict per segment (``id``, ``category_id``, ``class``,
    ``class_name``, ``isthing``, ``score`` (None when the task has none), ``area`` (pixels),
    ``bbox`` [x, y, w, h] in pixels).
    """

    task: str
    image: np.ndarray
    ids: np.ndarray
    none_value: int
    segments: list[dict[str, Any]]
    class_names: list[str]
    seconds: float
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    source: str = ""

    def summary(self) -> str:
        """``"4 segments (2 cat, 1 dog, 1 grass)"``."""
        counts: dict[str, int] = {}
        for s in self.segments:
            counts[s["class"]] = counts.get(s["class"], 0) + 1
        parts = [f"{n} {c}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        if len(parts) > 6:
            parts = parts[:6] + [f"... {len(parts) - 6} more classes"]
        noun = "segment" if len(self.segments) == 1 else "segments"
        return f"{len(self.segments)} {noun}" + (f" ({', '.join(parts)})" if parts else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.source,
            "height": int(self.ids.shape[0]),
            "width": int(self.ids.shape[1]),
            "task": self.task,
            "num_classes": len(self.class_names),
            "ids_meaning": "class index" if self.task == "semantic" else "segment id",
            "none_value": int(self.none_value),
            "seconds": round(float(self.seconds), 4),
            "segments": self.segments,
            "classes": list(self.class_names),
        }


def _bbox_xywh(mask: np.ndarray) -> list[int]:
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


class FrozenSegPredictor:
    """Run FrozenSeg on single images with a chosen vocabulary and task.

    Args:
        cfg: a FrozenSeg config (``frozenseg.get_cfg()`` + merges); it is cloned and frozen.
        vocabulary: a :class:`Vocabulary` (used verbatim: a dataset's class strings stay exactly
            as registered), a list of class names (normalised), or None for the default.
        thing_classes: indices of thing classes (overrides the vocabulary's).
        task: ``"panoptic"``, ``"semantic"`` or ``"instance"``.
        confidence_threshold: drop instances / segments scoring below it (default per task:
            :data:`DEFAULT_CONFIDENCE`). Panoptic and semantic segment scores are the mean, over
            the segment, of the pixel's class probability normalised over the vocabulary.
        model: an already built model (skips building and weight loading).

    ``MODEL.WEIGHTS`` is loaded when set (released or project checkpoints); a checkpoint that
    contains the frozen CLIP and SAM weights makes loading them from their own sources
    unnecessary. The vocabulary's text embeddings are computed once, when it is set (and reused
    from the disk cache in ``MODEL.FROZEN_SEG.TEXT_CACHE_DIR`` across runs).
    """

    def __init__(
        self,
        cfg,
        vocabulary: Vocabulary | Sequence[str] | None = None,
        thing_classes: Sequence[int] | None = None,
        task: str = "panoptic",
        confidence_threshold: float | None = None,
        model: torch.nn.Module | None = None,
        visualizer: SegmentationVisualizer | None = None,
    ):
        self.cfg = cfg.clone()
        self.cfg.freeze()
        self.model = model if model is not None else self._build_model(self.cfg)
        self.model.eval()
        if getattr(self.model, "use_sam_masks", False):
            logger.warning("TEST.USE_SAM_MASKS is ignored by the demo (no cached SAM proposals for new images).")
            self.model.use_sam_masks = False
        self.device = next(self.model.parameters()).device
        self.visualizer = visualizer or SegmentationVisualizer()
        self.task = ""
        self.confidence_threshold: float = 0.0
        self._explicit_threshold = confidence_threshold
        self.set_task(task)
        if vocabulary is None:
            vocabulary = default_vocabulary()
        elif not isinstance(vocabulary, Vocabulary):
            names = normalize_class_names(list(vocabulary))
            vocabulary = Vocabulary(names, infer_thing_classes(names), "list")
        self.set_vocabulary(vocabulary, thing_classes)

    @classmethod
    def from_config_file(cls, config_file: str, opts: Sequence[str] = (), **kwargs) -> "FrozenSegPredictor":
        """Build from a YAML config plus ``KEY VALUE`` overrides."""
        from frozenseg import get_cfg

        cfg = get_cfg()
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
        return cls(cfg, **kwargs)

    # -- setup ----------------------------------------------------------------------------------
    @staticmethod
    def _build_model(cfg) -> torch.nn.Module:
        from frozenseg import build_model, load_checkpoint
        from frozenseg.checkpoint import FROZEN_PREFIXES, read_state_dict

        if cfg.SEED >= 0:
            torch.manual_seed(cfg.SEED)
        t0 = time.perf_counter()
        weights = cfg.MODEL.WEIGHTS
        state = None
        load_frozen = True
        if weights:
            state = read_state_dict(os.path.expanduser(weights))
            load_frozen = not all(any(k.startswith(p) for k in state) for p in FROZEN_PREFIXES)
        model = build_model(cfg, load_frozen_weights=load_frozen)
        if state is not None:
            report = load_checkpoint(model, state)
            (logger.info if report.ok else logger.warning)("Loaded %s: %s", weights, report.summary())
        else:
            logger.warning(
                "MODEL.WEIGHTS is empty: the decoder has random weights and the results are "
                "meaningless. Pass --opts MODEL.WEIGHTS /path/to/frozenseg_checkpoint.pth."
            )
        logger.info("Model ready on %s in %.1f s", cfg.MODEL.DEVICE, time.perf_counter() - t0)
        return model

    def set_task(self, task: str, confidence_threshold: float | None = None) -> None:
        """Switch the output task (and the model's post-processing) without rebuilding."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
        self.task = task
        m = self.model
        m.semantic_on = True  # also gives the panoptic segment scores
        m.panoptic_on = task == "panoptic"
        m.instance_on = task == "instance"
        m.recall_on = False
        if confidence_threshold is not None:
            self._explicit_threshold = confidence_threshold
        thr = self._explicit_threshold
        self.confidence_threshold = float(DEFAULT_CONFIDENCE[task] if thr is None else thr)

    def set_vocabulary(self, vocabulary: Vocabulary | Sequence[str],
                       thing_classes: Sequence[int] | None = None) -> None:
        """Set the vocabulary and compute its text embeddings now (once).

        A :class:`Vocabulary` (from :func:`load_vocabulary`, already validated) is used verbatim,
        with its thing classes and colours; a list of class names is normalised first
        (:func:`normalize_class_names`). ``thing_classes`` overrides the vocabulary's.
        """
        if isinstance(vocabulary, Vocabulary):
            names, colors = list(vocabulary.class_names), vocabulary.colors
            if thing_classes is None:
                thing_classes = vocabulary.thing_classes
        else:
            names, colors = normalize_class_names(list(vocabulary), warn=False), None
        self.class_names = names
        self.class_colors = colors
        self.thing_classes = None if thing_classes is None else sorted(int(i) for i in thing_classes)
        self._thing_set = None if self.thing_classes is None else set(self.thing_classes)
        self.model.set_vocabulary(names, self.thing_classes)
        t0 = time.perf_counter()
        builder = getattr(self.model, "text_classifier_builder", None)
        if builder is not None:
            n_syn = sum(len(_synonyms(n)) for n in names)
            logger.info("Computing the text classifier of %d classes (%d synonyms)...", len(names), n_syn)
            with torch.no_grad():
                builder.build(names)
            where = getattr(builder, "cache_dir", "")
            logger.info(
                "Text classifier ready in %.1f s%s", time.perf_counter() - t0,
                f" (disk cache: {where})" if where else "",
            )

    # -- inference ------------------------------------------------------------------------------
    def _model_input(self, image: np.ndarray) -> dict[str, Any]:
        from torchvision.transforms.v2 import functional as TF

        from frozenseg.data.dataset_mappers.common import shortest_edge_size

        h, w = image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        size = shortest_edge_size(h, w, self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MAX_SIZE_TEST)
        if tuple(size) != (h, w):
            tensor = TF.resize(tensor, list(size), antialias=True)
        return {"image": tensor, "height": h, "width": w}

    def __call__(self, image: np.ndarray | str) -> Prediction:
        """Predict one image (a path, or an RGB uint8 (H, W, 3) array)."""
        source = ""
        if isinstance(image, (str, os.PathLike)):
            source = os.fspath(image)
            image = read_image(source)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}.")
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model([self._model_input(image)])[0]
            pred = self._to_prediction(image, out)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        pred.seconds = time.perf_counter() - t0
        pred.source = source
        return pred

    def _segment(self, seg_id: int, cls: int, mask: np.ndarray, score: float | None, isthing: bool) -> dict:
        name = self.class_names[cls]
        return {
            "id": int(seg_id),
            "category_id": int(cls),
            "class": _synonyms(name)[0],
            "class_name": name,
            "isthing": bool(isthing),
            "score": None if score is None else round(float(score), 4),
            "area": int(mask.sum()),
            "bbox": _bbox_xywh(mask),
        }

    def _is_thing(self, cls: int) -> bool:
        return self._thing_set is None or cls in self._thing_set

    def _to_prediction(self, image: np.ndarray, out: dict[str, Any]) -> Prediction:
        thr = self.confidence_threshold
        sem = out.get("sem_seg")
        prob = None
        if sem is not None:
            sem = sem.float()
            prob = sem / sem.sum(0, keepdim=True).clamp(min=1e-12)
        h, w = image.shape[:2]
        segments: list[dict[str, Any]] = []
        if self.task == "semantic":
            labels = prob.argmax(0)
            k = len(self.class_names)
            none = 255 if k < 255 else 65535
            ids = np.full((h, w), none, dtype=np.int64)
            labels_np = labels.cpu().numpy()
            conf = prob.gather(0, labels[None])[0].cpu().numpy()
            for cls in np.unique(labels_np):
                mask = labels_np == cls
                score = float(conf[mask].mean())
                if score < thr:
                    continue
                ids[mask] = cls
                segments.append(self._segment(int(cls), int(cls), mask, score, self._is_thing(int(cls))))
            segments.sort(key=lambda s: -s["area"])
        elif self.task == "panoptic":
            pan, infos = out["panoptic_seg"]
            pan_np = pan.cpu().numpy().astype(np.int64)
            ids = np.zeros((h, w), dtype=np.int64)
            for info in infos:
                mask = pan_np == info["id"]
                cls = int(info["category_id"])
                score = None
                if prob is not None and mask.any():
                    score = float(prob[cls].cpu().numpy()[mask].mean())
                if score is not None and score < thr:
                    continue
                ids[mask] = info["id"]
                segments.append(self._segment(info["id"], cls, mask, score, bool(info.get("isthing", True))))
            none = 0
        else:
            inst = out["instances"]
            scores = inst.scores.float().cpu().numpy()
            classes = inst.pred_classes.cpu().numpy()
            masks = inst.pred_masks.cpu().numpy().astype(bool)
            keep = [i for i in np.argsort(-scores, kind="stable")
                    if scores[i] >= thr and self._is_thing(int(classes[i])) and masks[i].any()]
            ids = np.zeros((h, w), dtype=np.int64)
            for new_id, i in reversed(list(enumerate(keep, start=1))):  # best on top
                ids[masks[i]] = new_id
            for new_id, i in enumerate(keep, start=1):
                segments.append(self._segment(new_id, int(classes[i]), masks[i], float(scores[i]), True))
            none = 0
        return Prediction(self.task, image, ids, none, segments, self.class_names, 0.0, raw=out)

    # -- visualisation and files ----------------------------------------------------------------
    def _class_color(self, cls: int) -> tuple[int, int, int]:
        """The vocabulary's own colour of class ``cls`` (a benchmark's), else a generated one."""
        return self.class_colors[cls] if self.class_colors else class_color(cls)

    def visualize(self, prediction: Prediction, legend: bool | None = None) -> np.ndarray:
        """The labelled colour overlay (RGB uint8). Semantic results get a legend panel on the
        right unless ``legend`` is False."""
        p = prediction
        vis_segments = []
        instance_index: dict[int, int] = {}
        for s in p.segments:
            cls = s["category_id"]
            if p.task != "semantic" and s["isthing"]:
                n = instance_index.get(cls, 0)
                instance_index[cls] = n + 1
                color = instance_color(cls, n, self._class_color(cls))
            else:
                color = self._class_color(cls)
            label = s["class"] if s["score"] is None or p.task == "semantic" else f"{s['class']} {s['score']:.0%}"
            vis_segments.append(VisSegment(s["id"], label, color))
        canvas = self.visualizer.draw_segments(p.image, p.ids, vis_segments)
        if p.task == "semantic" and legend is not False:
            total = float(p.ids.size)
            entries = [
                (f"{s['class']} {100.0 * s['area'] / total:.1f}%", self._class_color(s["category_id"]))
                for s in p.segments
            ]
            canvas = self.visualizer.draw_legend(canvas, entries, title="classes (% of image)")
        return canvas

    def save(self, prediction: Prediction, output: str, stem: str | None = None) -> dict[str, str]:
        """Write the overlay, the id PNG and the segments JSON.

        ``output`` is a directory (files ``<stem>_overlay.png``, ``<stem>_ids.png``,
        ``<stem>_segments.json``) or an image file path for the overlay (``.png``/``.jpg``;
        the other two go next to it as ``<name>_ids.png`` and ``<name>_segments.json``).
        Returns the paths written.
        """
        from PIL import Image

        if os.path.splitext(output)[1].lower() in (".png", ".jpg", ".jpeg"):
            overlay_path = output
            base = os.path.splitext(output)[0]
            directory = os.path.dirname(os.path.abspath(output))
        else:
            directory = output
            stem = stem or (os.path.splitext(os.path.basename(prediction.source))[0] if prediction.source else "image")
            base = os.path.join(directory, stem)
            overlay_path = base + "_overlay.png"
        os.makedirs(directory, exist_ok=True)
        ids_path, json_path = base + "_ids.png", base + "_segments.json"
        overlay = self.visualize(prediction)
        img = Image.fromarray(overlay)
        if overlay_path.lower().endswith((".jpg", ".jpeg")):
            img.save(overlay_path, quality=95)
        else:
            img.save(overlay_path)
        ids = prediction.ids
        dtype = np.uint8 if ids.max(initial=0) < 256 and prediction.none_value < 256 else np.uint16
        import cv2

        if not cv2.imwrite(ids_path, ids.astype(dtype)):
            raise OSError(f"Could not write {ids_path}.")
        meta = prediction.to_json()
        meta["ids_file"] = os.path.basename(ids_path)
        meta["ids_dtype"] = np.dtype(dtype).name
        meta["overlay_file"] = os.path.basename(overlay_path)
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        return {"overlay": overlay_path, "ids": ids_path, "segments": json_path}
