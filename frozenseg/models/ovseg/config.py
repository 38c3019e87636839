"""OVSeg's config keys (``add_ovseg_config``), added to the shared keys when a config's
``MODEL.META_ARCHITECTURE`` is ``OVSeg`` or ``OVSegDEMO``.

Key names and defaults are the release's (MaskFormer-v1's ``add_mask_former_config`` plus OVSeg's
own), so the release's YAML files load unchanged. Keys that share a name with FrozenSeg's keep
MaskFormer-v1's meaning here, written next to each; the numbered sections cited are those of
``docs/models/ovseg.md``.
"""

from __future__ import annotations

from ...config import CfgNode as CN

__all__ = ["add_ovseg_config"]


def add_ovseg_config(cfg: CN) -> None:
    """Add OVSeg's keys, with the release's defaults, to ``cfg`` (in place)."""
    # DeepLab ResNet (build_resnet_deeplab_backbone); the other MODEL.RESNETS keys are shared. The
    # released R101c config sets DEPTH 101, STEM_TYPE "deeplab", STEM_OUT_CHANNELS 128,
    # STRIDE_IN_1X1 False, OUT_FEATURES res2..res5, RES5_MULTI_GRID [1, 2, 4], and relies on
    # Detectron2's FREEZE_AT 2 (this project's default is 0: an OVSeg R101c config must set it).
    cfg.MODEL.RESNETS.RES4_DILATION = 1  # 1 or 2 (2 needs RES5_DILATION 4); a dilated res4 keeps stride 8

    # Swin Transformer (D2SwinTransformer), MaskFormer's names; the defaults are Swin-T (the released
    # Swin-B config sets EMBED_DIM 128, DEPTHS [2, 2, 18, 2], NUM_HEADS [4, 8, 16, 32], WINDOW_SIZE 12,
    # PRETRAIN_IMG_SIZE 384).
    sw = cfg.MODEL.SWIN = CN()
    sw.PRETRAIN_IMG_SIZE = 224  # image side of pretraining (sizes the APE table only)
    sw.PATCH_SIZE = 4  # patch-embedding conv side (pixels): stride of res2
    sw.EMBED_DIM = 96  # channels of stage 0 (res2); doubled per stage
    sw.DEPTHS = [2, 2, 6, 2]  # blocks per stage
    sw.NUM_HEADS = [3, 6, 12, 24]  # attention heads per stage
    sw.WINDOW_SIZE = 7  # attention window side (tokens); maps are zero-padded to multiples
    sw.MLP_RATIO = 4.0  # MLP hidden width / block width
    sw.QKV_BIAS = True  # bias in the qkv projections
    sw.QK_SCALE = None  # attention logit scale (None: head_dim ** -0.5)
    sw.DROP_RATE = 0.0  # dropout after patch embedding, in MLPs and after attention
    sw.ATTN_DROP_RATE = 0.0  # dropout on attention weights
    sw.DROP_PATH_RATE = 0.3  # stochastic depth of the last block (linear from 0)
    sw.APE = False  # absolute position embedding
    sw.PATCH_NORM = True  # LayerNorm after the patch embedding
    sw.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # returned stage outputs

    # The MaskFormer-v1 head (OpenVocabMaskFormerHead) and its open-vocabulary class MLP, from the
    # decoder width to CLIP's joint space (EMBEDDING_DIM must equal the CLIP model's embedding dim:
    # 768 ViT-L/14, 512 ViT-B/16; the model checks it).
    head = cfg.MODEL.SEM_SEG_HEAD
    head.MASK_DIM = 256  # channels of the mask features (stride 4)
    head.PIXEL_DECODER_NAME = "BasePixelDecoder"  # name in PIXEL_DECODER_REGISTRY
    head.TRANSFORMER_ENC_LAYERS = 0  # MaskFormer-v1 key: encoder layers of the pixel decoder; must be 0
    head.EMBEDDING_DIM = 512  # D, output dim of the class-embedding MLP
    head.EMBED_HIDDEN_DIM = 1024  # hidden width of the class-embedding MLP
    head.EMBED_LAYERS = 2  # layers of the class-embedding MLP

    # The DETR decoder and the loss (MaskFormer-v1's keys and meanings, §2.3-2.4, §3.A).
    mf = cfg.MODEL.MASK_FORMER = CN()
    mf.TRANSFORMER_DECODER_NAME = "OpenVocabTransformerPredictor"  # name in TRANSFORMER_DECODER_REGISTRY
    mf.TRANSFORMER_IN_FEATURE = "res5"  # the backbone feature the DETR decoder attends to
    mf.DEEP_SUPERVISION = True  # losses on every decoder layer's prediction
    mf.NO_OBJECT_WEIGHT = 0.1  # cross-entropy weight of the no-object class
    mf.CLASS_WEIGHT = 1.0  # weight of the classification loss and matching cost (the release: 1)
    mf.DICE_WEIGHT = 1.0  # weight of the dice loss and cost
    mf.MASK_WEIGHT = 20.0  # weight of the full-resolution sigmoid focal mask loss and cost
    mf.HIDDEN_DIM = 256  # decoder width
    mf.NUM_OBJECT_QUERIES = 100  # Q, number of queries
    mf.NHEADS = 8  # decoder attention heads
    mf.DROPOUT = 0.1  # DETR dropout
    mf.DIM_FEEDFORWARD = 2048  # decoder FFN width
    mf.ENC_LAYERS = 0  # DETR encoder layers; must be 0 (the release has none)
    mf.DEC_LAYERS = 6  # DETR decoder layers
    mf.PRE_NORM = False  # pre-norm decoder layers; must be False
    mf.ENFORCE_INPUT_PROJ = False  # 1x1 input projection even when C == hidden
    mf.SIZE_DIVISIBILITY = 32  # pad the normalised batch to a multiple of this
    mf.TEST = CN()
    # MaskFormer-v1 switches: OVSeg gives the semantic output only, so the panoptic and instance
    # switches must stay False (set them and evaluation refuses in one sentence).
    mf.TEST.SEMANTIC_ON = True  # output "sem_seg"
    mf.TEST.INSTANCE_ON = False  # must stay False
    mf.TEST.PANOPTIC_ON = False  # must stay False
    mf.TEST.OBJECT_MASK_THRESHOLD = 0.0  # MaskFormer-v1 key, unused
    mf.TEST.OVERLAP_THRESHOLD = 0.0  # MaskFormer-v1 key, unused
    mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False  # MaskFormer-v1 key, unused

    # The mask-adapted CLIP that classifies the proposals (§2.8-2.11).
    ca = cfg.MODEL.CLIP_ADAPTER = CN()
    # Prompt templates of the text classifier: "vild" (14 ViLD), "imagenet" (80 CLIP ImageNet) or
    # "predefined" (PREDEFINED_PROMPT_TEMPLATES).
    ca.TEXT_TEMPLATES = "vild"
    ca.PREDEFINED_PROMPT_TEMPLATES = ["a photo of a {}."]  # used with "predefined"
    ca.PROMPT_CHECKPOINT = ""  # release key, unused
    # "ViT-B/16" or "ViT-L/14" (OpenAI, QuickGELU), or another open_clip ViT model name (built with
    # QuickGELU), e.g. the tiny test model "tiny_vit_clip" shipped in
    # frozenseg/modeling/backbone/clip_models/.
    ca.CLIP_MODEL_NAME = "ViT-B/16"
    # CLIP weights: an open_clip pretrained tag of the model ("openai": the OpenAI weights the
    # release loads, found in the local caches), a local file (OpenAI TorchScript, state dict,
    # safetensors or OpenCLIP checkpoint), or "" for random weights (tests, or when MODEL.WEIGHTS
    # holds the CLIP weights).
    ca.CLIP_WEIGHTS = ""
    ca.MASK_FILL = "mean"  # background fill of the crops: "mean" (255 * CLIP mean) or "zero"
    ca.MASK_EXPAND_RATIO = 1.0  # scale of the crop box about its centre
    ca.MASK_THR = 0.4  # binarisation threshold of the sigmoid mask probabilities
    ca.MASK_MATTING = False  # blend the crop with the soft mask instead of the binary one
    ca.REGION_RESIZED = True  # resize every crop to the CLIP input size (only True is supported)
    ca.CLIP_ENSEMBLE = True  # classify proposals with CLIP and ensemble (False: MaskFormer only)
    ca.CLIP_ENSEMBLE_WEIGHT = 0.7  # lambda: p = p_mf^(1-lambda) * p_clip^lambda (0: CLIP only)
    ca.MASK_PROMPT_DEPTH = 3  # rows of visual.mask_embedding (prompted depths)
    ca.MASK_PROMPT_FWD = False  # replace background patch tokens by mask prompts
    # With MASK_PROMPT_FWD True, accept CLIP weights without visual.mask_embedding (a CLIP_WEIGHTS
    # file or MODEL.WEIGHTS checkpoint): the prompts then stay zeros, which is NOT the plain CLIP
    # forward (docs/models/ovseg.md quirk 18). False refuses such weights; for plain CLIP set MASK_PROMPT_FWD False.
    ca.ALLOW_ZERO_MASK_PROMPTS = False

    # Keys the release defines that change nothing in its evaluation (§5.2); they exist so that
    # its YAML files load (the test batch size is TEST.IMS_PER_BATCH).
    cfg.SOLVER.TEST_IMS_PER_BATCH = 1  # release key (MaskFormer test batch size); unused
    cfg.TEST.SLIDING_WINDOW = False  # release key: its TTA-only sliding window, unreachable there; unused
    cfg.TEST.SLIDING_TILE_SIZE = 224  # release key, unused
    cfg.TEST.SLIDING_OVERLAP = 2 / 3.0  # release key, unused
    cfg.TEST.DENSE_CRF = False  # release key (CRF post-processing, off in every released config); unused
    cfg.DATASETS.SAMPLE_PER_CLASS = -1  # release key (few-shot sampling, off); unused
    cfg.DATASETS.SAMPLE_SEED = 0  # release key, unused
    cfg.WANDB = CN()
    cfg.WANDB.PROJECT = "open_vocab_seg"  # release key (Weights & Biases logging); unused
    cfg.WANDB.NAME = None  # release key, unused
