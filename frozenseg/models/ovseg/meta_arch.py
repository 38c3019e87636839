"""The OVSeg meta-architecture (docs/models/ovseg.md §2, §2.14, §3.A).

A MaskFormer-v1 proposal generator (``backbone``, ``sem_seg_head``) whose queries are classified
against CLIP text embeddings, and a mask-adapted CLIP (``clip_adapter``) that classifies each
proposal's masked crop; the two are ensembled geometrically (§2.11) into a semantic map (§2.12).
``criterion.empty_weight`` is part of the released checkpoints (docs/models/ovseg.md quirk 20). The CLIP
(``clip_adapter.clip_model``) is frozen; the backbone, the head and
``clip_adapter.non_object_embedding`` are trained (§3.A).

Provenance: ``OVSeg`` / ``OVSegDEMO`` of the OVSeg release (Liang et al., CVPR 2023).
Independent implementation.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...data.vocabulary import Vocabulary
from ...structures import SemanticScores, same_padded_size_groups
from ...utils.errors import ConfigValueError
from ...utils.registry import BACKBONE_REGISTRY, META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from ...modeling.backbone.text_classifier import TextClassifierBuilder
from .clip_adapter import (
    CLIP_WEIGHTS_KEY,
    OVSegClipAdapter,
    ovseg_class_scores,
    ovseg_demo_semantic_inference,
    masks_to_boxes_exclusive,
    ovseg_semantic_inference,
    prompt_templates,
)
from ...modeling.contract import BenchmarkStage, ImageFeatures, SegmentationModel
from .criterion import build_maskformer_criterion
from .config import add_ovseg_config
from ...modeling.postprocessing import sem_seg_postprocess
from ...modeling.inputs import checked_train_class_names, normalized_batch, prepare_image, prepare_targets

logger = logging.getLogger(__name__)

__all__ = ["OVSeg", "OVSegDEMO", "OVSegProposals", "BACKGROUND_CLASS"]

#: The class a one-class vocabulary is classified against (the release's demo appends it to the
#: user's list; here it is appended to a copy and never returned, see ``OVSeg.set_vocabulary``).
BACKGROUND_CLASS = "others"


class OVSegProposals(NamedTuple):
    """The valid proposals of one image exactly as OVSeg's CLIP sees them (docs/models/ovseg.md §2.8): N of the
    Q queries, those whose mask has a pixel above ``MASK_THR``; S = the CLIP input size."""

    crops: torch.Tensor  # (N, 3, S, S) uint8 unnormalised crops, background = MASK_FILL colour
    regions: torch.Tensor  # (N, 3, S, S) float, the CLIP-normalised crops CLIP encodes
    masks: torch.Tensor  # (N, 1, S, S) bool foreground of the crops
    boxes: torch.Tensor  # (N, 4) float tight boxes [x0, y0, x1, y1) in input-image pixels
    scores: torch.Tensor  # (N,) MaskFormer objectness 1 - p(no-object)
    query_indices: torch.Tensor  # (N,) int64 query of each proposal


def _mask_probs(mask_pred: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """(Q, Hp/4, Wp/4) mask logits -> (Q, H, W) probabilities at the input size (docs/models/ovseg.md §2.7:
    bilinear upsampling to the padded size, crop, sigmoid)."""
    masks = F.interpolate(mask_pred[None], size=padded_size, mode="bilinear", align_corners=False)[0]
    return masks[:, : image_size[0], : image_size[1]].sigmoid()


@META_ARCH_REGISTRY.register()
class OVSeg(SegmentationModel):
    """MaskFormer proposals classified by CLIP text embeddings and by a mask-adapted CLIP.

    Eval-mode input: a list of dicts with ``"image"`` ((3, H, W) RGB 0..255, uint8 or float,
    already resized: the CLIP crops are cut from it) and optional ``"height"``/``"width"``
    (output size; default the input size). Output per image: ``{"sem_seg": (K, height, width)}``
    unnormalised class scores (docs/models/ovseg.md §2.12), plus ``"sem_seg_unlabelled"`` ((height, width) bool)
    when the rule in use can leave pixels without any class (the demo mode, a one-class
    vocabulary): True where every class scores 0, which readers (the predictor) show as
    unlabelled instead of taking the argmax. Train-mode input additionally needs ``"instances"``
    with ``gt_classes`` (N,) in the training vocabulary and ``gt_masks`` (N, H, W).

    A one-class vocabulary ``[c]`` is classified against ``[c, "others"]`` (``BACKGROUND_CLASS``;
    with one class CLIP's softmax over the classes would be 1 for every proposal, which is why
    the release's demo appends "others" to the caller's list, docs/models/ovseg.md quirk 15); the output keeps c's
    channel only, (1, height, width), with the score 0 at pixels where "others" scores higher,
    so that an all-zero pixel means "unlabelled" as in the demo mode (:class:`OVSegDEMO`).
    """

    supported_tasks = ("semantic",)
    derived_buffers = ("criterion.empty_weight",)
    frozen_parts = {"clip_adapter.clip_model.": CLIP_WEIGHTS_KEY}
    #: Each class string is one prompt (no synonym split, §2.5).
    literal_vocabulary = True
    #: The release's demo setting (configs/ovseg/ovseg_swinB_vitL_demo.yaml, §2.14), applicable
    #: to any OVSeg config.
    demo_overrides = (
        "MODEL.META_ARCHITECTURE", "OVSegDEMO",
        "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", "0.0",
        "MODEL.CLIP_ADAPTER.MASK_THR", "0.35",
    )
    add_config = staticmethod(add_ovseg_config)
    #: The release's demo rule (one query per class, binary masks; ``OVSegDEMO``).
    demo = False

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        clip_adapter: OVSegClipAdapter,
        text_classifier_builder: TextClassifierBuilder,
        train_class_names: list[str] | None,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        clip_ensemble: bool = True,
        clip_ensemble_weight: float = 0.7,
        missing_train_vocabulary: str = "",
    ):
        """
        Args:
            backbone: Swin or DeepLab ResNet, features res2..res5.
            sem_seg_head: ``OpenVocabMaskFormerHead``.
            criterion: module with the buffer ``empty_weight`` (K_train + 1,), a ``weight_dict``
                and ``forward(outputs, targets) -> losses``.
            clip_adapter: the mask-adapted CLIP; its text tower encodes the class names.
            text_classifier_builder: encodes class names with the prompt templates (literal names).
            train_class_names: the training vocabulary (K_train literal names), or None.
            pixel_mean, pixel_std: normalisation of the segmentation input, RGB 0..255
                (ImageNet statistics in the released configs).
            size_divisibility: pad the normalised batch with 0 to a multiple of this (32).
            clip_ensemble: classify the proposals with CLIP too (``CLIP_ENSEMBLE``).
            clip_ensemble_weight: lambda of the ensemble (``CLIP_ENSEMBLE_WEIGHT``).
            missing_train_vocabulary: why ``train_class_names`` is None (a sentence; training
                refuses with it). Evaluation and the demo need no training vocabulary.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.clip_adapter = clip_adapter
        self.text_classifier_builder = text_classifier_builder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility
        self.clip_ensemble = clip_ensemble
        self.clip_ensemble_weight = clip_ensemble_weight
        self.missing_train_vocabulary = missing_train_vocabulary
        self.train_class_names = checked_train_class_names(train_class_names, criterion.empty_weight.shape[0] - 1)
        self.vocabulary: Vocabulary | None = None
        if self.train_class_names is not None:
            self.set_vocabulary(self.train_class_names)

    @classmethod
    def from_config(cls, cfg, *, device: str | torch.device | None = None, load_frozen_weights: bool = True):
        """Components from the config. ``device`` is not used: ``build_model`` builds on the CPU
        (then moves the model) or inside ``torch.device("meta")``. ``load_frozen_weights`` False
        reads no weight file (the CLIP keeps random weights until a checkpoint is loaded)."""
        from ...data.vocabulary import VocabularyError

        missing = ""
        try:
            train_class_names = cls.training_vocabulary(cfg)
        except VocabularyError as e:
            # evaluation and the demo do not need the training classes (OVSeg has no seen/unseen
            # weighting); training refuses with this sentence
            logger.info("No training vocabulary for OVSeg (%s); needed for training only.", e)
            train_class_names, missing = None, str(e)
        backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)
        sem_seg_head = SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, backbone.output_shape())
        clip_adapter = OVSegClipAdapter(cfg, load_clip_weights=load_frozen_weights)
        clip_dim = clip_adapter.non_object_embedding.shape[-1]
        if cfg.MODEL.SEM_SEG_HEAD.EMBEDDING_DIM != clip_dim:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.EMBEDDING_DIM is {cfg.MODEL.SEM_SEG_HEAD.EMBEDDING_DIM} but the CLIP model "
                f"{cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME!r} embeds texts in {clip_dim} dimensions; set "
                f"MODEL.SEM_SEG_HEAD.EMBEDDING_DIM to {clip_dim}."
            )
        ca = cfg.MODEL.CLIP_ADAPTER
        builder = TextClassifierBuilder(
            encoder=clip_adapter.text_encoder,
            templates=prompt_templates(ca.TEXT_TEMPLATES, ca.PREDEFINED_PROMPT_TEMPLATES),
            cache_dir="",
        )
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": build_maskformer_criterion(cfg),
            "clip_adapter": clip_adapter,
            "text_classifier_builder": builder,
            "train_class_names": train_class_names,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
            "clip_ensemble": ca.CLIP_ENSEMBLE,
            "clip_ensemble_weight": ca.CLIP_ENSEMBLE_WEIGHT,
            "missing_train_vocabulary": missing,
        }

    # ------------------------------------------------------------------------------------------
    # Vocabulary and checkpoints
    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def set_vocabulary(self, class_names: Sequence[str], thing_classes: Sequence[int] | None = None) -> None:
        """Set the vocabulary used in eval mode: a literal
        :class:`~frozenseg.data.vocabulary.Vocabulary` (each class string is one prompt, commas
        kept, outer spaces stripped; docs/models/ovseg.md §2.5). ``class_names`` is copied, never modified.

        Args:
            class_names: K >= 1 class strings (K = 1: see the class docstring).
            thing_classes: indices of the thing classes (metadata only; the output is semantic).
        Raises ``ValueError`` (keeping the previous vocabulary) on an empty vocabulary or a blank
        class.
        """
        self.vocabulary = Vocabulary(list(class_names), thing_classes, literal=True)

    def _inference_class_names(self) -> list[str]:
        """The vocabulary's classes, with ``BACKGROUND_CLASS`` appended to a one-class vocabulary."""
        if self.vocabulary is None:
            raise ValueError("No vocabulary set: call model.set_vocabulary(class_names) before inference.")
        names = list(self.vocabulary.class_names)
        return names + [BACKGROUND_CLASS] if len(names) == 1 else names

    def _text_classifier(self, class_names: list[str]) -> torch.Tensor:
        """(K + 1, D): the L2-normalised text embedding of each class (prompt-template mean,
        docs/models/ovseg.md §2.5), then the normalised no-object embedding."""
        rows, _ = self.text_classifier_builder.build(class_names, literal=True)
        return self.clip_adapter.with_non_object(rows.to(self.device))

    def encode_vocabulary(self, cached: bool = True) -> str:
        """The text classifier of the current vocabulary, computed now (memory cache only)."""
        if self.vocabulary is not None:
            self.text_classifier_builder.build(self._inference_class_names(), literal=True, cached=cached)
        return ""

    def inference_memory(self, input_size: tuple[int, int], output_size: tuple[int, int]) -> int:
        """The contract's estimate plus the Q query mask probabilities at the padded input size
        (float32, with their resize) and the crops' masks."""
        q = self.sem_seg_head.predictor.num_queries
        return super().inference_memory(input_size, output_size) + 3 * 4 * q * input_size[0] * input_size[1]

    def benchmark_stages(self) -> tuple[BenchmarkStage, ...]:
        """The proposal generator's backbone and MaskFormer head, then the CLIP adapter (crop,
        fill and resize the valid proposals, the mask-prompted ViT, scoring; §2)."""
        return (
            BenchmarkStage("backbone", "backbone"),
            BenchmarkStage("head", "sem_seg_head"),
            BenchmarkStage("clip_on_crops", "clip_adapter"),
        )

    def check_checkpoint_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Called by ``frozenseg.load_checkpoint`` before loading: refuses, with one sentence, a
        checkpoint whose CLIP has another width or a mask embedding of another depth than
        ``MASK_PROMPT_DEPTH``, or none while ``MASK_PROMPT_FWD`` needs it (docs/models/ovseg.md quirk 18).
        A checkpoint without any CLIP weights is not checked (the CLIP is a frozen part)."""
        prefix = next(iter(self.frozen_parts))
        if any(k.startswith(prefix) for k in state):
            self.clip_adapter.check_state(state, source, prefix)

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------
    def forward(self, batched_inputs: list[dict]):
        """Train mode: dict of weighted losses. Eval mode: one ``{"sem_seg"}`` dict per image."""
        if len(batched_inputs) == 0:
            raise ValueError("OVSeg.forward received an empty batch.")
        if self.training:
            if self.train_class_names is None:
                raise ConfigValueError(
                    "Training needs a training vocabulary: set DATASETS.TRAIN to a registered dataset"
                    + (f" ({self.missing_train_vocabulary})" if self.missing_train_vocabulary else ".")
                )
            images = [prepare_image(x, self.device) for x in batched_inputs]
            batch, _, outputs = self._run_head(images, self.train_class_names)
            targets = prepare_targets(batched_inputs, tuple(batch.tensor.shape[-2:]), self.device)
            losses = self.criterion(outputs, targets)
            weights = self.criterion.weight_dict
            return {k: v * weights[k] for k, v in losses.items() if k in weights}
        self._inference_class_names()  # no vocabulary: one sentence before the encoders run
        return self.classify_images(batched_inputs, self.encode_images(batched_inputs))

    def encode_images(self, batched_inputs: list[dict]) -> list[ImageFeatures]:
        """Eval mode, per image, everything that does not read the vocabulary: the proposal
        generator's masks and class embeddings and the mask-prompted CLIP features of the valid
        proposals' crops. The head runs once per group of images that pad to the same size, so
        every image gets the result it gets in a batch of one."""
        images = [prepare_image(x, self.device) for x in batched_inputs]
        encoded: list[ImageFeatures | None] = [None for _ in batched_inputs]
        for group in same_padded_size_groups([img.shape[-2:] for img in images], self.size_divisibility):
            batch, _, outputs = self._run_head([images[i] for i in group], None)
            padded_size = tuple(batch.tensor.shape[-2:])
            for j, i in enumerate(group):
                image_size = tuple(batch.image_sizes[j])
                x = batched_inputs[i]
                output_size = (int(x.get("height", image_size[0])), int(x.get("width", image_size[1])))
                mask_pred = outputs["pred_masks"][j]
                masks = _mask_probs(mask_pred, padded_size, tuple(images[i].shape[-2:]))
                tensors = {"mask_pred": mask_pred, "class_embed": outputs["pred_class_embed"][:, j : j + 1]}
                if self.clip_ensemble:
                    tensors["crop_features"], tensors["valid"] = self.clip_adapter(images[i], masks)
                else:
                    tensors["valid"] = (masks > self.clip_adapter.mask_thr).flatten(1).any(dim=1)
                encoded[i] = ImageFeatures(tensors, {"padded_size": padded_size, "output_size": output_size,
                                                     "image_size": tuple(images[i].shape[-2:])})
        return encoded

    def classify_images(self, batched_inputs: list[dict], features: Sequence[ImageFeatures]) -> list[dict]:
        """Eval mode: the text classifier of the vocabulary on each image's
        :meth:`encode_images` features, the ensemble, and the semantic scores."""
        text_classifier = self._text_classifier(self._inference_class_names())
        results = []
        for f in features:
            scores = self._semantic_inference(f, text_classifier)
            result = {"sem_seg_scores": scores}
            if self.full_semantic_map:
                sem_seg = scores.full()
                result["sem_seg"] = sem_seg
                if scores.marks_unlabelled:
                    result["sem_seg_unlabelled"] = (sem_seg == 0).all(dim=0)
            results.append(result)
        return results

    def _run_head(self, images: list[torch.Tensor], class_names: list[str] | None):
        """The MaskFormer part on (3, H, W) float 0..255 images: (the padded normalised
        ``ImageList``, the (K' + 1, D) text classifier of ``class_names``, the head's outputs);
        ``class_names`` None: no text classifier (None) and no class logits, only the
        vocabulary-free outputs (``pred_masks``, ``pred_class_embed``)."""
        batch = normalized_batch(images, self.pixel_mean, self.pixel_std, self.size_divisibility)
        features = self.backbone(batch.tensor)
        text_classifier = None if class_names is None else self._text_classifier(class_names)
        return batch, text_classifier, self.sem_seg_head(features, text_classifier)

    @torch.no_grad()
    def proposals(self, batched_inputs: list[dict]) -> list[OVSegProposals]:
        """The valid proposals of each image, cut exactly as :meth:`forward` cuts them for CLIP
        (docs/models/ovseg.md §2.7-2.8: masks at the input size, ``> MASK_THR``, tight box, fill, squash to the
        CLIP input size), e.g. for mining mask-noun pairs (docs/models/ovseg.md §3.B1). The objectness scores
        use the current vocabulary (:meth:`set_vocabulary`; the training vocabulary by default).

        Args:
            batched_inputs: eval-mode inputs (``"image"`` (3, H, W) RGB 0..255, already resized).
        Returns:
            one :class:`OVSegProposals` per image (N = 0 when no mask has a pixel above the
            threshold).
        """
        if len(batched_inputs) == 0:
            raise ValueError("OVSeg.proposals received an empty batch.")
        images = [prepare_image(x, self.device) for x in batched_inputs]
        batch, _, outputs = self._run_head(images, self._inference_class_names())
        padded_size = tuple(batch.tensor.shape[-2:])
        adapter = self.clip_adapter
        results = []
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            masks = _mask_probs(outputs["pred_masks"][i], padded_size, (height, width))
            crops = adapter.crop_regions(image, masks)
            objectness = 1.0 - outputs["pred_logits"][i].softmax(-1)[:, -1]
            results.append(OVSegProposals(
                crops=crops.unnorm_regions.clamp(0, 255).round().to(torch.uint8),
                regions=crops.regions,
                masks=crops.region_masks > 0,
                boxes=masks_to_boxes_exclusive(masks[crops.valid] > adapter.mask_thr),
                scores=objectness[crops.valid],
                query_indices=crops.valid.nonzero()[:, 0],
            ))
        return results

    def _semantic_inference(self, features: ImageFeatures, text_classifier: torch.Tensor) -> SemanticScores:
        """The semantic scores of one image (docs/models/ovseg.md §2.7-2.12; §2.14 in demo mode).

        Args:
            features: the image's :meth:`encode_images` features: ``mask_pred`` (Q, Hp/4, Wp/4)
                mask logits at stride 4 of the padded input, ``class_embed`` (L', 1, Q, D),
                ``valid`` (Q,) bool and, with the CLIP ensemble, ``crop_features`` (N, D) of the N valid
                proposals' crops.
            text_classifier: (K' + 1, D) text rows, no-object last.
        Returns:
            the (K, height, width) scores as :class:`~frozenseg.structures.SemanticScores`
            (computed a few classes at a time on request).
        """
        t, meta = features.tensors, features.meta
        height, width = meta["image_size"]
        output_size = meta["output_size"]
        mf_logits = self.sem_seg_head.predictor.classify(t["class_embed"], text_classifier)[-1][0]
        masks = _mask_probs(t["mask_pred"], meta["padded_size"], (height, width))
        valid = t["valid"]
        clip_logits = None
        if self.clip_ensemble:  # (0, K' + 1) when no proposal has a pixel above MASK_THR
            clip_logits = self.clip_adapter.classify(t["crop_features"], text_classifier)
        background = len(self.vocabulary) == 1
        if self.demo:
            scores, keep = ovseg_class_scores(mf_logits, clip_logits, valid, self.clip_ensemble_weight)
            demo_scores = scores[valid[keep]]
            binary = masks[valid] > self.clip_adapter.mask_thr

            def infer(classes: slice) -> torch.Tensor:
                return ovseg_demo_semantic_inference(
                    demo_scores, binary, num_selecting=len(self.vocabulary), classes=classes
                )
        else:
            def infer(classes: slice) -> torch.Tensor:
                return ovseg_semantic_inference(
                    mf_logits, masks, clip_logits, valid, self.clip_ensemble_weight, classes=classes
                )

        def compute(c0: int, c1: int) -> torch.Tensor:
            if background:  # one class scored against "others": both are needed, in one chunk
                both = sem_seg_postprocess(infer(slice(0, 2)), (height, width), *output_size)
                return torch.where(both[0] >= both[1], both[0], 0.0)[None]
            return sem_seg_postprocess(infer(slice(c0, c1)), (height, width), *output_size)

        return SemanticScores(
            len(self.vocabulary), output_size, compute, dtype=masks.dtype, device=masks.device,
            marks_unlabelled=self.demo or background,
        )


@META_ARCH_REGISTRY.register()
class OVSegDEMO(OVSeg):
    """OVSeg with the release demo's rule (``META_ARCHITECTURE: "OVSegDEMO"``, docs/models/ovseg.md §2.14): only
    the valid proposals (a mask pixel above ``MASK_THR``) take part; each class keeps the one
    proposal that scores it highest (scores as in OVSeg: with ``CLIP_ENSEMBLE_WEIGHT`` 0, the
    demo config, CLIP's alone), and the kept proposals' score rows are summed over their binary
    masks. Pixels covered by no kept mask have score 0 for every class: "unlabelled" is an
    all-zero score vector in ``sem_seg``, marked in ``sem_seg_unlabelled`` (the release's visualiser tests class 0's score only;
    with strictly positive probabilities that is the same pixels)."""

    demo = True
