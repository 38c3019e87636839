"""``build_model``: config in, model out; and the lookup of ``MODEL.META_ARCHITECTURE``.

A model is a :class:`~frozenseg.modeling.contract.SegmentationModel` subclass registered in
``META_ARCH_REGISTRY``. The built-in models are the packages of :mod:`frozenseg.models` (each
registers its classes when imported). ``MODEL.META_ARCHITECTURE`` may also be the dotted path of a
model class defined anywhere importable (``my_project.my_model.MyModel``): its module is
imported and the class used, with no registration needed.
"""

from __future__ import annotations

import importlib
import logging

import torch

from ..utils.errors import ConfigValueError
from ..layers import ShapeSpec
from ..utils.registry import META_ARCH_REGISTRY, PIXEL_DECODER_REGISTRY, TRANSFORMER_DECODER_REGISTRY
from .contract import SegmentationModel

logger = logging.getLogger(__name__)

__all__ = ["build_model", "build_pixel_decoder", "build_transformer_decoder", "meta_arch_class",
           "model_config_additions"]


def _import_builtin_models() -> None:
    """Import the built-in model packages (they register themselves)."""
    importlib.import_module("frozenseg.models")


def meta_arch_class(cfg_or_name) -> type[SegmentationModel]:
    """The class a config's ``MODEL.META_ARCHITECTURE`` (or the name itself) names, without
    building it: what a model declares about itself (``literal_vocabulary``, ``frozen_parts``, its
    config keys) is known before any weight is read.

    Raises ``ConfigValueError`` naming the valid choices for an unknown name, and for a dotted
    path whose module cannot be imported or whose object is not a ``SegmentationModel`` class.
    """
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.MODEL.META_ARCHITECTURE
    _import_builtin_models()
    if name in META_ARCH_REGISTRY:
        cls = META_ARCH_REGISTRY.get(name)
    elif "." in name:
        module_name, _, attr = name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigValueError(
                f"MODEL.META_ARCHITECTURE {name!r} names module {module_name!r}, which cannot be imported "
                f"({e}); put its folder on PYTHONPATH or use a registered model: {_choices()}."
            ) from None
        cls = getattr(module, attr, None)
        if cls is None:
            raise ConfigValueError(f"Module {module_name!r} has no {attr!r} (MODEL.META_ARCHITECTURE {name!r}).")
    else:
        raise ConfigValueError(f"Unknown MODEL.META_ARCHITECTURE {name!r}; valid choices: {_choices()}.")
    if not (isinstance(cls, type) and issubclass(cls, SegmentationModel)):
        raise ConfigValueError(
            f"MODEL.META_ARCHITECTURE {name!r} is not a model: it must name a subclass of "
            "frozenseg.modeling.contract.SegmentationModel."
        )
    return cls


def _choices() -> str:
    return ", ".join(sorted(k for k, _ in META_ARCH_REGISTRY)) + " (or a dotted path of a model class)"


def model_config_additions(name: str):
    """The function adding the config keys of the model ``name`` names (its ``add_config``), or
    None for a plain name no model is registered under (e.g. Mask2Former's "MaskFormer" in a
    released base file): the config then keeps its keys, and building it fails in one sentence."""
    _import_builtin_models()
    if "." not in name and name not in META_ARCH_REGISTRY:
        return None
    return meta_arch_class(name).add_config


def build_model(
    cfg, *, device: str | torch.device | None = None, load_frozen_weights: bool | None = None
) -> SegmentationModel:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` on ``device`` (default ``cfg.MODEL.DEVICE``), with its
    exact fast paths set by ``MODEL.FAST_INFERENCE``.

    Args:
        device: target device; ``"meta"`` builds shapes only (no memory, no weights), which is how
            the full-size released architectures are checked cheaply.
        load_frozen_weights: load the weights of the frozen parts from their own config keys (the
            model's ``frozen_parts``); default True except on ``meta``. Pass False when the
            checkpoint you will load with ``load_checkpoint`` contains them.
    """
    device = torch.device(device if device is not None else cfg.MODEL.DEVICE)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available; set MODEL.DEVICE cpu."
        )
    if load_frozen_weights is None:
        load_frozen_weights = device.type != "meta"
    arch = meta_arch_class(cfg)
    if device.type == "meta":
        with torch.device("meta"):
            model = arch(cfg, device=device, load_frozen_weights=load_frozen_weights)
    else:
        model = arch(cfg, device="cpu", load_frozen_weights=load_frozen_weights)
        model.to(device)
    model.set_fast_inference(cfg.MODEL.FAST_INFERENCE)
    logger.info("Built %s on %s", cfg.MODEL.META_ARCHITECTURE, device)
    return model


def build_pixel_decoder(cfg, input_shape: dict[str, ShapeSpec]) -> torch.nn.Module:
    """The pixel decoder ``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME`` names, on the features
    ``input_shape`` describes (``{name: ShapeSpec}``; every feature the model passes, e.g. the
    backbone's ``res2``..``res5`` and FrozenSeg's ``sam``)."""
    return PIXEL_DECODER_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME)(cfg, input_shape)


def build_transformer_decoder(cfg, in_channels: int) -> torch.nn.Module:
    """The transformer decoder ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`` names, reading
    features of ``in_channels`` channels."""
    return TRANSFORMER_DECODER_REGISTRY.get(cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME)(cfg, in_channels)
