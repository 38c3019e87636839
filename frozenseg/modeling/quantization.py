"""Opt-in int8 CPU inference of the frozen encoders (MODEL.INT8_CPU).

:func:`quantize_frozen_encoders` applies PyTorch's dynamic quantisation
(``torch.ao.quantization.quantize_dynamic``) to the ``nn.Linear`` layers of the submodules a model
names in ``int8_modules()`` (the model contract; each frozen encoder names its own), in place:
for FrozenSeg the SAM image encoder (segment-anything's ``ImageEncoderViT``: every ``qkv``,
``proj``, ``mlp.lin1`` / ``mlp.lin2``) and the CLIP trunk of a ConvNeXt CLIP (timm's ConvNeXt
MLPs; a ResNet CLIP trunk has no linear layers). Weights become int8 (PyTorch's
default dynamic qconfig: symmetric, one scale per tensor); activations are quantised to uint8
per call from their observed range; the products accumulate in int32 and come back as float32. Nothing else changes: convolutions, norms, the relative-position embeddings, the
trainable decoder, CLIP's attention pool and text tower stay float32.

The SAM fast path (:mod:`.sam.fast_vit`) calls the encoder's linear submodules, never their
weights, so it runs the quantised modules as they are; so does the upstream forward.

Apply it after all weights are loaded (a quantised layer has no ``weight`` parameter any more,
so checkpoints no longer load into it), on CPU, for inference only.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .contract import SegmentationModel

__all__ = ["check_int8_cpu", "quantize_frozen_encoders"]

logger = logging.getLogger(__name__)


def check_int8_cpu(device: torch.device | str, training: bool) -> None:
    """Raise ``ValueError`` when MODEL.INT8_CPU cannot be used: on a non-CPU device or in training."""
    if torch.device(device).type != "cpu":
        raise ValueError(
            f"MODEL.INT8_CPU is a CPU inference mode but MODEL.DEVICE is {str(device)!r}; "
            "set MODEL.INT8_CPU False (or MODEL.DEVICE cpu)."
        )
    if training:
        raise ValueError(
            "MODEL.INT8_CPU is for inference only (quantised layers cannot be trained or "
            "checkpointed); set MODEL.INT8_CPU False for training."
        )


def quantize_frozen_encoders(model: SegmentationModel) -> list[str]:
    """Replace, in place, every ``nn.Linear`` of the frozen encoders of ``model`` (see
    :meth:`~frozenseg.modeling.contract.SegmentationModel.int8_modules`) by its dynamically quantised int8 counterpart.

    Returns:
        the qualified names of the replaced layers (in ``model.named_modules()`` order).
    """
    check_int8_cpu(next(model.parameters()).device, model.training)
    replaced = []
    for root_name, root in model.int8_modules().items():
        linears = [n for n, m in root.named_modules() if type(m) is nn.Linear]
        if linears:
            torch.ao.quantization.quantize_dynamic(root, {nn.Linear}, dtype=torch.qint8, inplace=True)
            replaced += [f"{root_name}.{n}" for n in linears]
    logger.info("MODEL.INT8_CPU: %d linear layers of the frozen encoders quantised to int8", len(replaced))
    return replaced
