"""FrozenSeg: open-vocabulary segmentation with frozen foundation models (FrozenSeg, OVSeg).

Public API: ``get_cfg()``, ``build_model(cfg)``, ``load_checkpoint(model, path_or_state_dict)``.

Subpackages, each built only on those before it (``tests/test_layering.py``): ``structures``
(containers: ``ImageList``, ``Instances``, ``Prediction``), ``utils`` (errors, file and image I/O,
registries, distributed helpers), ``config`` (shared keys, YAML, per-model keys, value ranges),
``layers`` (small shared building blocks), ``data`` (catalogs, vocabularies, mappers, loaders,
dataset preparation), ``modeling`` (the model contract, ``build_model`` and the parts models
share: CLIP and SAM wrappers, text classifier, head, matcher, criterion, post-processing),
``checkpoint`` (model checkpoints and the training checkpointer), ``evaluation`` (evaluators),
``engine`` (setting up a run, training, evaluation loop, predictor), ``models`` (one package per
model: ``frozenseg``, ``ovseg``) and ``apps`` (web demo, benchmark, GPU report, SAM mask job).
Command lines are not here: they live in ``train_net.py``, ``demo/``, ``tools/`` and
``datasets/`` of the repository.
"""

from .config import get_cfg, set_model_config_resolver


def _model_config_additions(name: str):
    """The ``add_config`` of the model ``MODEL.META_ARCHITECTURE`` names (a config layer hook)."""
    from .modeling.build import model_config_additions

    return model_config_additions(name)


set_model_config_resolver(_model_config_additions)

__all__ = ["get_cfg", "build_model", "load_checkpoint"]
__version__ = "0.1.0"


def build_model(cfg, **kwargs):
    """Build the model named by ``cfg.MODEL.META_ARCHITECTURE``.

    Keyword arguments (``device``, ``load_frozen_weights``) are those of
    :func:`frozenseg.modeling.build.build_model`. The weights keys of the frozen parts may name
    released weights (``MODEL.SAM_CHECKPOINT sam_vit_b``): they are fetched into the cache first
    (:func:`frozenseg.checkpoint.zoo.resolve_frozen_weights`).
    """
    from .modeling.build import build_model as _build

    device = kwargs.get("device")
    if kwargs.get("load_frozen_weights") is not False and str(device if device is not None else "") != "meta":
        from .checkpoint.zoo import resolve_frozen_weights
        from .modeling.build import meta_arch_class

        cfg = resolve_frozen_weights(cfg, meta_arch_class(cfg).frozen_parts)
    return _build(cfg, **kwargs)


def load_checkpoint(model, path_or_state_dict, *, allow_no_match: bool = False):
    """Load a released or project checkpoint into ``model`` (see frozenseg.checkpoint)."""
    from .checkpoint import load_checkpoint as _load

    return _load(model, path_or_state_dict, allow_no_match=allow_no_match)
