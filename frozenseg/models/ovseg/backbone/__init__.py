"""OVSeg's proposal backbones (registered in BACKBONE_REGISTRY): Swin (``D2SwinTransformer``) and
the DeepLab-stem ResNet (``build_resnet_deeplab_backbone``)."""

from .resnet import DeepLabResNet
from .swin import D2SwinTransformer

__all__ = ["D2SwinTransformer", "DeepLabResNet"]
