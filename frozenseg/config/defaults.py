"""The shared configuration keys: those every model's config holds.

Key names follow Detectron2 (``MODEL.*``, ``INPUT.*``, ``DATASETS.*``, ``SOLVER.*``, ``TEST.*``) so
that released YAML files load unchanged; keys that released files set but nothing here reads (for
example ``MODEL.LOAD_PROPOSALS``) are kept so that those files still merge. A model's own keys
(FrozenSeg: ``MODEL.FROZEN_SEG``, ``MODEL.SAM_*``, Mask2Former's ``MODEL.MASK_FORMER`` and head
keys; OVSeg: ``MODEL.CLIP_ADAPTER``, ``MODEL.SWIN``, MaskFormer's keys) are added by that model's
``add_*_config`` when a config selects it (:mod:`frozenseg.config.config`). Every key has a comment.
"""

from .config import CfgNode as CN
from .config import set_shared_defaults

__all__ = ["get_cfg"]

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

# Segmentation head (Detectron2 names); each model adds its own head keys.
_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "FrozenSegHead"  # name in SEM_SEG_HEADS_REGISTRY
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]  # backbone features used
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255  # label of ignored pixels in semantic targets
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 133  # classes of the training vocabulary (COCO panoptic)
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0  # Detectron2 key, unused
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256  # channels of the pixel decoder
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"  # normalisation in the pixel decoder convs ("GN" or "")
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4  # stride of the mask features

# Exact fast inference paths (modules with a FastPathModule switch, e.g. the SAM ViT's fused
# attention and the deformable attention without gradients): equal to the reference forwards up
# to float rounding. False runs the upstream / reference arithmetic as it is.
_C.MODEL.FAST_INFERENCE = True
# Opt-in int8 CPU inference (frozenseg.modeling.quantization): dynamic int8 quantisation of the
# nn.Linear layers of the frozen encoders, applied after the weights are loaded, for inference on
# a CPU only; refused on CUDA and in training. Never the default. Accuracy and speed:
# docs/benchmarks.md.
_C.MODEL.INT8_CPU = False
# Precision of the frozen encoders' forwards (frozenseg.modeling.precision), in inference and
# training: "" (= "float32", the default), "bfloat16" (CUDA or CPU) or "float16" (CUDA only). The
# frozen encoders then run under torch.autocast with that dtype and their outputs are cast back to
# float32 before the trainable parts. Independent of SOLVER.AMP (the whole training step);
# excludes MODEL.INT8_CPU. Measured tolerance: docs/benchmarks.md.
_C.MODEL.FROZEN_ENCODERS_DTYPE = ""
# Torch CPU threads per process (`--threads` of train_net.py, demo/demo.py, tools/benchmark.py).
# 0 = auto: the process's share of the machine's physical cores less one per data-loader worker
# (DATALOADER.NUM_WORKERS; each worker runs one thread), so workers and compute threads do not
# oversubscribe the cores (frozenseg.engine.launch.compute_threads).
_C.MODEL.CPU_THREADS = 0
# Keep freed memory in the process's heap for reuse (glibc mallopt; frozenseg.utils.cpu_memory)
# in train_net.py, demo/demo.py and tools/benchmark.py: large tensors then reuse pages instead of
# page-faulting fresh ones, with identical outputs. The process keeps its peak memory. No effect
# off glibc/Linux.
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
# Your own datasets: description files (YAML or JSON: name, layout sem_seg / coco_panoptic /
# coco_instances, image and label folders, classes with synonyms; datasets/README.md, "Your own
# dataset"), each registered under its name when the config is loaded, so DATASETS.TRAIN / TEST
# and a demo's dataset vocabulary can use it. Paths as MODEL.WEIGHTS: from the working directory;
# `--register-dataset FILE` of train_net.py and demo/demo.py adds to this list.
_C.DATASETS.REGISTER = ()

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
# Cached SAM "everything" masks per image (tools/save_sam_masks.py), read by the data loader and
# ensembled into the semantic output by a model whose use_sam_masks follows this key (FrozenSeg).
_C.TEST.USE_SAM_MASKS = False  # give each test image its cached SAM proposals
_C.TEST.SAM_MASK_PRED_ALPHA = 0.2  # weight alpha_s of the SAM proposals
_C.TEST.SAM_MASKS_DIR = "output/sam_masks"  # cache directory written by tools/save_sam_masks.py

# ---------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"  # logs, checkpoints and evaluation results
_C.SEED = -1  # random seed (-1: random)
_C.CUDNN_BENCHMARK = False  # cudnn autotuning
_C.VIS_PERIOD = 0  # Detectron2 key, unused
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0  # Detectron2 key, unused

set_shared_defaults(_C)


def get_cfg() -> CN:
    """A fresh default configuration: the shared keys and those of the default model
    (``MODEL.META_ARCHITECTURE`` above)."""
    cfg = _C.clone()
    cfg.select_model(cfg.MODEL.META_ARCHITECTURE)
    return cfg
