"""FrozenSeg: open-vocabulary segmentation with frozen foundation models (FrozenSeg, OVSeg).

Public API: ``get_cfg()``, ``build_model(cfg)``, ``load_checkpoint(model, path_or_state_dict)``.

Subpackages: ``config`` (default keys, YAML), ``data`` (catalogs, vocabularies, mappers,
loaders, dataset preparation), ``modeling`` (the models and their parts), ``evaluation``
(evaluators), ``engine`` (training, launching, checkpoints, the predictor), ``layers`` and
``structures`` (small shared building blocks and containers), ``utils`` (errors, file and image
I/O, visualisation, registries, distributed helpers). Command lines are not here: they live in
``train_net.py``, ``demo/``, ``tools/`` and ``datasets/`` of the repository.
"""

from .config import get_cfg

__all__ = ["get_cfg", "build_model", "load_checkpoint"]
__version__ = "0.1.0"


def build_model(cfg, **kwargs):
    """Build the model named by ``cfg.MODEL.META_ARCHITECTURE``.

    Keyword arguments (``device``, ``load_frozen_weights``) are those of
    :func:`frozenseg.modeling.build.build_model`.
    """
    from .modeling.build import build_model as _build

    return _build(cfg, **kwargs)


def load_checkpoint(model, path_or_state_dict, *, allow_no_match: bool = False):
    """Load a released or project checkpoint into ``model`` (see frozenseg.checkpoint)."""
    from .checkpoint import load_checkpoint as _load

    return _load(model, path_or_state_dict, allow_no_match=allow_no_match)
