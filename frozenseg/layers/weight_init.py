"""Weight initialisations shared by the model components."""

from __future__ import annotations

from torch import nn

__all__ = ["c2_msra_fill", "c2_xavier_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's XavierFill as Detectron2 does it (``c2_xavier_fill``): kaiming-uniform (a=1)
    weight, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2's MSRAFill as Detectron2 does it (``c2_msra_fill``): kaiming-normal weight
    (fan_out, ReLU gain), zero bias."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
