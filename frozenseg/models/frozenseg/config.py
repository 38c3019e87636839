"""FrozenSeg's config keys (``add_frozenseg_config``), added to the shared keys when a config's
``MODEL.META_ARCHITECTURE`` is ``FrozenSeg``.

Key names are the released FrozenSeg / Mask2Former ones, so the released YAML files load
unchanged. What each key means for FrozenSeg is written next to it; the numbered sections cited
are those of ``docs/models/frozenseg.md``.
"""

from __future__ import annotations

from ...config import CfgNode as CN
from ...modeling.sam.config import add_sam_config

__all__ = ["add_frozenseg_config"]


def add_frozenseg_config(cfg: CN) -> None:
    """Add FrozenSeg's keys, with the released defaults, to ``cfg`` (in place)."""
    add_sam_config(cfg)
    head = cfg.MODEL.SEM_SEG_HEAD
    head.MASK_DIM = 256  # channels of the mask features (stride 4) and of the decoder queries
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"  # name in PIXEL_DECODER_REGISTRY
    # backbone features fed to the deformable encoder (the rest go through the FPN)
    head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4  # sampling points per head and level
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8  # attention heads
    head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 1024  # FFN width
    head.TRANSFORMER_ENC_LAYERS = 6  # deformable encoder layers (each branch)
    # Release behaviour (§4): the SAM-branch encoder is built for this many levels but fed one.
    head.SAM_ENCODER_BUILT_LEVELS = 3

    # Transformer decoder and loss (Mask2Former's keys and meanings).
    mf = cfg.MODEL.MASK_FORMER = CN()
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"  # TRANSFORMER_DECODER_REGISTRY
    mf.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"  # Mask2Former key; only this value
    mf.DEEP_SUPERVISION = True  # losses on every intermediate prediction
    mf.NO_OBJECT_WEIGHT = 0.1  # cross-entropy weight of the no-object class
    mf.CLASS_WEIGHT = 2.0  # weight of the classification loss and matching cost
    mf.MASK_WEIGHT = 5.0  # weight of the point-sampled binary cross-entropy loss and cost
    mf.DICE_WEIGHT = 5.0  # weight of the dice loss and cost
    mf.HIDDEN_DIM = 256  # decoder width
    mf.NUM_OBJECT_QUERIES = 100  # Q, number of queries
    mf.NHEADS = 8  # decoder attention heads
    mf.DROPOUT = 0.0  # dropout in the decoder and the deformable encoder
    mf.DIM_FEEDFORWARD = 2048  # decoder FFN width
    mf.ENC_LAYERS = 0  # Mask2Former key, unused
    mf.DEC_LAYERS = 10  # decoder layers + 1 (the prediction on the learnable queries counts as one)
    mf.PRE_NORM = False  # pre-norm decoder layers (released: post-norm)
    mf.ENFORCE_INPUT_PROJ = False  # 1x1 input projections even when C == hidden
    mf.SIZE_DIVISIBILITY = 32  # pad the CLIP batch to a multiple of this
    mf.TRAIN_NUM_POINTS = 12544  # points sampled for the mask losses and costs
    mf.OVERSAMPLE_RATIO = 3.0  # importance sampling oversampling
    mf.IMPORTANCE_SAMPLE_RATIO = 0.75  # share of the most uncertain points
    mf.TEST = CN()
    mf.TEST.SEMANTIC_ON = True  # output "sem_seg"
    mf.TEST.INSTANCE_ON = False  # output "instances"
    mf.TEST.PANOPTIC_ON = False  # output "panoptic_seg"
    mf.TEST.RECALL_ON = False  # output every mask proposal, for recall evaluation
    mf.TEST.OBJECT_MASK_THRESHOLD = 0.0  # panoptic: minimum query score
    mf.TEST.OVERLAP_THRESHOLD = 0.0  # panoptic: minimum visible / original area
    # Mask2Former key: semantic map before or after resizing (FrozenSeg follows §7.3 instead)
    mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False

    # The frozen CLIP, the ensembles and the text classifier.
    fz = cfg.MODEL.FROZEN_SEG = CN()
    fz.CLIP_MODEL_NAME = "convnext_large_d_320"  # open_clip model name
    # open_clip pretrained tag (e.g. "laion2b_s29b_b131k_ft_soup") or a local weights file;
    # "" keeps random weights (tests, or when MODEL.WEIGHTS holds the CLIP weights).
    fz.CLIP_PRETRAINED_WEIGHTS = "laion2b_s29b_b131k_ft_soup"
    # Optional open_clip model-config JSON registered before building. A path (~ and $VARS
    # expanded, relative to the working directory): that JSON, whose file stem is the name to put
    # in CLIP_MODEL_NAME. "": the JSON the package ships for CLIP_MODEL_NAME if there is one
    # (frozenseg/modeling/backbone/clip_models/<name>.json, the tiny test models
    # tiny_convnext_clip and tiny_resnet_clip; found from any directory and in any install),
    # else none (open_clip's own models).
    fz.CLIP_MODEL_CONFIG_FILE = ""
    # CLIP joint embedding dim D (768 ConvNeXt-L, 1024 RN50x64); must equal the CLIP model's,
    # which the model checks
    fz.EMBED_DIM = 768
    fz.GEOMETRIC_ENSEMBLE_ALPHA = 0.4  # CLIP weight for seen classes (§7.1)
    fz.GEOMETRIC_ENSEMBLE_BETA = 0.8  # CLIP weight for unseen classes (§7.1)
    # alpha = beta = 0 for masks without any positive pixel at the dense-map size (ResNet configs)
    fz.ENSEMBLE_ON_VALID_MASK = False
    fz.SAM_FEATURE_FUSE_LAYER = 0  # level whose decoder layers run the Feature Injector (§5)
    fz.SAM_QUERY_FUSE_LAYER = 2  # level whose decoder layers run the Query Injector (§5)
    # Vocabulary file ("id:name,synonym,..." per line) of the training classes; "" = the vocabulary
    # registered for DATASETS.TRAIN[0]. Decides which test classes count as "seen".
    fz.TRAIN_VOCABULARY_FILE = ""
    # Directory of the persistent text-classifier cache ("" disables the disk cache). A leading
    # $FROZENSEG_CACHE is the project's cache folder (set or not); "~" and environment variables
    # are expanded.
    fz.TEXT_CACHE_DIR = "$FROZENSEG_CACHE/text_classifier"
    fz.TEXT_BATCH_SIZE = 256  # prompts per text-encoder batch

    # The SAM proposal ensemble of the semantic output (§7.5), with TEST.USE_SAM_MASKS.
    cfg.TEST.SAM_MASK_PRED_ALPHA = 0.2  # weight alpha_s of the SAM proposals
