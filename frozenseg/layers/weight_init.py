"""Weight initialisations shared by the model components."""

from __future__ import annotations

from torch import nn

__all__ = ["c2_xavier_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's XavierFill as Detectron2 does it (``c2_xavier_fill``): kaiming-uniform (a=1)
    weight, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
