"""The FrozenSeg meta-architecture (docs/models/frozenseg.md §1, §6, §7).

Provenance: FrozenSeg (Chen et al., 2024) on top of FC-CLIP (Yu et al., 2023) and Mask2Former
(Cheng et al., 2022). The frozen CLIP (``backbone``) and SAM image encoder (``sam``) are never
trained; ``sem_seg_head`` (pixel decoder + transformer decoder) and ``void_embedding`` are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...structures import ImageList, SemanticScores, same_padded_size_groups
from ...utils.registry import BACKBONE_REGISTRY, META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from ...data.vocabulary import Vocabulary
from ...modeling.backbone.text_classifier import TextClassifierBuilder
from ...modeling.criterion import SetCriterion
from .criterion import build_criterion
from .head import FrozenSegHead  # noqa: F401  (registers the head and its decoders)
from .pixel_decoder import SAM_EMBED
from ...modeling.open_vocab import get_classification_logits
from ...modeling.postprocessing import (
    geometric_ensemble,
    instance_inference,
    mask_proposals_for_recall,
    panoptic_inference,
    sam_proposal_ensemble,
    resize_masks_to_output,
    semantic_inference,
    semantic_only_inference,
)
from ...layers import ShapeSpec
from ...modeling.sam import SAMImageEncoder, sam_encoder_gflop
from ...modeling.contract import BenchmarkStage, ImageFeatures, SegmentationModel
from ...modeling.inputs import checked_train_class_names, normalized_batch, prepare_image, prepare_targets
from .config import add_frozenseg_config

logger = logging.getLogger(__name__)

__all__ = ["FrozenSeg"]


@dataclass(frozen=True)
class _Classifier:
    """A text classifier: ``rows`` (K' + 1, D) L2-normalised synonym embeddings followed by the
    void row; ``num_templates[k]`` synonyms per class (``sum == K'``)."""

    rows: torch.Tensor
    num_templates: list[int]


@dataclass(frozen=True)
class _Geometry:
    """Sizes (height, width) in pixels of one image: unpadded input, padded batch, output."""

    image_size: tuple[int, int]
    padded_size: tuple[int, int]
    output_size: tuple[int, int]


#: The Mask2Former switch attribute of each task.
_TASK_FLAGS = {"panoptic": "panoptic_on", "semantic": "semantic_on", "instance": "instance_on", "proposals": "recall_on"}


@META_ARCH_REGISTRY.register()
class FrozenSeg(SegmentationModel):
    """Frozen CLIP + frozen SAM + trainable Mask2Former-style decoder.

    Eval-mode input: a list of dicts with ``"image"`` ((3, H, W) RGB 0..255, uint8 or float) and
    optional ``"height"``/``"width"`` (output size; default the input size) and, with
    ``TEST.USE_SAM_MASKS``, ``"sam_masks"`` ((M, H, W) SAM proposal logits at input resolution).
    Train-mode input additionally needs ``"instances"`` with ``gt_classes`` (N,) and
    ``gt_masks`` (N, H, W), in the training vocabulary.
    """

    supported_tasks = ("panoptic", "semantic", "instance", "proposals")
    derived_buffers = ("criterion.empty_weight",)
    frozen_parts = {
        "backbone.clip_model.": "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS",
        "sam.image_encoder.": "MODEL.SAM_CHECKPOINT",
    }
    add_config = staticmethod(add_frozenseg_config)

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sam: SAMImageEncoder,
        sem_seg_head: nn.Module,
        criterion: SetCriterion,
        text_classifier_builder: TextClassifierBuilder,
        embed_dim: int,
        train_class_names: list[str] | None,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        object_mask_threshold: float = 0.0,
        overlap_threshold: float = 0.8,
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        recall_on: bool = False,
        test_topk_per_image: int = 100,
        geometric_ensemble_alpha: float = 0.4,
        geometric_ensemble_beta: float = 0.8,
        ensemble_on_valid_mask: bool = False,
        use_sam_masks: bool = False,
        sam_mask_pred_alpha: float = 0.2,
    ):
        super().__init__()
        self.backbone = backbone
        self.sam = sam
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.void_embedding = nn.Embedding(1, embed_dim)
        self.text_classifier_builder = text_classifier_builder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.recall_on = recall_on
        self.test_topk_per_image = test_topk_per_image
        self.geometric_ensemble_alpha = geometric_ensemble_alpha
        self.geometric_ensemble_beta = geometric_ensemble_beta
        self.ensemble_on_valid_mask = ensemble_on_valid_mask
        self.use_sam_masks = use_sam_masks
        self.sam_mask_pred_alpha = sam_mask_pred_alpha
        self.train_class_names = checked_train_class_names(train_class_names, criterion.num_classes)
        self.vocabulary: Vocabulary | None = None
        if self.train_class_names is not None:
            self.set_vocabulary(self.train_class_names)

    @classmethod
    def from_config(cls, cfg, *, device: str | torch.device | None = None, load_frozen_weights: bool = True):
        backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(
            cfg, load_pretrained=load_frozen_weights, device=device
        )
        if cfg.MODEL.FROZEN_SEG.EMBED_DIM != backbone.dim_latent:
            raise ValueError(
                f"MODEL.FROZEN_SEG.EMBED_DIM is {cfg.MODEL.FROZEN_SEG.EMBED_DIM} but the CLIP "
                f"model {cfg.MODEL.FROZEN_SEG.CLIP_MODEL_NAME!r} embeds images and texts in "
                f"{backbone.dim_latent} dimensions; set "
                f"MODEL.FROZEN_SEG.EMBED_DIM to {backbone.dim_latent}."
            )
        sam = SAMImageEncoder(cfg, load_checkpoint=load_frozen_weights, device=device)
        # the SAM embedding: stride 16 of SAM's own S x S input
        shapes = {**backbone.output_shape(), SAM_EMBED: ShapeSpec(channels=sam.out_chans, stride=16)}
        sem_seg_head = SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, shapes)
        mf = cfg.MODEL.MASK_FORMER
        train_class_names = cls.training_vocabulary(cfg)
        if train_class_names is None:
            logger.warning("No training vocabulary configured: every class counts as unseen.")
        return {
            "backbone": backbone,
            "sam": sam,
            "sem_seg_head": sem_seg_head,
            "criterion": build_criterion(cfg),
            "text_classifier_builder": TextClassifierBuilder(cfg, encoder=backbone),
            "embed_dim": cfg.MODEL.FROZEN_SEG.EMBED_DIM,
            "train_class_names": train_class_names,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "object_mask_threshold": mf.TEST.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": mf.TEST.OVERLAP_THRESHOLD,
            "semantic_on": mf.TEST.SEMANTIC_ON,
            "panoptic_on": mf.TEST.PANOPTIC_ON,
            "instance_on": mf.TEST.INSTANCE_ON,
            "recall_on": mf.TEST.RECALL_ON,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "geometric_ensemble_alpha": cfg.MODEL.FROZEN_SEG.GEOMETRIC_ENSEMBLE_ALPHA,
            "geometric_ensemble_beta": cfg.MODEL.FROZEN_SEG.GEOMETRIC_ENSEMBLE_BETA,
            "ensemble_on_valid_mask": cfg.MODEL.FROZEN_SEG.ENSEMBLE_ON_VALID_MASK,
            "use_sam_masks": cfg.TEST.USE_SAM_MASKS,
            "sam_mask_pred_alpha": cfg.TEST.SAM_MASK_PRED_ALPHA,
        }

    @classmethod
    def training_vocabulary(cls, cfg) -> list[str] | None:
        """``MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE`` when set, else ``DATASETS.TRAIN[0]``'s."""
        from ...data.builtin import training_vocabulary

        return training_vocabulary(cfg, cfg.MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE)

    # ------------------------------------------------------------------------------------------
    # The model contract: tasks, vocabulary, benchmark stages
    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def tasks(self) -> tuple[str, ...]:
        """The enabled outputs (the Mask2Former switches ``panoptic_on``, ``semantic_on``,
        ``instance_on``, ``recall_on``)."""
        return tuple(t for t in self.supported_tasks if getattr(self, _TASK_FLAGS[t]))

    def set_tasks(self, tasks) -> None:
        wanted = self.checked_tasks(tasks)
        for task, flag in _TASK_FLAGS.items():
            setattr(self, flag, task in wanted)

    def encode_vocabulary(self, cached: bool = True) -> str:
        """The text classifier of the current vocabulary, computed now (memory and disk caches)."""
        if self.vocabulary is not None:
            self.text_classifier_builder.build(self.vocabulary.class_names, cached=cached)
        return self.text_classifier_builder.cache_dir

    def inference_memory(self, input_size: tuple[int, int], output_size: tuple[int, int]) -> int:
        """The contract's estimate plus the Q query masks: at the padded input size while they
        are resized, and as logits and probabilities (float32) at the output size when
        panoptic, instance or proposal output needs them there; instance output adds its
        (top-k, H, W) bool masks."""
        q = self.sem_seg_head.predictor.num_queries
        out_px = output_size[0] * output_size[1]
        extra = 4 * q * input_size[0] * input_size[1]
        if self.panoptic_on or self.instance_on or self.recall_on:
            extra += 2 * 4 * q * out_px
        if self.instance_on:
            extra += self.test_topk_per_image * out_px
        return super().inference_memory(input_size, output_size) + extra

    def benchmark_stages(self) -> tuple[BenchmarkStage, ...]:
        return (
            BenchmarkStage("sam_encoder", "sam", sam_encoder_gflop, "formula"),
            BenchmarkStage("clip_backbone", "backbone"),
            BenchmarkStage("decoder", "sem_seg_head"),
        )

    def train(self, mode: bool = True) -> "FrozenSeg":
        """Set train/eval mode for the trainable parts; the frozen CLIP and SAM stay in eval."""
        super().train(mode)
        self.backbone.eval()
        self.sam.eval()
        return self

    def set_vocabulary(self, class_names: Sequence[str], thing_classes: Sequence[int] | None = None) -> None:
        """Set the vocabulary used in eval mode (a :class:`~frozenseg.data.vocabulary.Vocabulary`
        whose seen classes follow this model's training vocabulary).

        Args:
            class_names: one string per class, each a comma-separated synonym list ("dog,puppy").
            thing_classes: indices of the classes that are things (default: all classes).
        Raises ``ValueError`` (and keeps the previous vocabulary) on an empty vocabulary, an empty
        class or synonym, or a thing class index out of range.
        The text classifier is computed lazily on first use and cached (memory and disk).
        """
        self.vocabulary = Vocabulary(list(class_names), thing_classes, train_class_names=self.train_class_names)

    def _check_vocabulary(self) -> None:
        """Eval mode needs a vocabulary: one sentence naming the call that sets it."""
        if self.vocabulary is None:
            raise ValueError("No vocabulary set: call model.set_vocabulary(class_names) before inference.")

    def _text_classifier(self, class_names: list[str]) -> _Classifier:
        """The vocabulary's text classifier with the normalised void row appended."""
        rows, num_templates = self.text_classifier_builder.build(class_names)
        rows = rows.to(device=self.device, dtype=self.void_embedding.weight.dtype)
        void = F.normalize(self.void_embedding.weight, dim=-1)
        return _Classifier(torch.cat([rows, void], dim=0), num_templates)

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------
    def _prepare_image(self, x: dict) -> torch.Tensor:
        return prepare_image(x, self.device)

    def forward(self, batched_inputs: list[dict]):
        """Train mode: dict of weighted losses. Eval mode: one result dict per image.

        In eval mode every image gets the result it gets in a batch of one (up to float
        rounding): SAM encodes each image's own S x S input, all images in one batch; the CLIP
        trunk, whose features depend on the padded batch size, runs once per group of images with
        the same padded size (:func:`~frozenseg.structures.same_padded_size_groups`); the decoder
        runs per image, because the released SAM-branch deformable attention (built for 3
        levels, fed 1, docs/models/frozenseg.md §4) reads sampling locations across the images of its batch.
        """
        if len(batched_inputs) == 0:
            raise ValueError("FrozenSeg.forward received an empty batch.")
        if self.training:
            if self.train_class_names is None:
                raise ValueError(
                    "Training needs a training vocabulary: set DATASETS.TRAIN to a registered "
                    "dataset or MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE."
                )
            images = [self._prepare_image(x) for x in batched_inputs]
            clip_images = normalized_batch(images, self.pixel_mean, self.pixel_std, self.size_divisibility)
            features = self.backbone(clip_images.tensor)
            features[SAM_EMBED] = self.sam(self.sam.preprocess(images, training=True))
            classifier = self._text_classifier(self.train_class_names)
            outputs = self.sem_seg_head(features, classifier.rows, classifier.num_templates)
            targets = self._prepare_targets(batched_inputs, clip_images)
            losses = self.criterion(outputs, targets)
            weights = self.criterion.weight_dict
            return {k: v * weights[k] for k, v in losses.items() if k in weights}
        self._check_vocabulary()  # before the encoders run
        return self.classify_images(batched_inputs, self.encode_images(batched_inputs))

    def encode_images(self, batched_inputs: list[dict]) -> list[ImageFeatures]:
        """Eval mode, per image, everything that does not read the vocabulary: SAM, the CLIP
        trunk, the pixel and transformer decoders (masks and class embeddings of the queries),
        the CLIP features pooled under each query mask and, with the SAM-mask ensemble, under
        each SAM proposal (see :meth:`forward` for how images are batched)."""
        images = [self._prepare_image(x) for x in batched_inputs]
        sam_embed = self.sam(torch.cat([self.sam.preprocess([img], training=False) for img in images]))
        encoded: list[ImageFeatures | None] = [None for _ in images]
        for group in same_padded_size_groups([img.shape[-2:] for img in images], self.size_divisibility):
            clip_images = normalized_batch(
                [images[i] for i in group], self.pixel_mean, self.pixel_std, self.size_divisibility
            )
            features = self.backbone(clip_images.tensor)
            padded_size = tuple(clip_images.tensor.shape[-2:])
            for j, i in enumerate(group):
                image_features = {k: v[j : j + 1] for k, v in features.items()}
                image_features[SAM_EMBED] = sam_embed[i : i + 1]
                outputs = self.sem_seg_head(image_features, None, None)
                image_size = tuple(clip_images.image_sizes[j])
                x = batched_inputs[i]
                geometry = _Geometry(
                    image_size=image_size,
                    padded_size=padded_size,
                    output_size=(int(x.get("height", image_size[0])), int(x.get("width", image_size[1]))),
                )
                encoded[i] = self._encode_one(x, outputs, image_features["clip_vis_dense"], geometry)
        return encoded

    def _encode_one(self, x: dict, outputs: dict, dense: torch.Tensor, geometry: _Geometry) -> ImageFeatures:
        """The vocabulary-free tensors of one image: ``mask_pred`` (1, Q, h4, w4) mask logits,
        ``class_embed`` (1, Q, D), ``pooled`` (1, Q, D) CLIP features under the masks, ``valid``
        (1, Q) bool (with ``ENSEMBLE_ON_VALID_MASK``) and, with SAM masks, the input's
        ``sam_masks`` (M, h', w') as float, ``proposals`` (M, h, w) those logits at the input
        image's size and ``proposal_pooled`` (1, M, D)."""
        sam_masks = x.get("sam_masks") if self.use_sam_masks else None
        if self.use_sam_masks and sam_masks is None:
            raise ValueError(
                'TEST.USE_SAM_MASKS is on but the input has no "sam_masks"; build the cache with '
                "tools/save_sam_masks.py and point TEST.SAM_MASKS_DIR to it."
            )
        mask_pred = outputs["pred_masks"]
        masks_at_dense = F.interpolate(mask_pred, size=dense.shape[-2:], mode="bilinear", align_corners=False)
        tensors = {
            "mask_pred": mask_pred,
            "class_embed": outputs["pred_class_embed"],
            "pooled": self.backbone.visual_prediction_forward(dense, masks_at_dense),
        }
        if self.ensemble_on_valid_mask:
            tensors["valid"] = (masks_at_dense > 0).flatten(2).any(-1)
        if sam_masks is not None:
            h, w = geometry.image_size
            proposals = tensors["sam_masks"] = sam_masks.float().to(self.device)
            if proposals.shape[0] > 0:
                if proposals.shape[-2:] != (h, w):
                    proposals = F.interpolate(proposals[None], size=(h, w), mode="bilinear", align_corners=False)[0]
                # padding is outside every proposal: any negative logit binarises to "off"
                padded = proposals.new_full((proposals.shape[0], *geometry.padded_size), -100.0)
                padded[:, :h, :w] = proposals
                tensors["proposal_pooled"] = self.backbone.visual_prediction_forward(dense, padded[None])
            tensors["proposals"] = proposals
        return ImageFeatures(tensors, {"geometry": geometry})

    def classify_images(self, batched_inputs: list[dict], features: Sequence[ImageFeatures]) -> list[dict]:
        """Eval mode: the text classifier of the vocabulary on each image's
        :meth:`encode_images` features, the geometric ensemble, then the enabled outputs."""
        self._check_vocabulary()
        classifier = self._text_classifier(self.vocabulary.class_names)
        return [self._classify_one(f, classifier) for f in features]

    def _clip_logits(self, pooled: torch.Tensor, classifier: _Classifier) -> torch.Tensor:
        """CLIP ("out-of-vocabulary") logits (B, M, K+1) of CLIP features (B, M, D) pooled under masks."""
        scale = self.backbone.clip_model.logit_scale.exp().clamp(max=100.0)
        return get_classification_logits(pooled, classifier.rows, scale, classifier.num_templates)

    def _classify_one(self, features: ImageFeatures, classifier: _Classifier) -> dict:
        t = features.tensors
        mask_cls = self.sem_seg_head.predictor.classify(t["class_embed"], classifier.rows, classifier.num_templates)
        log_probs = geometric_ensemble(
            mask_cls,
            self._clip_logits(t["pooled"], classifier),
            self.vocabulary.seen.to(self.device),
            self.geometric_ensemble_alpha,
            self.geometric_ensemble_beta,
            valid_mask=t.get("valid"),
            nan_safe=True,  # equals the release wherever it is finite; never NaN on underflow
        )
        return self._inference_single(log_probs[0], t["mask_pred"][0], features, classifier)

    def _prepare_targets(self, batched_inputs: list[dict], images: ImageList) -> list[dict]:
        """Per image ``labels`` (N,) and ``masks`` (N, H_pad, W_pad) padded with zeros."""
        return prepare_targets(batched_inputs, tuple(images.tensor.shape[-2:]), self.device)

    def _inference_single(
        self,
        cls_log_probs: torch.Tensor,
        mask_pred: torch.Tensor,
        features: ImageFeatures,
        classifier: _Classifier,
    ) -> dict:
        """Post-process one image: ``cls_log_probs`` (Q, K+1), ``mask_pred`` (Q, h4, w4) logits at
        stride 4 of the padded input, and the image's features (sizes; SAM proposals when they
        were encoded).

        The masks are resized once: to the output size when panoptic, instance, recall or the SAM
        ensemble needs them there (semantic output then uses them too), else the semantic map is
        computed at the padded size and resized (the release's order, ``semantic_only_inference``).
        """
        vocab = self.vocabulary
        geometry: _Geometry = features.meta["geometry"]
        result: dict = {}
        sam_masks = features.tensors.get("proposals")
        masks = None
        if self.panoptic_on or self.instance_on or self.recall_on or (self.semantic_on and sam_masks is not None):
            masks = resize_masks_to_output(
                mask_pred, geometry.padded_size, geometry.image_size, geometry.output_size
            )
        # sigmoid(masks) once for the outputs that read all of it (the same values each would
        # compute); instance output alone takes it one query at a time
        reads_probs = self.semantic_on or self.panoptic_on
        probs = masks.sigmoid() if masks is not None and reads_probs else None
        if self.semantic_on:
            if sam_masks is not None:
                compute = self._semantic_with_sam(cls_log_probs, probs, features, classifier)
            elif masks is not None:
                def compute(c0: int, c1: int, probs=probs) -> torch.Tensor:
                    return semantic_inference(cls_log_probs, masks, probs, classes=slice(c0, c1))
            else:
                padded = F.interpolate(
                    mask_pred[None], size=geometry.padded_size, mode="bilinear", align_corners=False
                )[0]

                def compute(c0: int, c1: int) -> torch.Tensor:
                    return semantic_only_inference(
                        cls_log_probs, padded, geometry.image_size, geometry.output_size, classes=slice(c0, c1)
                    )
            scores = SemanticScores(len(vocab), geometry.output_size, compute,
                                    dtype=cls_log_probs.dtype, device=self.device)
            result["sem_seg_scores"] = scores
            if self.full_semantic_map:
                result["sem_seg"] = scores.full()
        if self.panoptic_on:
            result["panoptic_seg"] = panoptic_inference(
                cls_log_probs, masks, vocab.is_thing.to(self.device),
                self.object_mask_threshold, self.overlap_threshold, probs,
            )
        if self.instance_on:
            result["instances"] = instance_inference(
                cls_log_probs, masks, vocab.is_thing.to(self.device),
                self.test_topk_per_image, self.panoptic_on, probs,
            )
        if self.recall_on:
            extra = None
            if sam_masks is not None and sam_masks.shape[0] > 0:
                extra = F.interpolate(
                    features.tensors["sam_masks"][None], size=geometry.output_size,
                    mode="bilinear", align_corners=False,
                )[0]
            result["proposals"] = mask_proposals_for_recall(masks, extra)
        return result

    def _semantic_with_sam(
        self,
        cls_log_probs: torch.Tensor,
        query_masks: torch.Tensor,
        features: ImageFeatures,
        classifier: _Classifier,
    ):
        """Semantic map with the SAM proposal ensemble (docs/models/frozenseg.md §7.5), as a function
        ``(c0, c1) -> (c1 - c0, out_h, out_w)`` of the class range.

        ``query_masks`` are the (Q, out_h, out_w) query mask probabilities (sigmoid) at the
        output size; the features' ``proposals`` are (M, h, w) proposal logits over the
        (unpadded) input image and ``proposal_pooled`` their pooled CLIP features; M may be 0
        (SAM kept no mask), leaving only the query terms.
        """
        geometry: _Geometry = features.meta["geometry"]
        proposals = features.tensors["proposals"]
        query_probs = cls_log_probs.softmax(-1)[:, :-1]
        if proposals.shape[0] == 0:
            proposal_probs = query_probs.new_zeros((0, query_probs.shape[-1]))
            proposal_masks = query_masks.new_zeros((0, *query_masks.shape[-2:]))
        else:
            proposal_logits = self._clip_logits(features.tensors["proposal_pooled"], classifier)[0]
            proposal_probs = proposal_logits[:, :-1].softmax(-1)
            proposal_masks = F.interpolate(
                proposals[None], size=geometry.output_size, mode="bilinear", align_corners=False
            )[0].sigmoid()
        seen = self.vocabulary.seen.to(self.device)

        def compute(c0: int, c1: int) -> torch.Tensor:
            return sam_proposal_ensemble(
                query_probs, query_masks, proposal_probs, proposal_masks, seen, self.sam_mask_pred_alpha,
                classes=slice(c0, c1),
            )

        return compute
