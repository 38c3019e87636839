"""The default configuration tree.

Key names follow Detectron2 (``MODEL.*``, ``INPUT.*``, ``DATASETS.*``, ``SOLVER.*``, ``TEST.*``) and
Mask2Former (``MODEL.SEM_SEG_HEAD.*``, ``MODEL.MASK_FORMER.*``) so that the released FrozenSeg YAML
files load unchanged. Keys that the released files set but this project does not read (for
example ``MODEL.LOAD_PROPOSALS``) are kept so that those files still merge. FrozenSeg's own keys live
under ``MODEL.FROZEN_SEG``, ``MODEL.SAM_*`` and ``TEST.*``; every key has a comment.
"""

from .config import CfgNode as CN

_C = CN()
_C.VERSION = 2  # config format version (Detectron2 convention)

# ---------------------------------------------------------------------------------------------
# MODEL
# ---------------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "FrozenSeg"  # name in META_ARCH_REGISTRY
_C.MODEL.DEVICE = "cpu"  # "cpu", "cuda" or "cuda:N"; train_net.py switches to cuda when present
_C.MODEL.WEIGHTS = ""  # checkpoint loaded by train_net.py / demo (released or project layout)
_C.MODEL.PIXEL_MEAN = [122.7709383, 116.7460125, 104.09373615]  # CLIP branch mean, RGB 0..255
_C.MODEL.PIXEL_STD = [68.5005327, 66.6321579, 70.32316305]  # CLIP branch std, RGB 0..255
_C.MODEL.LOAD_PROPOSALS = False  # Detectron2 key, unused
_C.MODEL.MASK_ON = False  # Detectron2 key, unused
_C.MODEL.KEYPOINT_ON = False  # Detectron2 key, unused

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "CLIP"  # name in BACKBONE_REGISTRY
_C.MODEL.BACKBONE.FREEZE_AT = 0  # ResNet stages frozen (1: stem, 2: + res2, ...); CLIP: always frozen

# Detectron2 ResNet keys: set by the released base configs; FrozenSeg does not read them, OVSeg's
# build_resnet_deeplab_backbone (R101c) does (its RES4_DILATION is in the OVSeg section below).
_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50  # 50, 101 or 152 bottleneck layers
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]  # returned features (subset of stem, res2..res5)
_C.MODEL.RESNETS.NUM_GROUPS = 1  # groups of the 3x3 convs (1: ResNet)
_C.MODEL.RESNETS.NORM = "FrozenBN"  # FrozenBN, BN, SyncBN or GN
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64  # bottleneck width per group in res2 (doubled per stage)
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True  # stride in the first 1x1 conv (False: in the 3x3 conv)
_C.MODEL.RESNETS.RES5_DILATION = 1  # 1, 2 or 4; a dilated res5 keeps stride 16
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256  # channels of res2 (doubled per stage)
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64  # channels after the stem
_C.MODEL.RESNETS.STEM_TYPE = "basic"  # "basic" (7x7 conv) or "deeplab" (three 3x3 convs)
_C.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]  # per-res5-block factors of RES5_DILATION
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]  # must stay False (unsupported)
_C.MODEL.RESNETS.DEFORM_MODULATED = False  # unused
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1  # unused

# Pixel decoder and head (Mask2Former names).
_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "FrozenSegHead"  # name in SEM_SEG_HEADS_REGISTRY
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]  # backbone features used
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255  # label of ignored pixels in semantic targets
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 133  # classes of the training vocabulary (COCO panoptic)
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0  # Mask2Former key, unused
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256  # channels of the pixel decoder
_C.MODEL.SEM_SEG_HEAD.MASK_DIM = 256  # channels of the mask features (stride 4)
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"  # normalisation in the pixel decoder convs ("GN" or "")
_C.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"  # PIXEL_DECODER_REGISTRY
# backbone features fed to the deformable encoder (the rest go through the FPN)
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4  # sampling points per head/level
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8  # attention heads
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 1024  # FFN width
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4  # stride of the mask features
_C.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 6  # deformable encoder layers (each branch)
# Release behaviour (spec §4): the SAM-branch encoder is built for this many levels but fed one.
_C.MODEL.SEM_SEG_HEAD.SAM_ENCODER_BUILT_LEVELS = 3

# Transformer decoder and loss (Mask2Former names).
_C.MODEL.MASK_FORMER = CN()
_C.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"  # registry
_C.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"  # Mask2Former key
_C.MODEL.MASK_FORMER.DEEP_SUPERVISION = True  # losses on every intermediate prediction
_C.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1  # CE weight of the no-object class
_C.MODEL.MASK_FORMER.CLASS_WEIGHT = 2.0  # weight of the classification loss and cost
_C.MODEL.MASK_FORMER.MASK_WEIGHT = 5.0  # weight of the point-sampled BCE loss and cost
_C.MODEL.MASK_FORMER.DICE_WEIGHT = 5.0  # weight of the dice loss and cost
_C.MODEL.MASK_FORMER.HIDDEN_DIM = 256  # decoder width
_C.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 100  # Q, number of queries
_C.MODEL.MASK_FORMER.NHEADS = 8  # decoder attention heads
_C.MODEL.MASK_FORMER.DROPOUT = 0.0  # dropout in decoder and deformable encoder
_C.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048  # decoder FFN width
_C.MODEL.MASK_FORMER.ENC_LAYERS = 0  # Mask2Former key, unused
_C.MODEL.MASK_FORMER.DEC_LAYERS = 10  # decoder layers + 1 (the prediction on learnable queries)
_C.MODEL.MASK_FORMER.PRE_NORM = False  # pre-norm decoder layers (released: post-norm)
_C.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ = False  # 1x1 input projections even when C == hidden
_C.MODEL.MASK_FORMER.SIZE_DIVISIBILITY = 32  # pad the CLIP batch to a multiple of this
_C.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 12544  # points sampled for mask losses and costs
_C.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0  # importance sampling oversampling
_C.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75  # share of most-uncertain points
_C.MODEL.MASK_FORMER.TEST = CN()
_C.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True  # return "sem_seg"
_C.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False  # return "instances"
_C.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False  # return "panoptic_seg"
_C.MODEL.MASK_FORMER.TEST.RECALL_ON = False  # return all mask proposals for recall evaluation
_C.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0  # panoptic: min query score
_C.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0  # panoptic: min visible/original area
# Mask2Former key: semantic map before or after resizing (FrozenSeg decides per spec §7.3)
_C.MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False

# FrozenSeg's frozen foundation models and ensemble.
_C.MODEL.FROZEN_SEG = CN()
_C.MODEL.FROZEN_SEG.CLIP_MODEL_NAME = "convnext_large_d_320"  # open_clip model name
# open_clip pretrained tag (e.g. "laion2b_s29b_b131k_ft_soup") or a local weights file;
# "" keeps random weights (tests, or when MODEL.WEIGHTS holds the CLIP weights).
_C.MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS = "laion2b_s29b_b131k_ft_soup"
# Optional open_clip model-config JSON registered before building. A path (~ and $VARS expanded,
# relative to the working directory): that JSON, whose file stem is the name to put in
# CLIP_MODEL_NAME. "": the JSON the package ships for CLIP_MODEL_NAME if there is one
# (frozenseg/modeling/backbone/clip_models/<name>.json, the tiny test models tiny_convnext_clip and
# tiny_resnet_clip; found from any directory and in any install), else none (open_clip's models).
_C.MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE = ""
_C.MODEL.FROZEN_SEG.EMBED_DIM = 768  # CLIP joint embedding dim D (768 ConvNeXt-L, 1024 RN50x64)
_C.MODEL.FROZEN_SEG.GEOMETRIC_ENSEMBLE_ALPHA = 0.4  # CLIP weight for seen classes
_C.MODEL.FROZEN_SEG.GEOMETRIC_ENSEMBLE_BETA = 0.8  # CLIP weight for unseen classes
# alpha = beta = 0 for masks without any positive pixel at the dense-map size (ResNet configs)
_C.MODEL.FROZEN_SEG.ENSEMBLE_ON_VALID_MASK = False
_C.MODEL.FROZEN_SEG.SAM_FEATURE_FUSE_LAYER = 0  # level whose layers run the Feature Injector
_C.MODEL.FROZEN_SEG.SAM_QUERY_FUSE_LAYER = 2  # level whose layers run the Query Injector
# Vocabulary file ("id:name,synonym,..." per line) of the training classes; "" = the vocabulary
# registered for DATASETS.TRAIN[0]. Decides which test classes count as "seen".
_C.MODEL.FROZEN_SEG.TRAIN_VOCABULARY_FILE = ""
# Directory of the persistent text-classifier cache ("" disables the disk cache). "~" and
# environment variables are expanded.
_C.MODEL.FROZEN_SEG.TEXT_CACHE_DIR = "~/.cache/frozenseg/text_classifier"
_C.MODEL.FROZEN_SEG.TEXT_BATCH_SIZE = 256  # prompts per text-encoder batch

# Frozen SAM image encoder. MODEL.SAM_NAME is a key of frozenseg.modeling.sam.SAM_SPECS, which
# fixes the architecture, including the channels of the image embedding fed to the pixel decoder
# (256 for the released SAMs, 64 for tiny).
_C.MODEL.SAM_NAME = "vit_b"  # vit_b, vit_l, vit_h (segment-anything), vit_t (MobileSAM), or tiny
# SAM checkpoint (the official sam_vit_*.pth file); "" keeps random weights (tests, or when
# MODEL.WEIGHTS holds the SAM weights).
_C.MODEL.SAM_CHECKPOINT = "pretrained_checkpoint/sam_vit_b_01ec64.pth"
_C.MODEL.SAM_IMAGE_SIZE = 1024  # input side of the SAM encoder (fixed by SAM's position embedding)
# Exact fast inference paths: the frozen SAM ViT's forward (frozenseg.modeling.sam.fast_vit:
# fused attention with the relative-position bias; equal to segment-anything's forward up to
# float rounding, max relative difference ~1e-6) and the deformable attention of the pixel
# decoder without gradients (ms_deform_attn_core_fast: the same weighted sum, summed per level).
# False runs segment-anything's forward as it is and the release's deformable-attention
# arithmetic (outputs bit-identical to this project before the fast paths).
_C.MODEL.FAST_INFERENCE = True
# Opt-in int8 CPU inference (frozenseg.modeling.quantization): dynamic int8 quantisation of the
# nn.Linear layers of the frozen encoders (SAM image encoder, ConvNeXt CLIP trunk), applied
# after the weights are loaded by the predictor and `train_net.py --eval-only`. Faster on CPU at
# a small accuracy cost (measured in tools/README.md, "int8 CPU mode"); refused on CUDA and in
# training. Never the default.
_C.MODEL.INT8_CPU = False
# Precision of the frozen encoders' forwards (frozenseg.modeling.precision), in inference and
# training: "" (= "float32", the default), "bfloat16" (CUDA or CPU) or "float16" (CUDA only). The
# SAM image encoder and the CLIP visual trunk then run under torch.autocast with that dtype and
# their outputs are cast back to float32 before the trainable decoder; CLIP's mask-pooled
# classification and text tower stay float32. Independent of SOLVER.AMP (the whole training
# step); excludes MODEL.INT8_CPU. Tolerance measured in tools/README.md, "GPU (issue 14, item 5)".
_C.MODEL.FROZEN_ENCODERS_DTYPE = ""
# Torch CPU threads per process (`--threads` of train_net.py, demo/demo.py, tools/benchmark.py).
# 0 = auto: the process's share of the machine's physical cores less one per data-loader worker
# (DATALOADER.NUM_WORKERS; each worker runs one thread), so workers and compute threads do not
# oversubscribe the cores (frozenseg.engine.launch.compute_threads).
_C.MODEL.CPU_THREADS = 0
# Keep freed memory in the process's heap for reuse (glibc mallopt; frozenseg.utils.cpu_memory)
# in train_net.py, demo/demo.py and tools/benchmark.py: large tensors then reuse pages instead of
# page-faulting fresh ones (SAM vit_b on 2 cores: 5.8 s -> 5.1 s, identical outputs). The process
# keeps its peak memory. No effect off glibc/Linux.
_C.MODEL.CPU_REUSE_FREED_MEMORY = True

# ---------------------------------------------------------------------------------------------
# INPUT
# ---------------------------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = (800,)  # shortest-edge sizes for MaskFormer-style training mappers
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"  # "choice" or "range"
_C.INPUT.MAX_SIZE_TRAIN = 1333  # longest-edge cap in training
_C.INPUT.MIN_SIZE_TEST = 800  # shortest edge at test time
_C.INPUT.MAX_SIZE_TEST = 1333  # longest-edge cap at test time
_C.INPUT.RANDOM_FLIP = "horizontal"  # "horizontal", "vertical" or "none"
_C.INPUT.FORMAT = "RGB"  # image channel order fed to the model
_C.INPUT.MASK_FORMAT = "polygon"  # Detectron2 key, unused
_C.INPUT.IMAGE_SIZE = 1024  # LSJ crop size
_C.INPUT.MIN_SCALE = 0.1  # LSJ smallest scale
_C.INPUT.MAX_SCALE = 2.0  # LSJ largest scale
_C.INPUT.DATASET_MAPPER_NAME = "coco_panoptic_lsj"  # training mapper
_C.INPUT.COLOR_AUG_SSD = False  # photometric augmentation in MaskFormer mappers
_C.INPUT.SIZE_DIVISIBILITY = -1  # pad training images to a multiple of this (-1: no padding)
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = False  # random crop in MaskFormer mappers
_C.INPUT.CROP.TYPE = "absolute"  # crop type
_C.INPUT.CROP.SIZE = [512, 512]  # crop size
_C.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0  # category-area constraint of the crop

# ---------------------------------------------------------------------------------------------
# DATASETS / DATALOADER
# ---------------------------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()  # registered training dataset names
_C.DATASETS.TEST = ()  # registered test dataset names
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()  # Detectron2 key, unused
_C.DATASETS.PROPOSAL_FILES_TEST = ()  # Detectron2 key, unused
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000  # Detectron2 key, unused
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000  # Detectron2 key, unused
# User vocabularies: "dataset_name:path/to/vocabulary.txt" entries (format "id:name,synonym,...",
# one class per line); each replaces that dataset's default class strings, which are the released
# system's (frozenseg/data/vocabularies/released_metadata.json); counts must match. A relative path
# is also looked up next to the installed package (e.g. frozenseg/data/vocabularies/lvis_v1_synonyms.txt).
_C.DATASETS.VOCABULARY_FILES = ()

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4  # data-loading worker processes per GPU/process
_C.DATALOADER.ASPECT_RATIO_GROUPING = True  # batch images of similar aspect ratio
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # training sampler
_C.DATALOADER.REPEAT_THRESHOLD = 0.0  # Detectron2 key, unused
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True  # drop training images without annotations

# ---------------------------------------------------------------------------------------------
# SOLVER
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW" or "SGD"
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"  # or "WarmupPolyLR"
_C.SOLVER.MAX_ITER = 40000  # training iterations
_C.SOLVER.BASE_LR = 0.001  # learning rate
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.NESTEROV = False  # SGD Nesterov
_C.SOLVER.WEIGHT_DECAY = 0.0001  # weight decay
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0  # weight decay of normalisation layers
_C.SOLVER.WEIGHT_DECAY_EMBED = 0.0  # weight decay of embeddings
_C.SOLVER.WEIGHT_DECAY_BIAS = None  # weight decay of biases (None: same as WEIGHT_DECAY)
_C.SOLVER.GAMMA = 0.1  # multi-step decay factor
_C.SOLVER.STEPS = (30000,)  # iterations at which the LR decays
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000  # LR factor at iteration 0 of the warm-up
_C.SOLVER.WARMUP_ITERS = 1000  # warm-up iterations
_C.SOLVER.WARMUP_METHOD = "linear"  # "linear" or "constant"
_C.SOLVER.POLY_LR_POWER = 0.9  # WarmupPolyLR power
_C.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0  # WarmupPolyLR final constant factor
_C.SOLVER.CHECKPOINT_PERIOD = 5000  # iterations between checkpoints
_C.SOLVER.IMS_PER_BATCH = 16  # images per optimiser step, all processes together
_C.SOLVER.REFERENCE_WORLD_SIZE = 0  # Detectron2 key, unused
_C.SOLVER.BACKBONE_MULTIPLIER = 0.1  # LR multiplier of trainable backbone parameters
_C.SOLVER.GRAD_ACCUM_STEPS = 1  # micro-batches accumulated per optimiser step
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False  # gradient clipping
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"  # "full_model", "value" or "norm"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0  # clipping threshold
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0  # norm type for norm clipping
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False  # mixed precision
_C.SOLVER.AMP.DTYPE = "float16"  # "float16" (CUDA, with a gradient scaler) or "bfloat16"

# ---------------------------------------------------------------------------------------------
# TEST
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.EXPECTED_RESULTS = []  # Detectron2 key, unused
_C.TEST.EVAL_PERIOD = 0  # iterations between evaluations in training (0: only at the end)
_C.TEST.DETECTIONS_PER_IMAGE = 100  # instance output: top-k segments per image
# Images per evaluation batch and process (build_detection_test_loader). Each image still gets
# the prediction of a batch of one: FrozenSeg runs SAM on all of them (each its own S x S input),
# the CLIP trunk once per group of images with the same padded size and the decoder per image
# (the released SAM-branch deformable attention mixes the images of a batch); OVSeg runs its
# head per such group. Larger batches only change speed and memory.
_C.TEST.IMS_PER_BATCH = 1
_C.TEST.KEYPOINT_OKS_SIGMAS = []  # Detectron2 key, unused
_C.TEST.PRECISE_BN = CN()
_C.TEST.PRECISE_BN.ENABLED = False  # Detectron2 key, unused
_C.TEST.PRECISE_BN.NUM_ITER = 200  # Detectron2 key, unused
_C.TEST.AUG = CN()
_C.TEST.AUG.ENABLED = False  # test-time augmentation for semantic segmentation
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)  # TTA shortest edges
_C.TEST.AUG.MAX_SIZE = 4000  # TTA longest-edge cap
_C.TEST.AUG.FLIP = True  # TTA horizontal flip
# Classes the semantic mIoU averages over: "gt" (those with ground-truth pixels; current
# Detectron2, the FrozenSeg release) or "gt_or_pred" (also predicted-but-absent ones, as IoU 0;
# Detectron2 0.6, the OVSeg release's published numbers). See frozenseg/evaluation/sem_seg_evaluation.py.
_C.TEST.SEM_SEG_MIOU_DENOMINATOR = "gt"
# SAM proposal ensemble (spec §7.5): cached SAM "everything" masks per image.
_C.TEST.USE_SAM_MASKS = False  # ensemble cached SAM proposals into the semantic output
_C.TEST.SAM_MASK_PRED_ALPHA = 0.2  # weight alpha_s of the SAM proposals
_C.TEST.SAM_MASKS_DIR = "output/sam_masks"  # cache directory written by tools/save_sam_masks.py

# ---------------------------------------------------------------------------------------------
# Keys the OVSeg release defines that change nothing in its evaluation (OVSeg spec §5.2); they
# exist so that the release's own YAML files load (the test batch size is TEST.IMS_PER_BATCH).
# ---------------------------------------------------------------------------------------------
_C.SOLVER.TEST_IMS_PER_BATCH = 1  # release key (MaskFormer): test batch size; unused (TEST.IMS_PER_BATCH sets it here)
_C.TEST.SLIDING_WINDOW = False  # release key: its TTA-only sliding window, unreachable there; unused
_C.TEST.SLIDING_TILE_SIZE = 224  # release key, unused
_C.TEST.SLIDING_OVERLAP = 2 / 3.0  # release key, unused
_C.TEST.DENSE_CRF = False  # release key (CRF post-processing, off in every released config); unused
_C.DATASETS.SAMPLE_PER_CLASS = -1  # release key (few-shot sampling, off); unused
_C.DATASETS.SAMPLE_SEED = 0  # release key, unused
_C.WANDB = CN()
_C.WANDB.PROJECT = "open_vocab_seg"  # release key (Weights & Biases logging); unused
_C.WANDB.NAME = None  # release key, unused

# ---------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"  # logs, checkpoints and evaluation results
_C.SEED = -1  # random seed (-1: random)
_C.CUDNN_BENCHMARK = False  # cudnn autotuning
_C.VIS_PERIOD = 0  # Detectron2 key, unused
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0  # Detectron2 key, unused

# ---------------------------------------------------------------------------------------------
# OVSeg (spec docs OVSEG.md §5.2): proposal backbones
# ---------------------------------------------------------------------------------------------
# DeepLab ResNet (build_resnet_deeplab_backbone); the other MODEL.RESNETS keys are above. The
# released R101c config sets DEPTH 101, STEM_TYPE "deeplab", STEM_OUT_CHANNELS 128,
# STRIDE_IN_1X1 False, OUT_FEATURES res2..res5, RES5_MULTI_GRID [1, 2, 4], and relies on
# Detectron2's FREEZE_AT 2 (this project's default is 0: an OVSeg R101c config must set it).
_C.MODEL.RESNETS.RES4_DILATION = 1  # 1 or 2 (2 needs RES5_DILATION 4); a dilated res4 keeps stride 8

# Swin Transformer (D2SwinTransformer), MaskFormer's key names; defaults are Swin-T, the released
# Swin-B config sets EMBED_DIM 128, DEPTHS [2, 2, 18, 2], NUM_HEADS [4, 8, 16, 32], WINDOW_SIZE 12,
# PRETRAIN_IMG_SIZE 384.
_C.MODEL.SWIN = CN()
_C.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224  # image side of pretraining (sizes the APE table only)
_C.MODEL.SWIN.PATCH_SIZE = 4  # patch-embedding conv side (pixels): stride of res2
_C.MODEL.SWIN.EMBED_DIM = 96  # channels of stage 0 (res2); doubled per stage
_C.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]  # blocks per stage
_C.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]  # attention heads per stage
_C.MODEL.SWIN.WINDOW_SIZE = 7  # attention window side (tokens); maps are zero-padded to multiples
_C.MODEL.SWIN.MLP_RATIO = 4.0  # MLP hidden width / block width
_C.MODEL.SWIN.QKV_BIAS = True  # bias in the qkv projections
_C.MODEL.SWIN.QK_SCALE = None  # attention logit scale (None: head_dim ** -0.5)
_C.MODEL.SWIN.DROP_RATE = 0.0  # dropout after patch embedding, in MLPs and after attention
_C.MODEL.SWIN.ATTN_DROP_RATE = 0.0  # dropout on attention weights
_C.MODEL.SWIN.DROP_PATH_RATE = 0.3  # stochastic depth of the last block (linear from 0)
_C.MODEL.SWIN.APE = False  # absolute position embedding
_C.MODEL.SWIN.PATCH_NORM = True  # LayerNorm after the patch embedding
_C.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # returned stage outputs

# OVSeg (Liang et al., CVPR 2023; OVSeg spec §5). New keys only, with the
# release's names and defaults. OVSeg also reads existing keys whose FrozenSeg defaults differ
# from the release, so OVSeg configs set them explicitly: MODEL.MASK_FORMER.DEC_LAYERS 6 (there:
# the number of DETR decoder layers, not "layers + 1"), DROPOUT 0.1, ENC_LAYERS 0 (must be 0),
# TRANSFORMER_IN_FEATURE "res5", SEM_SEG_HEAD.NAME "OpenVocabMaskFormerHead",
# SEM_SEG_HEAD.PIXEL_DECODER_NAME "BasePixelDecoder". Training (build_maskformer_criterion,
# spec §3.A): MODEL.MASK_FORMER.MASK_WEIGHT 20.0 weighs the full-resolution sigmoid *focal* mask
# loss and cost (FrozenSeg: point-sampled BCE), DICE_WEIGHT 1.0, NO_OBJECT_WEIGHT 0.1,
# DEEP_SUPERVISION True; the class weight is 1, fixed as in the release: CLASS_WEIGHT is not read.
# ---------------------------------------------------------------------------------------------
# Open-vocabulary class head of OpenVocabMaskFormerHead: MLP from the decoder width to CLIP's joint
# space (EMBEDDING_DIM must equal the CLIP model's embedding dim: 768 ViT-L/14, 512 ViT-B/16).
_C.MODEL.SEM_SEG_HEAD.EMBEDDING_DIM = 512  # D, output dim of the class-embedding MLP
_C.MODEL.SEM_SEG_HEAD.EMBED_HIDDEN_DIM = 1024  # hidden width of the class-embedding MLP
_C.MODEL.SEM_SEG_HEAD.EMBED_LAYERS = 2  # layers of the class-embedding MLP

# Mask-adapted CLIP that classifies OVSeg's proposals (spec §2.8-2.11).
_C.MODEL.CLIP_ADAPTER = CN()
# Prompt templates of the text classifier: "vild" (14 ViLD), "imagenet" (80 CLIP ImageNet) or
# "predefined" (PREDEFINED_PROMPT_TEMPLATES).
_C.MODEL.CLIP_ADAPTER.TEXT_TEMPLATES = "vild"
_C.MODEL.CLIP_ADAPTER.PREDEFINED_PROMPT_TEMPLATES = ["a photo of a {}."]  # used with "predefined"
_C.MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT = ""  # release key, unused
# "ViT-B/16" or "ViT-L/14" (OpenAI, QuickGELU), or another open_clip ViT model name (built with
# QuickGELU), e.g. the tiny test model "tiny_vit_clip" shipped in frozenseg/modeling/backbone/clip_models/.
_C.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME = "ViT-B/16"
# CLIP weights loaded into the CLIP model: an open_clip pretrained tag of the model ("openai": the
# OpenAI weights the release loads, found in the local caches as for FrozenSeg's CLIP), a local file
# (OpenAI TorchScript, state dict, safetensors or OpenCLIP checkpoint), or "" for random weights
# (tests, or when MODEL.WEIGHTS holds the CLIP weights).
_C.MODEL.CLIP_ADAPTER.CLIP_WEIGHTS = ""
_C.MODEL.CLIP_ADAPTER.MASK_FILL = "mean"  # background fill of the crops: "mean" (255*CLIP mean) or "zero"
_C.MODEL.CLIP_ADAPTER.MASK_EXPAND_RATIO = 1.0  # scale of the crop box about its centre
_C.MODEL.CLIP_ADAPTER.MASK_THR = 0.4  # binarisation threshold of the sigmoid mask probabilities
_C.MODEL.CLIP_ADAPTER.MASK_MATTING = False  # blend the crop with the soft mask instead of the binary one
_C.MODEL.CLIP_ADAPTER.REGION_RESIZED = True  # resize every crop to 224x224 (only True is supported)
_C.MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE = True  # classify proposals with CLIP and ensemble (False: MaskFormer only)
_C.MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT = 0.7  # lambda: p = p_mf^(1-lambda) * p_clip^lambda (0: CLIP only)
_C.MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH = 3  # rows of visual.mask_embedding (prompted depths)
_C.MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD = False  # replace background patch tokens by mask prompts
# With MASK_PROMPT_FWD True, accept CLIP weights without visual.mask_embedding (a CLIP_WEIGHTS file
# or MODEL.WEIGHTS checkpoint): the prompts then stay zeros, which is NOT the plain CLIP forward
# (spec quirk 18). False refuses such weights; for plain CLIP set MASK_PROMPT_FWD False instead.
_C.MODEL.CLIP_ADAPTER.ALLOW_ZERO_MASK_PROMPTS = False
