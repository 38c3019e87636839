"""Configuration: the shared keys (every key documented in :mod:`.defaults`), the per-model keys
(each model's ``add_config``, selected by ``MODEL.META_ARCHITECTURE``), YAML loading with
``_BASE_``, one-sentence errors for unknown keys and wrong types, and ``configurable``
(``from_config``). Not here: what a key does (each component's ``from_config`` reads its keys).
"""

from .config import CfgNode, UnknownConfigKeyError, configurable, set_model_config_resolver
from .defaults import get_cfg

__all__ = ["CfgNode", "UnknownConfigKeyError", "configurable", "get_cfg", "set_model_config_resolver"]
