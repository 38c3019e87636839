"""OVSeg (Liang et al., CVPR 2023): MaskFormer proposals classified by CLIP text embeddings and by
a mask-adapted CLIP ViT with mask-prompt tokens, ensembled into a semantic map; plus its training
stages (the proposal generator, caption-mined mask-noun pairs, CLIP adaptation, the checkpoint
splice). What the release does and what this package reproduces: ``docs/models/ovseg.md``.

Modules: :mod:`.config` (``add_ovseg_config``), :mod:`.meta_arch` (``OVSeg``, ``OVSegDEMO``),
:mod:`.backbone` (Swin and DeepLab ResNet proposal backbones), :mod:`.head`,
:mod:`.pixel_decoder` (MaskFormer-v1's FPN), :mod:`.detr_decoder` and
:mod:`.transformer_predictor` (the open-vocabulary DETR predictor), :mod:`.criterion` (the
MaskFormer-v1 focal + dice loss), :mod:`.clip_adapter` (crops, the mask-prompted CLIP, the
ensemble) and :mod:`.adaptation` (mining, CLIP training, splice; imported on its own).
Importing the package registers its components.
"""

from .backbone import D2SwinTransformer, DeepLabResNet
from .clip_adapter import OVSegClipAdapter
from .config import add_ovseg_config
from .criterion import build_maskformer_criterion
from .detr_decoder import DETRDecoder, DETRDecoderLayer, DETRTransformer
from .head import OpenVocabMaskFormerHead
from .meta_arch import BACKGROUND_CLASS, OVSeg, OVSegDEMO, OVSegProposals
from .pixel_decoder import BasePixelDecoder
from .transformer_predictor import OpenVocabTransformerPredictor

__all__ = [
    "add_ovseg_config",
    "build_maskformer_criterion",
    "BACKGROUND_CLASS",
    "BasePixelDecoder",
    "D2SwinTransformer",
    "DeepLabResNet",
    "DETRDecoder",
    "DETRDecoderLayer",
    "DETRTransformer",
    "OpenVocabMaskFormerHead",
    "OpenVocabTransformerPredictor",
    "OVSeg",
    "OVSegClipAdapter",
    "OVSegDEMO",
    "OVSegProposals",
]
