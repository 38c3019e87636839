"""The model contract: what a meta-architecture provides to the rest of the package.

Every model registered in ``META_ARCH_REGISTRY`` (``MODEL.META_ARCHITECTURE``) is a subclass of
:class:`SegmentationModel`. Shared code — the trainer and its evaluation loop, the evaluators,
the predictor, test-time augmentation, checkpoint loading, precision and int8 switches, the
benchmark, the demos and the tools — calls only what this module declares; it never asks a model
for an attribute the contract does not name, nor tests which model it is.

Inputs and outputs (Detectron2's convention: a list of dicts, one per image)
============================================================================
Each input dict holds ``"image"``, a (3, H, W) RGB tensor, uint8 or float 0..255, already resized
by the data mapper; optional ``"height"``, ``"width"``: the output size in pixels (default the
input size); in training ``"instances"`` with ``gt_classes`` (N,) int64 (indices into the training
vocabulary) and ``gt_masks`` (N, H, W) bool; optional ``"sam_masks"`` (M, H, W) float SAM
proposal logits, read only by a model whose :attr:`~SegmentationModel.use_sam_masks` is True.

``forward`` in train mode returns a dict of scalar losses, already weighted (the trainer sums
them). In eval mode it returns one dict per image with, for each enabled task (:attr:`tasks`):

============  =================================================================================
task          output
============  =================================================================================
semantic      ``"sem_seg_scores"``: a :class:`~frozenseg.structures.SemanticScores`, the
              (K, height, width) non-negative class scores (a pixel's class is the arg-max)
              computed a few classes at a time on request, with ``marks_unlabelled`` True when
              pixels whose scores are all 0 have no class; when :attr:`full_semantic_map` is True
              also ``"sem_seg"``, that map as one (K, height, width) float tensor (Detectron2's
              output), and ``"sem_seg_unlabelled"``: (height, width) bool, the pixels the model
              leaves without a class, where it can leave any
panoptic      ``"panoptic_seg"``: ((height, width) int segment ids, 0 = none, and a list of
              ``{"id", "category_id", "isthing"}`` segment records)
instance      ``"instances"``: :class:`~frozenseg.structures.Instances` with ``pred_masks``
              (N, height, width) bool, ``pred_classes`` (N,) int64, ``scores`` (N,) float
proposals     ``"proposals"``: (P, height, width) float class-agnostic mask probabilities, for
              recall evaluation
============  =================================================================================

K is the size of the vocabulary set by :meth:`~SegmentationModel.set_vocabulary`. The full
semantic map takes 4·K·height·width bytes (58 GB for 1203 classes on a 12-megapixel photo), so the
predictor, the demos and the package's evaluators switch it off and read ``"sem_seg_scores"``;
a caller that needs the tensor keeps :attr:`~SegmentationModel.full_semantic_map` on.

Adding a model: ``docs/adding_a_model.md``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..layers.switches import FastPathModule, FrozenEncoderModule
from ..structures.semantic import DEFAULT_CHUNK_BYTES

__all__ = ["TASKS", "BenchmarkStage", "ImageFeatures", "FastPathModule", "FrozenEncoderModule", "SegmentationModel"]

#: Activations of an eval forward per input pixel (bytes), for :meth:`SegmentationModel.inference_memory`.
ACTIVATION_BYTES_PER_INPUT_PIXEL = 4096
#: The per-pixel maps of a semantic summary and of the predictor's result (labels, scores, ids),
#: in bytes per output pixel.
SUMMARY_BYTES_PER_PIXEL = 64

#: Every output task a model may give, in the order the predictor offers them.
TASKS: tuple[str, ...] = ("panoptic", "semantic", "instance", "proposals")


@dataclass(frozen=True)
class BenchmarkStage:
    """One timed part of a model's eval-mode forward (``tools/benchmark.py``).

    Attributes:
        name: the stage's key (``<name>_s`` in the benchmark's results).
        module: dotted attribute path of the timed submodule (``"sam"``, ``"clip_adapter"``);
            its forward calls are timed with hooks.
        gflop: ``(module, args, kwargs) -> GFLOP`` of one call of that module (2 FLOP per
            multiply-add); None counts the call with fvcore's jit analysis.
        counted_by: how ``gflop`` counts, for the report ("fvcore" or "formula").
    """

    name: str
    module: str
    gflop: Callable[[nn.Module, tuple, dict], float] | None = None
    counted_by: str = "fvcore"


@dataclass
class ImageFeatures:
    """What an eval forward computes for one image before it reads the vocabulary: every
    tensor up to the class logits (a model's own names and shapes), and the sizes it needs
    (``meta``). Opaque to shared code, which keeps it (the predictor's image cache) and hands it
    back to :meth:`SegmentationModel.classify_images`."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        """Memory of the tensors, in bytes."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


class SegmentationModel(nn.Module, abc.ABC):
    """Base class of every meta-architecture: the contract shared code relies on.

    Subclasses implement :meth:`forward`, :meth:`set_vocabulary` and :meth:`from_config`-style
    construction (``@configurable``), declare the class attributes below, and override the
    methods whose default does not fit. See the module docstring for the inputs and outputs.
    """

    #: The tasks the model can output (a subset of :data:`TASKS`, in that order).
    supported_tasks: ClassVar[tuple[str, ...]] = ("semantic",)
    #: True: each class string is one prompt, verbatim ("cat,kitten" is one class named so);
    #: False: a class string is a comma-separated list of synonyms.
    literal_vocabulary: ClassVar[bool] = False
    #: The frozen parts a checkpoint may omit: ``{state-dict prefix: config key that supplies
    #: those weights instead}``.
    frozen_parts: ClassVar[Mapping[str, str]] = {}
    #: State-dict keys computed from the config rather than learned, whose size follows the
    #: number of training classes (the criterion's class weights): a checkpoint trained on
    #: another dataset has them in another shape, and loading keeps the model's own.
    derived_buffers: ClassVar[tuple[str, ...]] = ()
    #: ``KEY VALUE`` config overrides that select the release's demo rule of this model
    #: (``demo/demo.py --ovseg-demo-mode``); empty when the model has none.
    demo_overrides: ClassVar[tuple[str, ...]] = ()

    #: True when the model reads each input's ``"sam_masks"`` (``TEST.USE_SAM_MASKS``); the
    #: predictor turns it off, since new images have no cached proposals.
    use_sam_masks: bool = False
    #: True: eval outputs carry the full ``"sem_seg"`` (K, height, width) tensor besides
    #: ``"sem_seg_scores"`` (Detectron2's output); False: only the scores object, whose memory
    #: does not grow with the number of classes.
    full_semantic_map: bool = True
    #: The tasks chosen with :meth:`set_tasks` (None: every supported task).
    _enabled_tasks: tuple[str, ...] | None = None

    @staticmethod
    def add_config(cfg) -> None:
        """Add this model's config keys (with their defaults) to ``cfg``, a config holding the
        shared keys only. Called when a config file or override selects the model, before its
        values are merged (the ``add_*_config`` functions of Mask2Former). Default: no keys."""

    @classmethod
    def training_vocabulary(cls, cfg) -> list[str] | None:
        """The class strings ``cfg`` trains on: the training vocabulary, which also decides which
        test classes count as seen in evaluation. Default: the vocabulary of
        ``DATASETS.TRAIN[0]``; None without a training set."""
        from ..data.builtin import training_vocabulary

        return training_vocabulary(cfg)

    # ---------------------------------------------------------------------------------------------
    # Required
    # ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        """Train mode: weighted losses. Eval mode: one output dict per image (module docstring)."""

    @abc.abstractmethod
    def set_vocabulary(self, class_names: Sequence[str], thing_classes: Sequence[int] | None = None) -> None:
        """Set the classes of eval-mode outputs: one string per class (synonyms separated by ","
        unless :attr:`literal_vocabulary`), and the indices of the thing classes (default all).
        Raises ``ValueError`` and keeps the previous vocabulary on an empty vocabulary or class."""

    # ---------------------------------------------------------------------------------------------
    # Tasks
    # ---------------------------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks the next eval-mode forward outputs (default: every supported task)."""
        return self.supported_tasks if self._enabled_tasks is None else self._enabled_tasks

    def set_tasks(self, tasks: Iterable[str]) -> None:
        """Choose the outputs of eval-mode forwards. Raises ``ValueError`` naming the supported
        tasks for one the model cannot give (:meth:`checked_tasks`)."""
        self._enabled_tasks = self.checked_tasks(tasks)

    @classmethod
    def checked_tasks(cls, tasks: Iterable[str]) -> tuple[str, ...]:
        """``tasks`` in :attr:`supported_tasks` order; ``ValueError`` (one sentence naming the
        supported tasks) for a task the model cannot give."""
        wanted = set(tasks)
        unknown = wanted.difference(cls.supported_tasks)
        if unknown:
            raise ValueError(
                f"{cls.__name__} does not give {' or '.join(sorted(unknown))} output; it gives "
                f"{', '.join(cls.supported_tasks)} output only."
            )
        return tuple(t for t in cls.supported_tasks if t in wanted)

    # ---------------------------------------------------------------------------------------------
    # Vocabulary
    # ---------------------------------------------------------------------------------------------
    def encode_vocabulary(self, cached: bool = True) -> str:
        """Compute now (and cache) whatever the current vocabulary needs before the first image,
        typically its text embeddings; returns where they are cached on disk ("" for none).
        ``cached`` False computes everything afresh and stores nothing (to time it). Default:
        nothing to compute."""
        return ""

    # ---------------------------------------------------------------------------------------------
    # Checkpoints
    # ---------------------------------------------------------------------------------------------
    def check_checkpoint_state(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Called by :func:`frozenseg.load_checkpoint` before loading ``state`` (named ``source``
        in messages): raise :class:`~frozenseg.utils.errors.CheckpointError` with one sentence for
        a checkpoint the model can tell is wrong beyond tensor shapes. Default: accept."""

    # ---------------------------------------------------------------------------------------------
    # Speed switches and measurement
    # ---------------------------------------------------------------------------------------------
    def encode_images(self, batched_inputs: list[dict]) -> list[ImageFeatures] | None:
        """Eval mode: the vocabulary-free part of the forward, one :class:`ImageFeatures` per
        image, such that ``classify_images(batched_inputs, encode_images(batched_inputs))`` equals
        ``forward(batched_inputs)`` exactly, for any vocabulary and tasks set in between. None
        (the default) when the model does not split its forward: callers then run
        :meth:`forward`."""
        return None

    def classify_images(self, batched_inputs: list[dict], features: Sequence[ImageFeatures]) -> list[dict]:
        """Eval mode: the outputs of :meth:`forward` from the images' :meth:`encode_images`
        features with the current vocabulary, tasks and thresholds (text classification and
        post-processing only)."""
        raise NotImplementedError(f"{type(self).__name__} does not split its forward (encode_images gives None).")

    def inference_memory(self, input_size: tuple[int, int], output_size: tuple[int, int]) -> int:
        """Estimated peak memory, in bytes beyond the weights, of an eval forward of one image of
        ``input_size`` (H, W) giving outputs of ``output_size`` (H, W), for the enabled tasks.
        The web demo refuses a request whose estimate exceeds its budget. Default:
        :data:`ACTIVATION_BYTES_PER_INPUT_PIXEL` per input pixel and, per output pixel, the
        semantic summaries (:class:`~frozenseg.structures.SemanticScores`); models that hold
        per-query maps at the output size add them."""
        return (ACTIVATION_BYTES_PER_INPUT_PIXEL * input_size[0] * input_size[1]
                + SUMMARY_BYTES_PER_PIXEL * output_size[0] * output_size[1] + 4 * DEFAULT_CHUNK_BYTES)

    def benchmark_stages(self) -> tuple[BenchmarkStage, ...]:
        """The timed parts of the eval-mode forward, in forward order (default none: the whole
        forward is one stage)."""
        return ()

    def set_fast_inference(self, enabled: bool) -> None:
        """Switch the exact fast inference paths (:class:`FastPathModule`) of every submodule."""
        for m in self.modules():
            if isinstance(m, FastPathModule):
                m.fast_inference = bool(enabled)

    def set_frozen_encoders_dtype(self, dtype: torch.dtype | None) -> None:
        """Set the autocast dtype of every frozen encoder (:class:`FrozenEncoderModule`); None =
        float32."""
        for m in self.modules():
            if isinstance(m, FrozenEncoderModule):
                m.compute_dtype = dtype

    def int8_modules(self) -> dict[str, nn.Module]:
        """``{qualified name: submodule}`` whose ``nn.Linear`` layers ``MODEL.INT8_CPU`` quantises:
        those each frozen encoder names (:meth:`FrozenEncoderModule.int8_modules`)."""
        roots: dict[str, nn.Module] = {}
        for name, m in self.named_modules():
            if isinstance(m, FrozenEncoderModule):
                prefix = f"{name}." if name else ""
                roots.update({prefix + k: v for k, v in m.int8_modules().items()})
        return roots

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bad = [t for t in cls.supported_tasks if t not in TASKS]
        if bad:
            raise TypeError(f"{cls.__name__}.supported_tasks names unknown tasks {bad}; choose from {TASKS}.")
