"""``build_model``: config in, model out."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..utils.registry import META_ARCH_REGISTRY

logger = logging.getLogger(__name__)


def _register_components() -> None:
    """Import the modules whose classes register themselves in the registries."""
    from . import backbone, heads, meta_arch, ovseg_head, pixel_decoder, transformer_decoder  # noqa: F401


def build_model(
    cfg, *, device: str | torch.device | None = None, load_frozen_weights: bool | None = None
) -> nn.Module:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` on ``device`` (default ``cfg.MODEL.DEVICE``).

    Args:
        device: target device; ``"meta"`` builds shapes only (no memory, no weights), which is how
            the full-size released architectures are checked cheaply.
        load_frozen_weights: load the frozen CLIP weights (MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS)
            and SAM weights (MODEL.SAM_CHECKPOINT); default True except on ``meta``. Pass False
            when the checkpoint you will load with ``load_checkpoint`` contains them.
    """
    device = torch.device(device if device is not None else cfg.MODEL.DEVICE)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available; set MODEL.DEVICE cpu."
        )
    if load_frozen_weights is None:
        load_frozen_weights = device.type != "meta"
    name = cfg.MODEL.META_ARCHITECTURE
    arch = meta_arch_class(cfg)
    if device.type == "meta":
        with torch.device("meta"):
            model = arch(cfg, device=device, load_frozen_weights=load_frozen_weights)
    else:
        model = arch(cfg, device="cpu", load_frozen_weights=load_frozen_weights)
        model.to(device)
    logger.info("Built %s on %s", name, device)
    return model


def meta_arch_class(cfg) -> type[nn.Module]:
    """The class ``cfg.MODEL.META_ARCHITECTURE`` names, without building it: what a model declares
    about itself (e.g. ``literal_vocabulary``) is known before its weights are read. Raises
    ``ValueError`` naming the valid choices for an unknown name."""
    _register_components()
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in META_ARCH_REGISTRY:
        raise ValueError(
            f"Unknown MODEL.META_ARCHITECTURE {name!r}; valid choices: {sorted(k for k, _ in META_ARCH_REGISTRY)}."
        )
    return META_ARCH_REGISTRY.get(name)
